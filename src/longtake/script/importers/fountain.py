"""Fountain screenplays (https://fountain.io) to Story data. Our own small parser.

Mapping (documented with examples in docs/script.md):

- title page ``Title:`` -> ``title``;
- scene headings (``INT.``, ``EXT.``, ``EST.``, ``INT./EXT.``, ``I/E``, forced ``.HEADING``)
  -> a scene; the place before `` - `` becomes a location whose id is the slug of the place
  (``INT. MIA'S FLAT - DAY`` -> ``mia_s_flat``), reused when the place recurs;
- each action paragraph -> a shot, lasting one second per :data:`WORDS_PER_SECOND` words of
  action and dialogue, clamped to [:data:`MIN_SHOT_SECONDS`, :data:`MAX_SHOT_SECONDS`];
- a character cue (an ALL-CAPS line, or ``@Name``, followed by dialogue) -> the character
  joins the cast (id = slug of the name) and the current shot, with a dialogue line;
  extensions such as ``(V.O.)`` and parentheticals are dropped;
- transitions (``CUT TO:``, ``FADE OUT.``, forced ``> ...``) set how the next shot begins:
  ``fade`` for fades and dissolves, ``cut`` otherwise;
- cast members named in an action paragraph (``MIA`` or ``Mia``) are put on screen in that
  shot, and ALL-CAPS mentions are rewritten as the display name, so the planner finds the
  name when it adds the character's description to the prompt;
- boneyard ``/* */``, notes ``[[ ]]``, sections ``#``, synopses ``=``, page breaks ``===``
  and centred text ``>THE END<`` are left out.

A screenplay with nothing to show, an unterminated boneyard or note, and a scene heading
that names no place are errors; everything else is left to the schema.
"""

from __future__ import annotations

import re
import string
import unicodedata
from typing import Any

from longtake.script.errors import FieldPath, ScriptError, ScriptIssue

#: Speaking pace of screen dialogue (about 150 words a minute); action reads at the same pace.
WORDS_PER_SECOND = 2.5
MIN_SHOT_SECONDS = 2.0
#: A long paragraph still describes one continuous take; longer shots drift from their prompt.
MAX_SHOT_SECONDS = 30.0
ESTABLISHING_SECONDS = 3.0
DEFAULT_TITLE = "Untitled screenplay"
DEFAULT_LOCATION = "scene"

Marks = dict[FieldPath, tuple[int, int]]

TITLE_KEYS = {"title", "credit", "author", "authors", "source", "draft date", "date", "contact", "copyright", "notes", "revision", "format"}
_HEADING = re.compile(r"^(?:int\.?\s*/\s*ext|ext\.?\s*/\s*int|i\s*/\s*e|int|ext|est)(?:\.\s*|\s+|$)", re.IGNORECASE)
_SCENE_NUMBER = re.compile(r"\s*#[^#]*#\s*$")
_TRANSITION_WORDS = re.compile(r"^(?:FADE (?:IN|OUT|TO BLACK)|CUT TO BLACK|SMASH CUT|MATCH CUT|JUMP CUT|DISSOLVE|WIPE|IRIS (?:IN|OUT))\b.*[.:]$")
_EXTENSION = re.compile(r"\([^)]*\)")
_TITLE_LINE = re.compile(r"^([A-Za-z][A-Za-z ]*):(.*)$")
_EMPHASIS = re.compile(r"(?<!\\)[*_]")


def split_lines(text: str) -> list[str]:
    """Lines split on \\n, \\r\\n or \\r only, so numbers match what an editor shows."""
    return re.split(r"\r\n|\r|\n", text)


def slug(text: str, prefix: str) -> str:
    """A schema id from free text: ``"Dr. Smith"`` -> ``dr_smith``; ``prefix`` if it would not start with a letter."""
    ascii_text = unicodedata.normalize("NFKD", text).encode("ascii", "ignore").decode()
    out = re.sub(r"[^a-z0-9]+", "_", ascii_text.lower()).strip("_")
    if not out or not out[0].isalpha():
        out = f"{prefix}_{out}" if out else prefix
    return out[:64].rstrip("_")


def _plain(text: str) -> str:
    """Drop emphasis markers (``*bold*``, ``_underline_``) and collapse whitespace."""
    text = _EMPHASIS.sub("", text).replace("\\*", "*").replace("\\_", "_")
    return " ".join(text.split())


