"""Reading scripts with StoryWorld's vocabulary: appearances, locations, actions, checks.

How strict prompt parsing is
----------------------------
A shot prompt is split into clauses on ``,`` ``;`` ``.`` ``!`` ``?`` and the words ``and``
and ``then``. Every word of a clause must be one of:

* a character name (case-insensitive, ``'s`` dropped): names *before* the first action
  phrase are the subjects, names after it are objects ("waves at Mia");
* an action phrase of :data:`~longtake.world.vocab.ACTION_PHRASES` (longest match first);
* a filler word (:data:`~longtake.world.vocab.FILLER_WORDS`), a location word, or a word of
  one of the story's location names.

Anything else is an error. A clause with names and no action passes its names on to the
next clause ("Mia and Leo wave": both wave); a clause with an action and no name continues
the previous subject; with no previous subject it applies to every on-screen character.
On-screen characters the prompt gives no action get :data:`~longtake.world.vocab.IDLE_ACTION`.

Descriptions are split into segments on ``,`` ``and`` ``with``; a segment with ``hair``
(or ``bald``/``ponytail``/``bun``) gives the hair, one with a garment the top, one with
``trousers`` the trousers. Unknown words are errors in :func:`check_story` and in
``parse_appearance(..., strict=True)``, and ignored otherwise.
"""

from __future__ import annotations

import difflib
import re
from collections.abc import Iterable
from typing import Any

from longtake.world import vocab as V
from longtake.world.errors import WorldError

_CLAUSE_SPLIT = re.compile(r"\s*(?:[,;.!?]|\band\b|\bthen\b)\s*")
_SEGMENT_SPLIT = re.compile(r"\s*(?:[,;.]|\band\b|\bwith\b)\s*")
_WORD = re.compile(r"[a-z0-9][a-z0-9_'-]*")

_PHRASE_TOKENS: list[tuple[tuple[str, ...], str]] = sorted(
    ((tuple(p.split()), a) for p, a in V.ACTION_PHRASES.items()), key=lambda t: -len(t[0])
)
_ACTION_VERBS = sorted({p.split()[0] for p in V.ACTION_PHRASES})

_DESC_FILLERS = frozenset(
    "a an the with and wearing wears in who has have pair of person hair head trousers top".split()
)
_DESC_WORDS = sorted(
    set(V.BODIES) | set(V.HAIR_COLOURS) | set(V.HAIR_STYLES) | set(V.TOP_COLOURS) | set(V.TOP_PATTERNS)
    | set(V.TOP_GARMENTS) | set(V.TROUSER_COLOURS) | set(V.ACCESSORIES) | set(V.APPEARANCE_SYNONYMS) | _DESC_FILLERS
)


def _tokens(text: str) -> list[str]:
    out = []
    for w in _WORD.findall(text.lower().replace("\u2019", "'")):
        if w.endswith("'s"):
            w = w[:-2]
        out.append(w.strip("'"))
    return [w for w in out if w]


def _close(word: str, pool: Iterable[str], cutoff: float = 0.5) -> str | None:
    hits = difflib.get_close_matches(word, list(pool), n=1, cutoff=cutoff)
    return hits[0] if hits else None


# -- appearance --------------------------------------------------------------------------


