"""Story script format v1: the pydantic models every importer produces.

A story is a cast sheet (characters, locations) plus scenes made of shots. Durations are in
seconds; the planner turns them into chunks of frames. ``longtake schema`` prints the JSON
Schema of :class:`Story`; ``docs/script.md`` documents every field with a complete example.

Structural checks (types, ranges, the camera vocabulary, unknown fields) are pydantic's;
cross-references (a shot naming a character that is not in the cast, duplicate ids) are
checked after the structure is valid and reported with the exact field path. Reference
image paths are resolved against the script's folder, passed as validation context
``{"base_dir": Path}`` (the current directory when a story is built in Python).
"""

from __future__ import annotations

import hashlib
import json
from pathlib import Path
from typing import Annotated, Any, Literal, get_args

from pydantic import (
    AfterValidator,
    BaseModel,
    ConfigDict,
    Field,
    ValidationInfo,
    model_validator,
)

from longtake.script.errors import ScriptError, ScriptIssue

SCHEMA_VERSION = 1

CameraMove = Literal[
    "static",
    "pan_left",
    "pan_right",
    "tilt_up",
    "tilt_down",
    "zoom_in",
    "zoom_out",
    "dolly_in",
    "dolly_out",
    "truck_left",
    "truck_right",
    "orbit_left",
    "orbit_right",
    "handheld",
]
CAMERA_MOVES: tuple[str, ...] = get_args(CameraMove)

Transition = Literal["cut", "fade"]
TRANSITIONS: tuple[str, ...] = get_args(Transition)

#: A shot longer than this is almost certainly a typo (seconds for frames, an extra zero).
MAX_SHOT_SECONDS = 600.0
#: Four hours: longer than any render longtake is meant for, short enough to catch typos.
MAX_STORY_SECONDS = 4 * 3600.0
MAX_SIDE = 4096
REF_IMAGE_SUFFIXES = (".png", ".jpg", ".jpeg", ".webp", ".bmp")

Id = Annotated[
    str,
    Field(
        pattern=r"^[a-z][a-z0-9_]{0,63}$",
        description="Lower-case identifier: a letter, then letters, digits or underscores.",
    ),
]
NonEmpty = Annotated[str, Field(min_length=1, max_length=4000)]


def _resolve_ref(value: Path, info: ValidationInfo) -> Path:
    """Resolve a reference image against the script's folder and check it is there."""
    base = Path((info.context or {}).get("base_dir", "."))
    path = value if value.is_absolute() else base / value
    if path.suffix.lower() not in REF_IMAGE_SUFFIXES:
        raise ValueError(f"reference image '{value}' has suffix '{path.suffix}'; expected one of {', '.join(REF_IMAGE_SUFFIXES)}")
    if not path.is_file():
        raise ValueError(f"reference image not found: '{value}' (looked in {path.parent.resolve()})")
    return path.resolve()


RefImage = Annotated[Path, AfterValidator(_resolve_ref)]


class _Model(BaseModel):
    # Unknown fields are errors: a typo such as "charaters" must not silently drop the cast.
    model_config = ConfigDict(extra="forbid", str_strip_whitespace=True)


class Size(_Model):
    """Frame size in pixels. Both sides are multiples of 8 (the VAE's spatial factor)."""

    width: int = Field(128, ge=16, le=MAX_SIDE, multiple_of=8)
    height: int = Field(128, ge=16, le=MAX_SIDE, multiple_of=8)


class Character(_Model):
    """A member of the cast. ``description`` is what the planner writes next to the name."""

    id: Id
    name: NonEmpty
    description: str = Field("", max_length=4000, description="Appearance, e.g. 'a woman with short black hair and a red coat'.")
    refs: list[RefImage] = Field(default_factory=list, description="Reference images of this character, relative to the script.")
    voice: str | None = Field(None, max_length=200, description="Voice name or description for dialogue audio.")


class Location(_Model):
    """A place where scenes happen."""

    id: Id
    name: str = Field("", max_length=200)
    description: str = Field("", max_length=4000)
    refs: list[RefImage] = Field(default_factory=list)


class DialogueLine(_Model):
    speaker: Id = Field(description="Id of a character in the cast.")
    text: NonEmpty


class Shot(_Model):
    """One continuous take: what happens, who is on screen, for how long, how the camera moves."""

    prompt: NonEmpty
    characters: list[Id] = Field(default_factory=list, description="Ids of the characters on screen.")
    duration: float = Field(gt=0, le=MAX_SHOT_SECONDS, description="Seconds.")
    camera: CameraMove = "static"
    dialogue: list[DialogueLine] = Field(default_factory=list)
    transition: Transition = Field("cut", description="How this shot begins after the previous one.")


class Scene(_Model):
    """Consecutive shots at one location."""

    location: Id
    title: str = Field("", max_length=200)
    shots: list[Shot] = Field(min_length=1)