def _display(name: str) -> str:
    """``MIA'S MUM`` -> ``Mia's Mum``; mixed-case names are kept as written."""
    return string.capwords(name.lower()) if name.isupper() else name


def _strip_hidden(lines: list[str]) -> list[str]:
    """Remove boneyard and notes, keeping every line (and so every line number) in place."""
    out: list[str] = []
    inside: tuple[str, int, int] | None = None  # (closing token, line, column) of the open one
    for lineno, line in enumerate(lines, start=1):
        kept, pos = "", 0
        while pos <= len(line):
            if inside is None:
                starts = [(line.find(tok, pos), tok) for tok in ("/*", "[[")]
                starts = [(i, tok) for i, tok in starts if i >= 0]
                if not starts:
                    kept += line[pos:]
                    break
                i, tok = min(starts)
                kept += line[pos:i]
                inside = ("*/" if tok == "/*" else "]]", lineno, i + 1)
                pos = i + 2
            else:
                j = line.find(inside[0], pos)
                if j < 0:
                    break
                pos, inside = j + 2, None
        out.append(kept)
    if inside is not None:
        what = "boneyard: '/*' has no closing '*/'" if inside[0] == "*/" else "note: '[[' has no closing ']]'"
        raise ScriptError(ScriptIssue(f"unterminated {what}", line=inside[1], column=inside[2]))
    return out


def _title_page(lines: list[str]) -> tuple[str | None, int, int]:
    """(title, its line, index of the first body line). No title page: (None, 0, 0)."""
    first = next((i for i, line in enumerate(lines) if line.strip()), None)
    if first is None:
        return None, 0, 0
    match = _TITLE_LINE.match(lines[first].strip())
    if not match or match.group(1).strip().lower() not in TITLE_KEYS:
        return None, 0, 0
    title, title_line, key = None, 0, None
    i = first
    while i < len(lines) and lines[i].strip():
        line = lines[i]
        match = _TITLE_LINE.match(line.strip())
        if match and not line[:1].isspace():
            key = match.group(1).strip().lower()
            if key == "title":
                title, title_line = match.group(2).strip(), i + 1
        elif key == "title":  # indented continuation of a multi-line title
            title = f"{title} {line.strip()}".strip()
        i += 1
    return (_plain(title) if title else None), title_line, i


def _is_upper_cue(text: str) -> bool:
    name = _EXTENSION.sub("", text).rstrip("^").strip()
    return any(ch.isalpha() for ch in name) and name == name.upper() and not name.endswith(":")