def _appearance_and_problems(text: str) -> tuple[V.Appearance, list[str]]:
    values: dict[str, Any] = {}
    problems: list[str] = []

    def put(field: str, word: str, allowed: tuple[str, ...]) -> None:
        if word not in allowed:
            hint = _close(word, allowed)
            problems.append(
                f"unknown {field.replace('_', ' ')} '{word}'{f' (did you mean {hint!r}?)' if hint else ''}; expected one of: {', '.join(allowed)}"
            )
        elif field not in values:
            values[field] = word

    colours = set(V.COLOUR_RGB)
    for segment in _SEGMENT_SPLIT.split(text.lower()):
        words = [V.APPEARANCE_SYNONYMS.get(w, w) for w in _tokens(segment)]
        if not words:
            continue
        is_hair = any(w in ("hair", "bald", "ponytail", "bun") for w in words)
        is_trousers = "trousers" in words
        is_top = any(w in V.TOP_GARMENTS or w == "top" for w in words)
        is_hat = any(w in V.HATS for w in words)
        for w in words:
            if w in V.BODIES:
                put("body", w, V.BODIES)
            elif w == "glasses":
                values["glasses"] = True
            elif w in V.HATS:
                values.setdefault("hat", w)
            elif w == "bald":
                values.setdefault("hair_style", "bald")
            elif w in V.HAIR_STYLES and is_hair:
                put("hair_style", w, V.HAIR_STYLES)
            elif w in V.TOP_GARMENTS:
                put("top_garment", w, V.TOP_GARMENTS)
            elif w in V.TOP_PATTERNS:
                put("top_pattern", w, V.TOP_PATTERNS)
            elif w in colours:
                if is_hair:
                    put("hair_colour", w, V.HAIR_COLOURS)
                elif is_trousers:
                    put("trouser_colour", w, V.TROUSER_COLOURS)
                elif is_top:
                    put("top_colour", w, V.TOP_COLOURS)
                elif not is_hat:  # a hat's colour is a hidden detail; other lone colours are ambiguous
                    problems.append(f"colour '{w}' belongs to nothing; say e.g. '{w} hair', 'a {w} shirt' or '{w} trousers'")
            elif w in _DESC_FILLERS or w in V.HAIR_STYLES:
                continue
            else:
                hint = _close(w, _DESC_WORDS)
                problems.append(f"unknown word '{w}' in description{f' (did you mean {hint!r}?)' if hint else ''}")
    if values.get("hair_style") == "bald":
        values.pop("hair_colour", None)
    return V.Appearance(**values), problems


def parse_appearance(text: str, *, strict: bool = False) -> V.Appearance:
    """Read the captioned attributes from a description (inverse of ``Appearance.describe``).

    Attributes the text does not mention stay ``None`` (unspecified); the renderer fills them
    with :func:`~longtake.world.vocab.resolve_appearance`. ``strict=True`` raises
    :class:`WorldError` on words outside the vocabulary instead of ignoring them.
    """
    appearance, problems = _appearance_and_problems(text)
    if strict and problems:
        raise WorldError("\n".join(f"description {text!r}: {p}" for p in problems))
    return appearance


# -- locations ---------------------------------------------------------------------------


def parse_location(text: str) -> str | None:
    """The location id named by the first location word in ``text``, or None.

    ``"street_night"``, ``"a dark street"`` -> ``"street_night"``; ``"the park"`` -> ``"park"``.
    """
    low = text.lower().strip()
    if low in V.LOCATIONS:
        return low
    for w in re.findall(r"[a-z]+", low):
        if w in V.LOCATION_WORDS:
            return V.LOCATION_WORDS[w]
    return None


def location_kind(loc: Any) -> str | None:
    """The StoryWorld location of a script Location: its id, else its name, else its description."""
    for text in (loc.id, loc.name, loc.description):
        kind = parse_location(text or "")
        if kind:
            return kind
    return None


# -- actions -----------------------------------------------------------------------------


def _parse_prompt(
    prompt: str, names: dict[str, str], *, onscreen: Iterable[str] | None = None, extra_words: Iterable[str] = ()
) -> tuple[dict[str, list[str]], list[str]]:
    """(actions per on-screen id, problems). ``names``: name -> id for every known name."""
    onscreen_ids = list(dict.fromkeys(onscreen if onscreen is not None else names.values()))
    name_tokens = sorted(((tuple(_tokens(n)), cid) for n, cid in names.items() if _tokens(n)), key=lambda t: -len(t[0]))
    fillers = V.FILLER_WORDS | set(V.LOCATION_WORDS) | set(extra_words)
    actions: dict[str, list[str]] = {cid: [] for cid in onscreen_ids}
    problems: list[str] = []
    current: list[str] = []
    pending: list[str] = []
    for clause in _CLAUSE_SPLIT.split(prompt):
        toks = _tokens(clause)
        i, subjects, found, unknown = 0, [], [], []
        while i < len(toks):
            hit = next(((len(nt), cid) for nt, cid in name_tokens if tuple(toks[i : i + len(nt)]) == nt), None)
            if hit:
                if not found:
                    subjects.append(hit[1])
                i += hit[0]
                continue
            act = next(((len(pt), a) for pt, a in _PHRASE_TOKENS if tuple(toks[i : i + len(pt)]) == pt), None)
            if act:
                found.append(act[1])
                i += act[0]
                continue
            if toks[i] not in fillers:
                unknown.append(toks[i])
            i += 1
        if unknown and not found:
            w = unknown[0]
            hint = _close(w, _ACTION_VERBS)
            problems.append(
                f"unknown action '{w}'; StoryWorld knows: {', '.join(V.ACTIONS.values())}"
                + (f" (did you mean '{w}'->'{hint}'?)" if hint else "")
            )
        else:
            for w in unknown:
                hint = _close(w, sorted(fillers | set(_ACTION_VERBS)))
                problems.append(
                    f"unknown word '{w}' in clause '{clause.strip()}'; a clause holds names, one action phrase and filler words"
                    + (f" (did you mean '{w}'->'{hint}'?)" if hint else "")
                )
        if not found:
            pending.extend(subjects)
            continue
        who = list(dict.fromkeys(pending + subjects)) or current or onscreen_ids
        current, pending = who, []
        for cid in who:
            if cid not in actions:
                problems.append(f"'{_name_of(cid, names)}' acts in the prompt but is not on screen; add '{cid}' to the shot's characters")
                continue
            actions[cid].extend(found)
    for cid, acts in actions.items():
        if not acts:
            acts.append(V.IDLE_ACTION)
    return actions, problems


