"""Prompt expansion from the cast sheet (MovieDreamer's identifier + descriptor idea).

A shot prompt names characters ("Mia sits down"); the model needs their look every time,
because a text encoder has no memory of the previous shot. The first mention of each
on-screen character becomes ``Name (description)``; characters on screen but not named are
appended. The location and the global style follow the action, which comes first so that a
text encoder with a short context keeps what matters most.
"""

from __future__ import annotations

import re

from longtake.script.schema import Scene, Shot, Story

CAMERA_PHRASES: dict[str, str] = {
    "static": "static camera",
    "pan_left": "the camera pans left",
    "pan_right": "the camera pans right",
    "tilt_up": "the camera tilts up",
    "tilt_down": "the camera tilts down",
    "zoom_in": "the camera zooms in",
    "zoom_out": "the camera zooms out",
    "dolly_in": "the camera dollies in",
    "dolly_out": "the camera dollies out",
    "truck_left": "the camera trucks left",
    "truck_right": "the camera trucks right",
    "orbit_left": "the camera orbits left",
    "orbit_right": "the camera orbits right",
    "handheld": "handheld camera",
}


def _with_description(name: str, description: str) -> str:
    return f"{name} ({description})" if description else name


def expand_prompt(story: Story, scene: Scene, shot: Shot) -> str:
    """The full text prompt of one shot."""
    text = shot.prompt.rstrip(". ")
    missing: list[str] = []
    for cid in shot.characters:
        char = story.character(cid)
        pattern = re.compile(rf"(?<!\w){re.escape(char.name)}(?!\w)")
        match = pattern.search(text)
        if match:
            text = text[: match.start()] + _with_description(char.name, char.description) + text[match.end():]
        else:
            missing.append(_with_description(char.name, char.description))
    parts = [text + "."]
    if missing:
        parts.append("With " + ", ".join(missing) + ".")
    loc = story.location(scene.location)
    place = ", ".join(p for p in (loc.name, loc.description) if p) or loc.id
    parts.append(f"Setting: {place}.")
    parts.append(CAMERA_PHRASES[shot.camera].capitalize() + ".")
    if story.style:
        parts.append(f"Style: {story.style.rstrip('. ')}.")
    return " ".join(parts)