class _Screenplay:
    """Builds Story data element by element."""

    def __init__(self) -> None:
        self.locations: list[dict[str, Any]] = []
        self.cast: dict[str, dict[str, Any]] = {}
        self.cue_names: dict[str, str] = {}  # id -> the name as cued (e.g. MIA), for action mentions
        self.scenes: list[dict[str, Any]] = []
        self.words: list[list[int]] = []  # per scene, per shot: words of action and dialogue
        self.marks: Marks = {(): (1, 1)}
        self.transition: str | None = None
        self._names: dict[str, tuple[str, str]] | None = None  # mention -> (id, display name)
        self._pattern: re.Pattern[str] | None = None

    def heading(self, text: str, lineno: int, col: int) -> None:
        text = _SCENE_NUMBER.sub("", text).strip()
        rest = _HEADING.sub("", text, count=1) if _HEADING.match(text) else text
        place, time = _split_place(rest)
        place = _plain(place).strip(" .-")
        if not place:
            raise ScriptError(ScriptIssue(f"scene heading '{text}' names no place; expected e.g. 'INT. OFFICE - DAY'", line=lineno, column=col))
        lid = self.location(place, lineno, col)
        si = len(self.scenes)
        self.scenes.append({"location": lid, "title": _plain(text)[:200], "shots": [], "_time": _plain(time), "_place": _display(place)})
        self.words.append([])
        self.marks[("scenes", si)] = (lineno, col)
        self.marks[("scenes", si, "location")] = (lineno, col)
        self.marks[("scenes", si, "shots")] = (lineno, col)

    def location(self, place: str, lineno: int, col: int) -> str:
        lid = slug(place, "place")
        if all(loc["id"] != lid for loc in self.locations):
            li = len(self.locations)
            self.locations.append({"id": lid, "name": "the scene" if place == DEFAULT_LOCATION else _display(place)[:200]})
            self.marks[("locations", li)] = self.marks[("locations", li, "id")] = (lineno, col)
        return lid

    def _scene(self, lineno: int) -> int:
        if not self.scenes:  # action before any heading: an unnamed place
            lid = self.location(DEFAULT_LOCATION, lineno, 1)
            self.scenes.append({"location": lid, "title": "", "shots": [], "_time": "", "_place": "the scene"})
            self.words.append([])
            self.marks[("scenes", 0)] = self.marks[("scenes", 0, "location")] = (lineno, 1)
        return len(self.scenes) - 1

    def shot(self, prompt: str, words: int, lineno: int, col: int) -> tuple[int, int]:
        si = self._scene(lineno)
        shots = self.scenes[si]["shots"]
        hi = len(shots)
        shot: dict[str, Any] = {"prompt": prompt, "characters": [], "dialogue": []}
        where = ("scenes", si, "shots", hi)
        self.marks[where] = self.marks[(*where, "prompt")] = self.marks[(*where, "duration")] = (lineno, col)
        if self.transition:
            shot["transition"] = self.transition
            self.marks[(*where, "transition")] = (lineno, col)
            self.transition = None
        shots.append(shot)
        self.words[si].append(words)
        return si, hi

    def dialogue(self, cue: str, forced: bool, text: str, cue_line: int, cue_col: int, text_line: int) -> None:
        name = _EXTENSION.sub("", cue).rstrip("^").strip()
        cid = slug(name, "character")
        if cid not in self.cast:
            ci = len(self.cast)
            self.cast[cid] = {"id": cid, "name": (name if forced else _display(name))[:4000]}
            self.cue_names[cid] = name
            self.marks[("characters", ci)] = self.marks[("characters", ci, "id")] = (cue_line, cue_col)
        si = self._scene(cue_line)
        if not self.scenes[si]["shots"]:  # dialogue opens the scene: a shot of the speaker
            self.shot(f"{self.cast[cid]['name']} speaks", 0, cue_line, cue_col)
        hi = len(self.scenes[si]["shots"]) - 1
        shot = self.scenes[si]["shots"][hi]
        where = ("scenes", si, "shots", hi)
        if cid not in shot["characters"]:
            self.marks[(*where, "characters", len(shot["characters"]))] = (cue_line, cue_col)
            shot["characters"].append(cid)
        if text:
            di = len(shot["dialogue"])
            shot["dialogue"].append({"speaker": cid, "text": text})
            self.marks[(*where, "dialogue", di)] = self.marks[(*where, "dialogue", di, "speaker")] = (cue_line, cue_col)
            self.marks[(*where, "dialogue", di, "text")] = (text_line, 1)
            self.words[si][hi] += len(text.split())

    def finish(self, title: str | None, title_line: int) -> dict[str, Any]:
        for si, scene in enumerate(self.scenes):
            if not scene["shots"]:  # a heading with no action: hold on the place for a moment
                line, col = self.marks[("scenes", si)]
                time = scene["_time"].lower()
                self.scenes[si]["shots"].append({"prompt": scene["_place"] + (f", {time}" if time else ""), "duration": ESTABLISHING_SECONDS})
                self.words[si].append(0)
                where = ("scenes", si, "shots", 0)
                self.marks[where] = self.marks[(*where, "prompt")] = (line, col)
            for hi, shot in enumerate(scene["shots"]):
                self._mentions(shot, ("scenes", si, "shots", hi))
                shot.setdefault("duration", round(min(MAX_SHOT_SECONDS, max(MIN_SHOT_SECONDS, self.words[si][hi] / WORDS_PER_SECOND)), 1))
            scene.pop("_time")
            scene.pop("_place")
        self._separate_ids()
        data: dict[str, Any] = {"title": title or DEFAULT_TITLE, "characters": list(self.cast.values()), "locations": self.locations, "scenes": self.scenes}
        if title_line:
            self.marks[("title",)] = (title_line, 1)
        return data

    def _mentions(self, shot: dict[str, Any], where: FieldPath) -> None:
        if self._names is None:
            # One alternation for the whole cast, longest names first ("MIA ROSE" before
            # "MIA"), so a screenplay with a large cast stays linear in its length.
            self._names = {}
            for cid, member in self.cast.items():
                self._names.setdefault(self.cue_names[cid].upper(), (cid, member["name"]))
                self._names.setdefault(member["name"], (cid, member["name"]))
            alternatives = "|".join(re.escape(n) for n in sorted(self._names, key=len, reverse=True))
            self._pattern = re.compile(rf"(?<!\w)(?:{alternatives})(?!\w)") if self._names else None
        if self._pattern is None:
            return
        names, characters = self._names, shot.setdefault("characters", [])
        for match in self._pattern.finditer(shot["prompt"]):
            cid = names[match.group(0)][0]
            if cid not in characters:
                self.marks[(*where, "characters", len(characters))] = self.marks.get(where, (1, 1))
                characters.append(cid)
        shot["prompt"] = self._pattern.sub(lambda m: names[m.group(0)][1], shot["prompt"])

    def _separate_ids(self) -> None:
        # Ids share one namespace; a place named like a person ("INT. BAR" and a BAR cue)
        # would collide, so the place gives way.
        taken = set(self.cast)
        renamed: dict[str, str] = {}
        for loc in self.locations:
            if loc["id"] in taken:
                new = f"{loc['id'][:58]}_place"
                while new in taken or any(other["id"] == new for other in self.locations):
                    new += "_"
                renamed[loc["id"]] = loc["id"] = new[:64]
            taken.add(loc["id"])
        for scene in self.scenes:
            scene["location"] = renamed.get(scene["location"], scene["location"])