def _name_of(cid: str, names: dict[str, str]) -> str:
    return next((n for n, c in names.items() if c == cid), cid)


def parse_actions(prompt: str, names: dict[str, str]) -> dict[str, list[str]]:
    """Per on-screen character id, the ordered action ids the prompt gives them.

    ``names`` maps the name of each on-screen character to its id. See the module doc for
    the grammar; a word outside the vocabulary raises :class:`WorldError`.

    >>> parse_actions("Mia walks in from the left and sits down", {"Mia": "mia", "Leo": "leo"})
    {'mia': ['walk_in_left', 'sit'], 'leo': ['idle']}
    """
    actions, problems = _parse_prompt(prompt, names)
    if problems:
        raise WorldError("\n".join(f"prompt {prompt!r}: {p}" for p in problems))
    return actions


def story_names(story: Any) -> dict[str, str]:
    """name -> id for the whole cast (the id itself is accepted as a name too)."""
    out: dict[str, str] = {}
    for c in story.characters:
        out[c.id.replace("_", " ")] = c.id
        out[c.name] = c.id
    return out


def story_location_words(story: Any) -> set[str]:
    """Words of the story's location ids and names: accepted as fillers in prompts."""
    words: set[str] = set()
    for loc in story.locations:
        words.update(_tokens(loc.id.replace("_", " ")))
        words.update(_tokens(loc.name or ""))
    return words


def shot_actions(story: Any, scene_index: int, shot_index: int) -> tuple[dict[str, list[str]], list[str]]:
    """(actions per on-screen id, problems) of one shot of ``story``."""
    shot = story.scenes[scene_index].shots[shot_index]
    return _parse_prompt(shot.prompt, story_names(story), onscreen=shot.characters, extra_words=story_location_words(story))


def story_problems(story: Any) -> list[str]:
    """Every word of ``story`` outside StoryWorld's vocabulary, one line each with its field path."""
    lines: list[str] = []
    for i, loc in enumerate(story.locations):
        if location_kind(loc) is None:
            hint = _close(loc.id, list(V.LOCATION_WORDS))
            lines.append(
                f"locations[{i}]: no StoryWorld location word in id '{loc.id}', name or description; StoryWorld knows: "
                + ", ".join(sorted(V.LOCATION_WORDS)) + (f" (did you mean '{loc.id}'->'{hint}'?)" if hint else "")
            )
    for i, char in enumerate(story.characters):
        for p in _appearance_and_problems(char.description)[1]:
            lines.append(f"characters[{i}].description: {p}")
    for si, scene in enumerate(story.scenes):
        for hi, _shot in enumerate(scene.shots):
            for p in shot_actions(story, si, hi)[1]:
                lines.append(f"scenes[{si}].shots[{hi}].prompt: {p}")
    return lines


def check_story(story: Any) -> None:
    """Raise :class:`WorldError` listing every word of ``story`` StoryWorld cannot render."""
    lines = story_problems(story)
    if lines:
        raise WorldError("\n".join(lines))
