"""Plain-text scripts: one shot per line.

The quickest way to write a story: every non-blank line is the prompt of one shot. Tags in
square brackets anywhere on a line set the shot's duration (``[6s]``, ``[2.5s]``; 5 s when
absent), its camera move (``[pan_left]``) or how it begins (``[fade]``, ``[cut]``)::

    title: A walk
    fps: 16
    size: 128x128
    # comments and blank lines are ignored
    A woman walks along a beach at dawn [6s] [pan_right]
    She stops and looks at the sea [3s]

``@id`` on a line of its own (optionally ``@id: description``) starts a new scene at
location ``id``; without it every shot happens at one location, ``scene``. Text has no cast,
so the story has no characters.

Header ``mode: per-second`` switches to the one-line-per-second list form used by
long-video prompt lists: each line is one second, and runs of identical lines merge into one
shot (ten equal lines make one 10 s shot). Duration tags are refused in that mode.

Values are passed on as written (``fps: fast`` stays a string) so that validation reports
them with the same messages, and at the same lines, as YAML scripts.
"""

from __future__ import annotations

import difflib
import re
from typing import Any

from longtake.script.errors import FieldPath, ScriptError, ScriptIssue
from longtake.script.schema import CAMERA_MOVES, TRANSITIONS

#: Seconds given to a line without a ``[Ns]`` tag: long enough for one action at 16 fps.
DEFAULT_SHOT_SECONDS = 5.0
DEFAULT_LOCATION = "scene"
DEFAULT_TITLE = "Untitled story"
HEADER_KEYS = ("title", "fps", "size", "seed", "style", "mode")
MODES = ("shots", "per-second")

_HEADER = re.compile(r"^([A-Za-z_][A-Za-z0-9_ -]*?)\s*:\s*(.*)$")
_TAG = re.compile(r"\[\s*([^\[\]]*?)\s*\]")
_DURATION = re.compile(r"^([-+]?\d+(?:\.\d*)?|[-+]?\.\d+)\s*(?:s|sec|secs|second|seconds)$", re.IGNORECASE)
_SIZE = re.compile(r"^(\d{1,6})\s*[xX×]\s*(\d{1,6})$")
_INT = re.compile(r"^[-+]?\d{1,20}$")
_SCENE = re.compile(r"^@([^\s:]*)\s*(?::\s*(.*))?$")
_ID = re.compile(r"^[a-z][a-z0-9_]{0,63}$")

Marks = dict[FieldPath, tuple[int, int]]


def _number(value: str) -> Any:
    """An int for integer text; anything else unchanged, for the schema to report."""
    return int(value) if _INT.match(value) else value


def _split_tags(body: str, lineno: int, offset: int, per_second: bool) -> tuple[str, dict[str, tuple[Any, int]]]:
    """Remove recognised ``[...]`` tags from a line; return the prompt and {field: (value, col)}.

    ``offset`` is the 1-based column where ``body`` starts in the source line.
    """
    fields: dict[str, tuple[Any, int]] = {}
    kept: list[str] = []
    pos = 0
    for match in _TAG.finditer(body):
        inner = match.group(1)
        col = offset + match.start()
        dur = _DURATION.match(inner)
        word = inner.lower()
        if dur:
            field, value = "duration", float(dur.group(1))
            if per_second:
                raise ScriptError(ScriptIssue(f"duration tag '{match.group(0)}' in per-second mode; repeat the line once per second instead", line=lineno, column=col))
        elif word in CAMERA_MOVES:
            field, value = "camera", word
        elif word in TRANSITIONS:
            field, value = "transition", word
        else:
            # Not a tag: brackets may be part of the prompt. A near miss of a camera move is
            # almost certainly a typo, so say so rather than leave it in the prompt.
            close = difflib.get_close_matches(word, CAMERA_MOVES, n=1, cutoff=0.8) if "_" in word else []
            if close:
                raise ScriptError(ScriptIssue(f"unknown camera move '{inner}' (did you mean '{close[0]}'?); expected one of: {', '.join(CAMERA_MOVES)}", line=lineno, column=col))
            continue
        if field in fields:
            raise ScriptError(ScriptIssue(f"two {field} tags on one line; expected at most one", line=lineno, column=col))
        fields[field] = (value, col)
        kept.append(body[pos : match.start()])
        pos = match.end()
    kept.append(body[pos:])
    prompt = re.sub(r"\s+", " ", "".join(kept)).strip()
    return prompt, fields