def _split_place(rest: str) -> tuple[str, str]:
    """``"OFFICE - DAY"`` -> ``("OFFICE", "DAY")``: the place and the time of day."""
    parts = re.split(r"\s+[-–—]+\s*|\s*[-–—]+\s+", rest, maxsplit=1)
    return parts[0], parts[1] if len(parts) > 1 else ""


def _transition_kind(text: str) -> str:
    upper = text.upper()
    return "fade" if "FADE" in upper or "DISSOLVE" in upper else "cut"


def parse_fountain(text: str) -> tuple[dict[str, Any], Marks]:
    """A Fountain screenplay to Story data plus the (line, column) of every field."""
    lines = _strip_hidden(split_lines(text))
    title, title_line, start = _title_page(lines)
    play = _Screenplay()
    action: list[tuple[int, str]] = []  # the open action paragraph: (line, text)

    def flush() -> None:
        if action:
            prompt = _plain(" ".join(t for _, t in action))
            if prompt:
                line = action[0][0]
                play.shot(prompt, len(prompt.split()), line, 1)
            action.clear()

    def blank(i: int) -> bool:
        return i < start or i >= len(lines) or not lines[i].strip() or lines[i].strip() == "==="

    i = start
    while i < len(lines):
        raw = lines[i]
        line = raw.strip()
        lineno, col = i + 1, len(raw) - len(raw.lstrip()) + 1
        after_blank = blank(i - 1)
        if not line or line.startswith("===") or line.startswith("#") or (line.startswith("=") and not line.startswith("==")):
            flush()  # blank line, page break, section or synopsis: ends a paragraph
        elif line.startswith("!"):
            action.append((lineno, line[1:]))
        elif after_blank and ((line.startswith(".") and not line.startswith("..")) or _HEADING.match(line)):
            flush()
            play.heading(line[1:] if line.startswith(".") else line, lineno, col)
        elif line.startswith(">") and line.endswith("<"):
            flush()  # centred text is a title card, not a shot
        elif after_blank and (line.startswith(">") or (line.isupper() and line.endswith("TO:")) or _TRANSITION_WORDS.match(line)):
            flush()
            play.transition = _transition_kind(line)
        elif after_blank and not blank(i + 1) and (line.startswith("@") or _is_upper_cue(line)):
            flush()
            forced = line.startswith("@")
            speech: list[str] = []
            j = i + 1
            while not blank(j):
                said = lines[j].strip()
                if not (said.startswith("(") and said.endswith(")")):  # parentheticals are acting notes
                    speech.append(said.lstrip("~"))
                j += 1
            if _EXTENSION.sub("", line.lstrip("@")).rstrip("^").strip():
                play.dialogue(line[1:] if forced else line, forced, _plain(" ".join(speech)), lineno, col, i + 2)
            i = j
            continue
        else:
            action.append((lineno, line))
        i += 1
    flush()
    if not play.scenes:
        raise ScriptError(ScriptIssue("empty screenplay; expected scene headings such as 'INT. OFFICE - DAY' followed by action", line=max(1, title_line)))
    return play.finish(title, title_line), play.marks