class Story(_Model):
    """A complete story script (format v1)."""

    version: Literal[1] = SCHEMA_VERSION
    title: NonEmpty
    fps: int = Field(16, ge=1, le=60)
    size: Size = Field(default_factory=Size)
    seed: int = Field(0, ge=0, lt=2**63)
    style: str = Field("", max_length=4000, description="Global look, prepended to every prompt.")
    characters: list[Character] = Field(default_factory=list)
    locations: list[Location] = Field(min_length=1)
    scenes: list[Scene] = Field(min_length=1)

    @model_validator(mode="after")
    def _check_references(self) -> "Story":
        # Not a ValueError on purpose: pydantic passes other exceptions through, so the
        # issues keep their exact field paths instead of collapsing onto the root.
        issues = find_reference_issues(self)
        if issues:
            raise ScriptError(issues)
        return self

    # -- convenience -------------------------------------------------------------------
    @property
    def duration(self) -> float:
        """Total length in seconds (sum of shot durations)."""
        return sum(shot.duration for scene in self.scenes for shot in scene.shots)

    def character(self, cid: str) -> Character:
        return next(c for c in self.characters if c.id == cid)

    def location(self, lid: str) -> Location:
        return next(loc for loc in self.locations if loc.id == lid)

    def shots(self) -> list[tuple[int, int, Shot]]:
        """Every shot with its scene index and its index inside the scene, in order."""
        return [(si, hi, shot) for si, scene in enumerate(self.scenes) for hi, shot in enumerate(scene.shots)]

    def content_hash(self) -> str:
        """sha256 of the canonical JSON form: equal stories hash equal whatever their format."""
        blob = json.dumps(self.model_dump(mode="json"), sort_keys=True, separators=(",", ":"))
        return hashlib.sha256(blob.encode()).hexdigest()

    @classmethod
    def load(cls, path: str | Path, *, format: str | None = None) -> "Story":
        """Read a script in any supported format (see :func:`longtake.script.load_story`)."""
        from longtake.script.load import load_story

        return load_story(path, format=format)

    def save(self, path: str | Path) -> None:
        """Write the story as YAML (``.yaml``/``.yml``) or JSON (``.json``), atomically."""
        from longtake.script.load import save_story

        save_story(self, path)


def find_reference_issues(story: Story) -> list[ScriptIssue]:
    """Cross-reference checks on a structurally valid story.

    Duplicate ids, shots naming characters outside the cast (or one character twice), scenes
    at unknown locations, dialogue by unknown speakers, and a total length over
    :data:`MAX_STORY_SECONDS`. A speaker need not be on screen (voice-over is allowed).
    """
    issues: list[ScriptIssue] = []
    seen: dict[str, tuple[str | int, ...]] = {}
    for kind, items in (("characters", story.characters), ("locations", story.locations)):
        for i, item in enumerate(items):
            if item.id in seen:
                issues.append(
                    ScriptIssue(f"duplicate id '{item.id}'; already used at {_fmt(seen[item.id])}; ids must be unique across characters and locations", (kind, i, "id"))
                )
            else:
                seen[item.id] = (kind, i, "id")
    cast = {c.id for c in story.characters}
    places = {loc.id for loc in story.locations}
    for si, scene in enumerate(story.scenes):
        if scene.location not in places:
            issues.append(ScriptIssue(f"unknown location '{scene.location}'{_suggest(scene.location, places)}; expected one of: {_list(places)}", ("scenes", si, "location")))
        for hi, shot in enumerate(scene.shots):
            where = ("scenes", si, "shots", hi)
            seen_here: set[str] = set()
            for ci, cid in enumerate(shot.characters):
                if cid not in cast:
                    issues.append(ScriptIssue(f"unknown character '{cid}'{_suggest(cid, cast)}; expected one of: {_list(cast)}", (*where, "characters", ci)))
                elif cid in seen_here:
                    issues.append(ScriptIssue(f"character '{cid}' listed twice in one shot", (*where, "characters", ci)))
                seen_here.add(cid)
            for di, line in enumerate(shot.dialogue):
                if line.speaker not in cast:
                    issues.append(ScriptIssue(f"unknown speaker '{line.speaker}'{_suggest(line.speaker, cast)}; expected one of: {_list(cast)}", (*where, "dialogue", di, "speaker")))
    total = story.duration
    if total > MAX_STORY_SECONDS:
        issues.append(ScriptIssue(f"story lasts {total:.0f} s in all; at most {MAX_STORY_SECONDS:.0f} s is supported", ("scenes",)))
    return issues


def _fmt(path: tuple[str | int, ...]) -> str:
    from longtake.script.errors import format_path

    return format_path(path)


def _list(values: set[str]) -> str:
    return ", ".join(sorted(values)) if values else "(none defined)"


def _suggest(word: str, choices: Any) -> str:
    import difflib

    close = difflib.get_close_matches(word, list(choices), n=1, cutoff=0.6)
    return f" (did you mean '{close[0]}'?)" if close else ""


def story_json_schema() -> dict[str, Any]:
    """The JSON Schema of format v1, as printed by ``longtake schema``."""
    schema = Story.model_json_schema()
    schema["$schema"] = "https://json-schema.org/draft/2020-12/schema"
    schema["title"] = "longtake story script v1"
    return schema