class _Builder:
    """Accumulates scenes, shots and their source positions."""

    def __init__(self) -> None:
        self.data: dict[str, Any] = {"title": DEFAULT_TITLE, "locations": [], "characters": [], "scenes": []}
        self.marks: Marks = {(): (1, 1)}
        self.location_lines: dict[str, tuple[int, str]] = {}

    def add_location(self, lid: str, description: str, lineno: int, col: int) -> None:
        if lid in self.location_lines:
            first, text = self.location_lines[lid]
            if description and text and description != text:
                raise ScriptError(ScriptIssue(f"location '{lid}' is described again; it was described on line {first} (describe a place once)", line=lineno, column=col))
            return
        index = len(self.data["locations"])
        name = "the scene" if lid == DEFAULT_LOCATION and not description else lid.replace("_", " ")
        self.data["locations"].append({"id": lid, "name": name, "description": description})
        self.location_lines[lid] = (lineno, description)
        self.marks[("locations", index)] = (lineno, col)
        self.marks[("locations", index, "id")] = (lineno, col)

    def start_scene(self, lid: str, lineno: int, col: int) -> None:
        si = len(self.data["scenes"])
        self.data["scenes"].append({"location": lid, "shots": []})
        self.marks[("scenes", si)] = (lineno, 1)
        self.marks[("scenes", si, "location")] = (lineno, col)
        self.marks[("scenes", si, "shots")] = (lineno, 1)

    def add_shot(self, prompt: str, fields: dict[str, tuple[Any, int]], lineno: int, col: int) -> None:
        if not self.data["scenes"]:
            self.add_location(DEFAULT_LOCATION, "", lineno, 1)
            self.start_scene(DEFAULT_LOCATION, lineno, 1)
        si = len(self.data["scenes"]) - 1
        shots = self.data["scenes"][si]["shots"]
        hi = len(shots)
        shot: dict[str, Any] = {"prompt": prompt, "duration": DEFAULT_SHOT_SECONDS}
        where = ("scenes", si, "shots", hi)
        self.marks[where] = (lineno, col)
        self.marks[(*where, "prompt")] = (lineno, col)
        self.marks[(*where, "duration")] = (lineno, col)
        for field, (value, fcol) in fields.items():
            shot[field] = value
            self.marks[(*where, field)] = (lineno, fcol)
        shots.append(shot)


def _lines(text: str) -> list[tuple[int, str]]:
    """(line number, text) of lines that are neither blank nor ``#`` comments."""
    out = []
    for lineno, raw in enumerate(re.split(r"\r\n|\r|\n", text), start=1):
        stripped = raw.strip()
        if stripped and not stripped.startswith("#"):
            out.append((lineno, raw))
    return out


def parse_text(text: str) -> tuple[dict[str, Any], Marks]:
    """A plain-text script to Story data plus the (line, column) of every field.

    Raises :class:`ScriptError` for an empty file, a malformed header or tag, or a bad
    ``@location`` line; everything else is left to the schema.
    """
    build = _Builder()
    lines = _lines(text)
    mode = "shots"
    # -- header: known "key: value" lines before the first shot ---------------------------
    body_start = 0
    for body_start, (lineno, raw) in enumerate(lines):  # noqa: B007 - index used after the loop
        match = _HEADER.match(raw.strip())
        if not match:
            break
        key, value = match.group(1).strip().lower(), match.group(2).strip()
        col = len(raw) - len(raw.lstrip()) + match.start(2) + 1
        if key not in HEADER_KEYS:
            close = difflib.get_close_matches(key, HEADER_KEYS, n=1, cutoff=0.8)
            if close:
                raise ScriptError(ScriptIssue(f"unknown header '{key}' (did you mean '{close[0]}'?); expected one of: {', '.join(HEADER_KEYS)}", line=lineno, column=1))
            break  # "Night: the city sleeps" is a shot, not a header
        if (key,) in build.marks:
            raise ScriptError(ScriptIssue(f"header '{key}' given twice; it was first given on line {build.marks[(key,)][0]}", line=lineno, column=1))
        build.marks[(key,)] = (lineno, col)
        if key == "mode":
            if value.lower() not in MODES:
                raise ScriptError(ScriptIssue(f"unknown mode '{value}'; expected one of: {', '.join(MODES)}", line=lineno, column=col))
            mode = value.lower()
            continue
        if key == "size":
            size = _SIZE.match(value)
            if not size:
                raise ScriptError(ScriptIssue(f"size '{value}' is not WIDTHxHEIGHT; expected e.g. 'size: 128x128'", line=lineno, column=col))
            build.data["size"] = {"width": int(size.group(1)), "height": int(size.group(2))}
        else:
            build.data[key] = _number(value) if key in ("fps", "seed") else value
    else:
        body_start = len(lines)
    body = lines[body_start:]
    if not body:
        raise ScriptError(ScriptIssue("empty script; expected one shot per line (see docs/script.md)", line=1))
    per_second = mode == "per-second"
    previous: str | None = None  # the last shot line in per-second mode, to merge repeats
    for lineno, raw in body:
        line = raw.strip()
        col = raw.index(line[0]) + 1
        scene = _SCENE.match(line)
        if scene:
            lid, description = scene.group(1), (scene.group(2) or "").strip()
            if not _ID.match(lid):
                raise ScriptError(ScriptIssue(f"bad location id '{lid}' after '@'; expected a lower-case id: a letter, then letters, digits or underscores", line=lineno, column=col + 1))
            build.add_location(lid, description, lineno, col + 1)
            build.start_scene(lid, lineno, col + 1)
            previous = None
            continue
        header = _HEADER.match(line)
        if header and header.group(1).strip().lower() in HEADER_KEYS:
            raise ScriptError(ScriptIssue(f"header '{header.group(1).strip()}' after the first shot; headers go at the top of the file", line=lineno, column=col))
        prompt, fields = _split_tags(line, lineno, col, per_second)
        if not prompt:
            raise ScriptError(ScriptIssue("line has tags but no text; expected a description of the shot", line=lineno, column=col))
        if per_second:
            if line == previous:
                shot = build.data["scenes"][-1]["shots"][-1]
                shot["duration"] += 1.0
                continue
            fields["duration"] = (1.0, col)
            previous = line
        build.add_shot(prompt, fields, lineno, col)
    return build.data, build.marks
