"""Random StoryWorld scripts: multi-scene stories with recurring characters and exact rules.

:func:`sample_story` draws a valid format-v1 :class:`~longtake.script.schema.Story` written
only in StoryWorld's vocabulary (it passes :func:`longtake.world.vocab.check_story`): 1-4
recurring characters captioned by :meth:`Appearance.describe`, scenes at a few locations
that are left and revisited, characters who walk out and come back after long absences,
camera moves, shots of varied length and a new prompt at every shot (a prompt switch).

Held-out split (the rule, tested in ``tests/test_world_sampler.py``)
--------------------------------------------------------------------
A story is a function of ``(split, seed)`` only. Three things keep the splits apart:

1. **Independent random streams.** The generator is seeded with
   ``numpy.random.SeedSequence(entropy=seed, spawn_key=(SPLIT_KEYS[split],))``; the spawn
   keys differ, so ``("train", 7)`` and ``("heldout", 7)`` share no randomness.
2. **Disjoint casts.** Every fully specified look (body, hair colour and style, top colour,
   pattern and garment, trouser colour; accessories ignored) falls in the held-out bucket
   when ``stable_seed("storyworld-heldout-look", look) % HELDOUT_BUCKETS == 0``. Training
   stories only cast looks outside the bucket, held-out stories only looks inside it, so a
   training story can never show a held-out character -- whatever the seed.
3. **Disjoint story seeds.** ``Story.seed`` (which draws the hidden details) is ``seed`` for
   training and ``HELDOUT_SEED_OFFSET + seed`` for held-out stories; seeds must be below
   the offset. Equal content hashes across splits are therefore impossible.

The shot/scene structure is drawn as a small state machine over script time (see
:func:`sample_story`); :func:`presence`, :func:`returns` and :func:`revisited_locations`
read the resulting structure back (used by the benchmark index and the tests).
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Literal

import numpy as np

from longtake.script.schema import CAMERA_MOVES, Character, DialogueLine, Location, Scene, Shot, Story
from longtake.world import vocab as V
from longtake.world.errors import WorldError

Split = Literal["train", "heldout"]

#: SeedSequence spawn key of each split (rule 1 above).
SPLIT_KEYS: dict[str, int] = {"train": 0, "heldout": 1}
#: One look in this many is held out (rule 2).
HELDOUT_BUCKETS = 8
#: Held-out stories store ``seed + HELDOUT_SEED_OFFSET`` as Story.seed (rule 3).
HELDOUT_SEED_OFFSET = 2**62

#: Names that collide with no StoryWorld word (a name must not read as a filler or action).
FEMALE_NAMES = ("Mia", "Ava", "Nora", "Lena", "Iris", "Zoe", "Ruby", "Ella", "Maya", "Tara", "Lucy", "Emma")
MALE_NAMES = ("Leo", "Sam", "Omar", "Theo", "Hugo", "Ben", "Max", "Finn", "Jonas", "Ravi", "Kai", "Noah")

#: Actions of a character who stays on screen, with their weights.
_STAY_ACTIONS = {"walk": 0.08, "stand": 0.1, "sit": 0.14, "jump": 0.08, "wave": 0.12, "drink": 0.12, "talk": 0.18, "idle": 0.18}
_DIALOGUE = ("Hello again.", "Where were you?", "Look at this.", "I missed you.", "Let us go.", "Not now.", "Good morning.", "What a day.")
_LOCATION_NAMES = {"street_night": "street at night"}


@dataclass(frozen=True)
class ReturnEvent:
    """A character off screen from ``left_at`` to ``back_at`` (script seconds, shot bounds).

    Times are those of whole shots: a character who walks out during a shot is counted on
    screen until the shot ends, so ``gap_s`` is a lower bound of the time off screen.
    """

    character: str
    left_at: float
    back_at: float

    @property
    def gap_s(self) -> float:
        return self.back_at - self.left_at

    def to_dict(self) -> dict[str, object]:
        return {"character": self.character, "left_at": self.left_at, "back_at": self.back_at, "gap_s": round(self.gap_s, 6)}


def split_rng(seed: int, split: Split) -> np.random.Generator:
    """The random stream of ``(split, seed)`` (held-out rule 1)."""
    if split not in SPLIT_KEYS:
        raise WorldError(f"unknown split '{split}'; expected one of: {', '.join(SPLIT_KEYS)}")
    if not 0 <= int(seed) < HELDOUT_SEED_OFFSET:
        raise WorldError(f"seed {seed} out of range; expected 0 <= seed < 2**62")
    return np.random.Generator(np.random.PCG64(np.random.SeedSequence(int(seed), spawn_key=(SPLIT_KEYS[split],))))


def look_key(a: V.Appearance) -> str:
    """The fully specified look of ``a`` (accessories left out) as one string."""
    return "|".join(str(x) for x in (a.body, a.hair_colour, a.hair_style, a.top_colour, a.top_pattern, a.top_garment, a.trouser_colour))


def is_heldout_look(a: V.Appearance) -> bool:
    """True when the look of ``a`` belongs to the held-out split (rule 2)."""
    return V.stable_seed("storyworld-heldout-look", look_key(a)) % HELDOUT_BUCKETS == 0


def story_seed_for(seed: int, split: Split) -> int:
    """``Story.seed`` of the story sampled for ``(split, seed)`` (rule 3)."""
    return int(seed) + (HELDOUT_SEED_OFFSET if split == "heldout" else 0)


def _pick(rng: np.random.Generator, options: tuple[str, ...] | list[str]) -> str:
    return str(options[int(rng.integers(len(options)))])


def _sample_look(rng: np.random.Generator) -> V.Appearance:
    body = _pick(rng, V.BODIES)
    feminine = body in ("woman", "girl")
    style = _pick(rng, [s for s in V.HAIR_STYLES if not (feminine and s == "bald")])
    garment = _pick(rng, [g for g in V.TOP_GARMENTS if feminine or g != "dress"])
    return V.Appearance(
        body=body,
        hair_colour=None if style == "bald" else _pick(rng, V.HAIR_COLOURS),
        hair_style=style,
        top_colour=_pick(rng, V.TOP_COLOURS),
        top_pattern=_pick(rng, V.TOP_PATTERNS),
        top_garment=garment,
        trouser_colour=_pick(rng, V.TROUSER_COLOURS),
        glasses=bool(rng.random() < 0.2),
        hat=_pick(rng, V.HATS) if rng.random() < 0.15 else None,
    )


def _distinct(a: V.Appearance, b: V.Appearance) -> bool:
    """Two cast members must differ in at least three visible, captioned attributes."""
    pairs = [(a.body, b.body), (a.hair_colour, b.hair_colour), (a.hair_style, b.hair_style), (a.top_colour, b.top_colour),
             (a.top_pattern, b.top_pattern), (a.top_garment, b.top_garment), (a.trouser_colour, b.trouser_colour)]
    return sum(x != y for x, y in pairs) >= 3 and a.top_colour != b.top_colour


def _sample_cast(rng: np.random.Generator, n: int, split: Split) -> list[Character]:
    want_heldout = split == "heldout"
    looks: list[V.Appearance] = []
    while len(looks) < n:
        look = _sample_look(rng)
        if is_heldout_look(look) == want_heldout and all(_distinct(look, other) for other in looks):
            looks.append(look)
    cast: list[Character] = []
    used: set[str] = set()
    for look in looks:
        pool = FEMALE_NAMES if look.body in ("woman", "girl") else MALE_NAMES
        name = _pick(rng, [x for x in pool if x not in used])
        used.add(name)
        cast.append(Character(id=name.lower(), name=name, description=look.describe()))
    return cast


def _shot_durations(rng: np.random.Generator, duration: float, lo: float, hi: float, segment: float | None) -> list[float]:
    """Shot lengths (multiples of 0.5 s except a last remainder) that sum to ``duration``."""
    out: list[float] = []
    rem = float(duration)
    while rem > 1e-9:
        if segment is not None:
            d = min(segment, rem)
        elif rem <= hi:
            d = rem
        else:
            upper = min(hi, rem - lo)
            if upper < lo:
                d = math.floor(rem) / 2 or rem / 2
            else:
                d = lo + 0.5 * int(rng.integers(int((upper - lo) / 0.5) + 1))
        d = round(d, 6)
        out.append(d)
        rem = round(rem - d, 6)
    return out


def _location_word(loc: str) -> str:
    """The plain word a prompt may use for a location (a key of LOCATION_WORDS)."""
    return next(w for w, k in V.LOCATION_WORDS.items() if k == loc)


def _base_form(phrase: str) -> str:
    """'walks in from the left' -> 'walk in from the left' (after a plural subject)."""
    first, *rest = phrase.split()
    return " ".join([first[:-1] if first.endswith("s") else first, *rest])


def _group_clause(names: list[str], action: str, *, again: bool = False) -> str:
    """'Mia waves' / 'Mia and Leo wave' (base form for several subjects)."""
    phrase = V.ACTIONS[action]
    if len(names) > 1:
        phrase = _base_form(phrase)
        subject = ", ".join(names[:-1]) + " and " + names[-1]
    else:
        subject = names[0]
    return f"{subject} {phrase}{' again' if again else ''}"


def _prompt(entries: list[tuple[str, list[str], bool]], rng: np.random.Generator, loc: str) -> str:
    """One sentence per action group. ``entries``: (name, action ids, returning)."""
    groups: dict[tuple[str, ...], list[tuple[str, bool]]] = {}
    for name, acts, back in entries:
        groups.setdefault(tuple(acts), []).append((name, back))
    sentences = []
    for acts, members in groups.items():
        names = [m[0] for m in members]
        clause = _group_clause(names, acts[0], again=len(names) == 1 and members[0][1])
        if len(acts) > 1:
            clause += " and " + (V.ACTIONS[acts[1]] if len(names) == 1 else _base_form(V.ACTIONS[acts[1]]))
        sentences.append(clause[0].upper() + clause[1:] + ".")
    text = " ".join(sentences)
    if rng.random() < 0.15:
        text = f"{_at(loc)} the {_location_word(loc)}, {text}"
    return text


_EMPTY_PROMPTS = ("The {w}.", "{At} the {w}.", "Here {at} the {w}.", "Still {at} the {w}.")


def _at(loc: str) -> str:
    return "On" if loc == "beach" else "In"


def _empty_prompt(rng: np.random.Generator, loc: str, prev: str) -> str:
    """The prompt of a shot with nobody on screen (only filler and location words)."""
    options = [t.format(w=_location_word(loc), At=_at(loc), at=_at(loc).lower()) for t in _EMPTY_PROMPTS]
    return _pick(rng, [o for o in options if o != prev])


def sample_story(
    seed: int,
    duration: float,
    *,
    split: Split = "train",
    num_characters: tuple[int, int] = (1, 4),
    num_locations: tuple[int, int] | None = None,
    shot_seconds: tuple[float, float] = (2.0, 8.0),
    scene_seconds: tuple[float, float] = (12.0, 45.0),
    segment_seconds: float | None = None,
    absence_seconds: tuple[float, float] = (8.0, 120.0),
    fps: int = 16,
    size: tuple[int, int] = (128, 128),
) -> Story:
    """A random StoryWorld story of exactly ``duration`` seconds for ``(split, seed)``.

    The same arguments always give the same story (byte-identical YAML). How it is drawn:

    * cast: ``num_characters`` (inclusive range) looks from the split's bucket, pairwise
      different in at least three captioned attributes, each with a name and the caption
      of :meth:`Appearance.describe`;
    * shots: lengths in ``shot_seconds`` (multiples of 0.5 s), or exactly
      ``segment_seconds`` each (the interactive one-prompt-per-segment protocol);
    * scenes: runs of shots of about ``scene_seconds``; each new scene goes to an unvisited
      location or, as often, back to one seen before;
    * presence: on-screen characters may walk out (left or right) at any shot; they stay
      away for an absence drawn log-uniformly from ``absence_seconds`` (capped at 40% of
      the story), then walk back in ("... again") or are there when a later scene opens;
    * every shot gets a camera move (static 40%), a new prompt, sometimes two actions, a
      fade at some scene starts, short dialogue on some "talk" shots.
    """
    if not 0 < duration <= 4 * 3600:
        raise WorldError(f"duration {duration} s out of range; expected 0 < duration <= 14400")
    lo_c, hi_c = num_characters
    if not 1 <= lo_c <= hi_c <= 8:
        raise WorldError(f"num_characters {num_characters} invalid; expected 1 <= low <= high <= 8")
    if not (16 <= size[0] <= 4096 and 16 <= size[1] <= 4096) or size[0] % 8 or size[1] % 8:
        raise WorldError(f"size {size[0]}x{size[1]} invalid; expected sides from 16 to 4096, multiples of 8")
    if not 1 <= fps <= 60:
        raise WorldError(f"fps {fps} invalid; expected 1 to 60")
    if num_locations is not None and not 1 <= num_locations[0] <= num_locations[1]:
        raise WorldError(f"num_locations {num_locations} invalid; expected 1 <= low <= high")
    if not 0 < shot_seconds[0] <= shot_seconds[1]:
        raise WorldError(f"shot_seconds {shot_seconds} invalid; expected 0 < low <= high")
    rng = split_rng(seed, split)
    n_chars = int(rng.integers(lo_c, hi_c + 1))
    cast = _sample_cast(rng, n_chars, split)
    names = {c.id: c.name for c in cast}

    all_locs = list(V.LOCATIONS)
    max_locs = max(1, min(len(all_locs), 1 + int(duration // 20)))
    lo_l, hi_l = num_locations or (min(2, max_locs), min(5, max_locs))
    pool = [all_locs[i] for i in rng.permutation(len(all_locs))[: int(rng.integers(lo_l, max(lo_l, hi_l) + 1))]]

    durations = _shot_durations(rng, duration, shot_seconds[0], shot_seconds[1], segment_seconds)
    cap = max(absence_seconds[0], min(absence_seconds[1], 0.4 * duration))

    # presence state: on screen, or away until a time
    first = [c.id for c in cast][: max(1, int(rng.integers(1, min(n_chars, 3) + 1)))]
    on: list[str] = list(first)
    away_until: dict[str, float] = {}
    for c in cast:
        if c.id not in on:
            away_until[c.id] = float(rng.uniform(0.0, max(1.0, 0.3 * duration)))
    been_on: set[str] = set()
    shown: set[str] = set()  # on screen in at least one shot of their current stay

    scenes: list[tuple[str, list[Shot]]] = []
    visited: list[str] = []
    t = 0.0
    scene_left = 0.0
    prev_prompt = ""
    empty_run = 0
    for i, d in enumerate(durations):
        new_scene = i == 0 or (len(pool) > 1 and scene_left <= 0.0)
        if new_scene:
            if not visited:
                loc = pool[0]
            else:
                fresh = [x for x in pool if x not in visited]
                old = [x for x in visited if x != scenes[-1][0]]
                loc = _pick(rng, fresh) if fresh and (not old or rng.random() < 0.55) else _pick(rng, old)
            if loc not in visited:
                visited.append(loc)
            scenes.append((loc, []))
            scene_left = float(rng.uniform(*scene_seconds))
            # who is there when the scene opens: those on screen plus anyone due back
            on = [cid for cid in on] + [cid for cid, u in sorted(away_until.items()) if u <= t and cid not in on]
            for cid in on:
                away_until.pop(cid, None)
        loc = scenes[-1][0]
        shots = scenes[-1][1]
        entering: list[str] = []
        if not new_scene:
            due = sorted((u, cid) for cid, u in away_until.items() if u <= t)
            entering = [cid for _, cid in due[: 2]]
        nobody = not on and not entering and bool(away_until)
        if nobody and (empty_run >= 2 or rng.random() < 0.3):
            # nobody would be on screen (again): the one due back soonest comes back early
            entering = [min(away_until.items(), key=lambda kv: kv[1])[0]]
            nobody = False
        for cid in entering:
            away_until.pop(cid)
        staying = list(on)
        leaving: list[str] = []
        last_shot = i == len(durations) - 1
        mean_stay = max(10.0, 0.15 * duration) if segment_seconds is None else 20.0
        for cid in staying:
            # a character is seen for at least one whole shot before walking out again
            if cid in shown and not last_shot and rng.random() < 1 - math.exp(-d / mean_stay):
                leaving.append(cid)
        establishing = nobody or (new_scene and i > 0 and not entering and not last_shot and rng.random() < 0.15)
        if establishing:
            # an empty shot: the new place before its characters, or the place while all are away
            leaving, shot_cast, entries = [], [], []
            prompt = _empty_prompt(rng, loc, prev_prompt)
        else:
            shot_cast = [cid for cid in names if cid in staying or cid in entering]
            entries: list[tuple[str, list[str], bool]] = []
            for cid in shot_cast:
                if cid in entering:
                    acts = [_pick(rng, ("walk_in_left", "walk_in_right"))]
                    if rng.random() < 0.3:
                        acts.append(_pick(rng, ("sit", "wave", "stand", "talk")))
                elif cid in leaving:
                    acts = [_pick(rng, ("walk_out_left", "walk_out_right"))]
                else:
                    acts = [_weighted(rng, _STAY_ACTIONS, talk_ok=len(shot_cast) > 1)]
                    if rng.random() < 0.12:
                        acts.insert(0, "stand" if acts[0] != "stand" else "walk")
                entries.append((names[cid], acts, cid in entering and cid in been_on))
            prompt = _prompt(entries, rng, loc) if entries else _empty_prompt(rng, loc, prev_prompt)
            for _ in range(4):  # a new prompt at every shot: change what one staying character does
                if prompt != prev_prompt or not entries:
                    break
                k = int(rng.integers(len(entries)))
                name, acts, back = entries[k]
                if acts[0] in V.MOVING_ACTIONS[:4]:
                    continue
                entries[k] = (name, [_pick(rng, [a for a in _STAY_ACTIONS if a not in acts and a != "talk"])], back)
                prompt = _prompt(entries, rng, loc)
        dialogue: list[DialogueLine] = []
        talkers = [cid for cid, (_, acts, _) in zip(shot_cast, entries) if "talk" in acts] if not establishing else []
        if talkers and len(shot_cast) >= 2 and rng.random() < 0.5:
            lines = [_DIALOGUE[j] for j in rng.permutation(len(_DIALOGUE))[: int(rng.integers(1, 3))]]
            dialogue = [DialogueLine(speaker=talkers[k % len(talkers)], text=line) for k, line in enumerate(lines)]
        camera = "static" if rng.random() < 0.4 else _pick(rng, [m for m in CAMERA_MOVES if m != "static"])
        transition = "fade" if new_scene and i > 0 and rng.random() < 0.25 else "cut"
        shots.append(Shot(prompt=prompt, characters=shot_cast, duration=d, camera=camera, dialogue=dialogue, transition=transition))
        prev_prompt = prompt
        empty_run = empty_run + 1 if establishing else 0
        been_on.update(shot_cast)
        shown.update(shot_cast)
        shown.difference_update(leaving)
        # state after the shot
        if not establishing:
            on = [cid for cid in names if cid in shot_cast and cid not in leaving]
        t = round(t + d, 6)
        for cid in leaving:
            lo_a = min(absence_seconds[0], cap)
            away_until[cid] = t + float(math.exp(rng.uniform(math.log(lo_a), math.log(cap))))
        scene_left -= d

    story = Story(
        title=f"StoryWorld {split} {seed}",
        fps=fps,
        size={"width": size[0], "height": size[1]},
        seed=story_seed_for(seed, split),
        characters=cast,
        locations=[Location(id=loc, name=_LOCATION_NAMES.get(loc, loc), description=V.LOCATIONS[loc]) for loc in visited],
        scenes=[Scene(location=loc, shots=shots) for loc, shots in scenes],
    )
    V.check_story(story)
    return story


def _weighted(rng: np.random.Generator, weights: dict[str, float], *, talk_ok: bool) -> str:
    items = [(a, w) for a, w in weights.items() if talk_ok or a != "talk"]
    p = np.array([w for _, w in items])
    return items[int(rng.choice(len(items), p=p / p.sum()))][0]


# -- reading the structure back ------------------------------------------------------------


def presence(story: Story) -> dict[str, list[tuple[float, float]]]:
    """Per character id, the merged on-screen intervals in script seconds (whole shots)."""
    spans: dict[str, list[tuple[float, float]]] = {c.id: [] for c in story.characters}
    t = 0.0
    for _, _, shot in story.shots():
        end = round(t + shot.duration, 6)
        for cid in shot.characters:
            iv = spans[cid]
            if iv and abs(iv[-1][1] - t) < 1e-6:
                iv[-1] = (iv[-1][0], end)
            else:
                iv.append((t, end))
        t = end
    return spans


def returns(story: Story, *, min_gap: float = 0.0) -> list[ReturnEvent]:
    """Every time a character comes back on screen after at least ``min_gap`` s away, in time order."""
    events = [
        ReturnEvent(cid, a[1], b[0])
        for cid, iv in presence(story).items()
        for a, b in zip(iv, iv[1:])
        if b[0] - a[1] >= min_gap - 1e-9
    ]
    return sorted(events, key=lambda e: (e.back_at, e.character))


def revisited_locations(story: Story) -> list[str]:
    """Location ids that scenes come back to after a scene elsewhere, in order of return."""
    seen: set[str] = set()
    out: list[str] = []
    prev: str | None = None
    for scene in story.scenes:
        loc = scene.location
        if loc != prev and loc in seen and loc not in out:
            out.append(loc)
        seen.add(loc)
        prev = loc
    return out
