"""StoryWorld's vocabulary: the words it can render and the details it never says.

Everything a script may say to StoryWorld lives here: location words, action phrases and the
captioned attributes of a character (:class:`Appearance`). What a script never says but the
renderer still draws -- shoe colour, a badge on the chest, skin tone, the exact hue of the top,
the phase of its stripes -- is a :class:`HiddenDetails`, drawn at random per character per
story by :func:`draw_hidden`. Only visual memory can keep hidden details consistent, which
is what makes StoryWorld a yardstick of long-range consistency.

Unspecified attributes: a description that does not mention an attribute leaves it ``None``
(*unspecified*); :func:`resolve_appearance` fills every unspecified attribute from the story
seed and the character id, deterministically, so the character still looks the same all
story long. ``glasses`` and ``hat`` are absent unless the text says them.

Parsing (``parse_appearance``, ``parse_location``, ``parse_actions``, ``check_story``) lives
in :mod:`longtake.world.parse` and is re-exported here.
"""

from __future__ import annotations

import hashlib
from dataclasses import asdict, dataclass, fields
from typing import Any

import numpy as np

# -- locations ---------------------------------------------------------------------------

#: location id -> canonical description (the words a caption uses for it).
LOCATIONS: dict[str, str] = {
    "office": "an office with desks, computers and a bright window",
    "park": "a green park with trees, a bench and a blue sky",
    "beach": "a sunny beach with sand, waves and a parasol",
    "classroom": "a classroom with a blackboard, school desks and a clock",
    "street_night": "a city street at night with street lamps and lit windows",
    "kitchen": "a kitchen with a stove, cupboards and a fridge",
    "forest": "a dark forest with tall pine trees and ferns",
    "library": "a library with tall bookshelves and warm lamps",
    "bedroom": "a bedroom with a bed, a rug and a night lamp",
}

#: words that name a location in an id, a name or a description -> location id.
LOCATION_WORDS: dict[str, str] = {
    "office": "office", "park": "park", "beach": "beach", "seaside": "beach", "shore": "beach",
    "classroom": "classroom", "school": "classroom", "street": "street_night", "city": "street_night",
    "kitchen": "kitchen", "forest": "forest", "woods": "forest", "wood": "forest",
    "library": "library", "bedroom": "bedroom",
}

# -- actions -----------------------------------------------------------------------------

#: action id -> canonical prompt phrase.
ACTIONS: dict[str, str] = {
    "walk_in_left": "walks in from the left",
    "walk_in_right": "walks in from the right",
    "walk_out_left": "walks out to the left",
    "walk_out_right": "walks out to the right",
    "walk": "walks",
    "stand": "stands",
    "sit": "sits down",
    "jump": "jumps",
    "wave": "waves",
    "drink": "drinks coffee",
    "talk": "talks",
    "idle": "waits",
}

#: The action of an on-screen character that the prompt does not mention.
IDLE_ACTION = "idle"

#: Actions that move the character across the frame (x position depends on shot progress).
MOVING_ACTIONS = ("walk_in_left", "walk_in_right", "walk_out_left", "walk_out_right", "walk")

#: every accepted phrase (lower case) -> action id. The canonical phrase, the plural/base
#: form ("Mia and Leo wave") and a few synonyms. Longest phrases are matched first.
ACTION_PHRASES: dict[str, str] = {}


def _add(action: str, *phrases: str) -> None:
    for p in phrases:
        ACTION_PHRASES[p] = action


_add("walk_in_left", "walks in from the left", "walk in from the left", "enters from the left", "enter from the left", "comes in from the left", "come in from the left")
_add("walk_in_right", "walks in from the right", "walk in from the right", "enters from the right", "enter from the right", "comes in from the right", "come in from the right")
_add("walk_out_left", "walks out to the left", "walk out to the left", "leaves to the left", "leave to the left", "exits to the left", "exit to the left", "walks off to the left")
_add("walk_out_right", "walks out to the right", "walk out to the right", "leaves to the right", "leave to the right", "exits to the right", "exit to the right", "walks off to the right")
_add("walk", "walks", "walk", "walks around", "walk around", "strolls", "stroll")
_add("stand", "stands", "stand", "stands up", "stand up", "gets up", "get up")
_add("sit", "sits down", "sit down", "sits", "sit")
_add("jump", "jumps", "jump", "jumps up", "jump up")
_add("wave", "waves", "wave", "waves hello", "wave hello")
_add("drink", "drinks coffee", "drink coffee", "drinks", "drink", "drinks tea", "drink tea", "sips coffee", "sip coffee")
_add("talk", "talks", "talk", "speaks", "speak", "says hello", "say hello", "chats", "chat")
_add("idle", "waits", "wait", "watches", "watch", "looks on", "look on", "stands still", "stand still")

#: Words a prompt clause may hold besides names and one action phrase. Location words and
#: the story's own location names are accepted too.
FILLER_WORDS: frozenset[str] = frozenset(
    """a an the at to with in on of into onto from by near next behind beside inside outside
    his her their its my your our he she they him them it everyone everybody both all together
    each other one another again slowly quickly briefly happily calmly back then while also
    still here there room desk bench window table chair floor cup mug morning evening day night
    hello hi friend friends""".split()
)

# -- captioned appearance ----------------------------------------------------------------

BODIES: tuple[str, ...] = ("woman", "man", "girl", "boy")
HAIR_COLOURS: tuple[str, ...] = ("black", "brown", "blond", "red", "grey", "white", "blue")
HAIR_STYLES: tuple[str, ...] = ("short", "long", "curly", "ponytail", "bun", "bald")
TOP_COLOURS: tuple[str, ...] = ("red", "orange", "yellow", "green", "blue", "purple", "pink", "white", "black", "grey", "brown")
TOP_PATTERNS: tuple[str, ...] = ("plain", "striped", "checked", "dotted")
TOP_GARMENTS: tuple[str, ...] = ("shirt", "sweater", "jacket", "coat", "dress")
TROUSER_COLOURS: tuple[str, ...] = ("blue", "black", "grey", "brown", "green", "white", "beige", "red")
HATS: tuple[str, ...] = ("hat", "cap", "beanie")
ACCESSORIES: tuple[str, ...] = ("glasses", *HATS)

#: Synonyms accepted in descriptions -> canonical word.
APPEARANCE_SYNONYMS: dict[str, str] = {
    "lady": "woman", "guy": "man", "gray": "grey", "blonde": "blond", "t-shirt": "shirt", "tshirt": "shirt",
    "blouse": "shirt", "jumper": "sweater", "pullover": "sweater", "stripes": "striped", "stripy": "striped",
    "checkered": "checked", "plaid": "checked", "spotted": "dotted", "polka": "dotted", "dots": "dotted",
    "pants": "trousers", "jeans": "trousers", "slacks": "trousers", "spectacles": "glasses",
}

#: RGB of every colour word (top, trousers, hair).
COLOUR_RGB: dict[str, tuple[int, int, int]] = {
    "red": (196, 42, 42), "orange": (232, 128, 32), "yellow": (232, 200, 48), "green": (46, 140, 62),
    "blue": (42, 82, 190), "purple": (118, 58, 160), "pink": (236, 128, 170), "white": (236, 236, 232),
    "black": (30, 30, 36), "grey": (128, 128, 132), "brown": (112, 70, 38), "beige": (206, 186, 146),
    "blond": (226, 196, 108),
}


@dataclass(frozen=True)
class Appearance:
    """The captioned attributes of a character. ``None`` means *unspecified* (see module doc).

    ``describe()`` writes the canonical caption; ``parse_appearance(a.describe()) == a``.
    A bald character has no hair colour (it is normalised to ``None``).
    """

    body: str | None = None
    hair_colour: str | None = None
    hair_style: str | None = None
    top_colour: str | None = None
    top_pattern: str | None = None
    top_garment: str | None = None
    trouser_colour: str | None = None
    glasses: bool = False
    hat: str | None = None

    def __post_init__(self) -> None:
        if self.hair_style == "bald" and self.hair_colour is not None:
            object.__setattr__(self, "hair_colour", None)
        for name, allowed in _ALLOWED.items():
            value = getattr(self, name)
            if value is not None and value not in allowed:
                from longtake.world.errors import WorldError

                raise WorldError(f"Appearance.{name}: unknown value '{value}'; expected one of: {', '.join(allowed)}")

    def describe(self) -> str:
        """Canonical caption, e.g. 'a woman with short black hair, a red striped shirt,
        blue trousers and glasses'. Unspecified attributes are left out."""
        parts: list[str] = []
        if self.hair_style == "bald":
            parts.append("a bald head")
        elif self.hair_style in ("ponytail", "bun"):
            parts.append(" ".join(w for w in (self.hair_colour, "hair in a", self.hair_style) if w))
        elif self.hair_style or self.hair_colour:
            parts.append(" ".join(w for w in (self.hair_style, self.hair_colour, "hair") if w))
        if self.top_colour or self.top_pattern or self.top_garment:
            words = [w for w in (self.top_colour, self.top_pattern, self.top_garment or "top") if w]
            parts.append(("an " if words[0][0] in "aeiou" else "a ") + " ".join(words))
        if self.trouser_colour:
            parts.append(f"{self.trouser_colour} trousers")
        if self.hat:
            parts.append(f"a {self.hat}")
        if self.glasses:
            parts.append("glasses")
        head = f"a {self.body}" if self.body else "a person"
        if not parts:
            return head
        if len(parts) == 1:
            return f"{head} with {parts[0]}"
        return f"{head} with {', '.join(parts[:-1])} and {parts[-1]}"

    def unspecified(self) -> list[str]:
        """Names of the attributes left unspecified."""
        return [f.name for f in fields(self) if f.name not in ("glasses", "hat") and getattr(self, f.name) is None]

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)


_ALLOWED: dict[str, tuple[str, ...]] = {
    "body": BODIES, "hair_colour": HAIR_COLOURS, "hair_style": HAIR_STYLES, "top_colour": TOP_COLOURS,
    "top_pattern": TOP_PATTERNS, "top_garment": TOP_GARMENTS, "trouser_colour": TROUSER_COLOURS, "hat": HATS,
}

# -- hidden details ----------------------------------------------------------------------

SKIN_TONES: tuple[tuple[int, int, int], ...] = (
    (250, 218, 190), (236, 192, 154), (214, 164, 120), (178, 124, 84), (136, 90, 60), (96, 62, 42),
)
SHOE_COLOURS: tuple[str, ...] = ("black", "brown", "white", "red", "blue", "yellow", "green")
BADGE_SHAPES: tuple[str, ...] = ("none", "circle", "square", "diamond")
BADGE_COLOURS: tuple[str, ...] = ("yellow", "red", "blue", "white", "green", "orange", "pink")
BAG_KINDS: tuple[str, ...] = ("none", "shoulder_bag", "backpack")


@dataclass(frozen=True)
class HiddenDetails:
    """What the text never says about a character, fixed for the whole story.

    Every field is drawn visibly: shoes, the badge on the chest, skin, the exact hue of the
    top, the phase and width of its pattern, the bag, the watch, the body height.
    """

    skin_tone: int  # index into SKIN_TONES
    shoe_colour: str  # a key of COLOUR_RGB
    badge_shape: str  # BADGE_SHAPES; "none" = no badge
    badge_colour: str
    badge_side: str  # "left" | "right" of the chest, as seen by the viewer
    top_hue_shift: float  # degrees added to the top colour's hue, in [-14, 14]
    top_shade: float  # brightness factor of the top, in [0.85, 1.15]
    trouser_shade: float  # brightness factor of the trousers, in [0.8, 1.2]
    hair_shade: float  # brightness factor of the hair, in [0.8, 1.2]
    pattern_period: int  # pixels between stripes/checks/dots at 128 px, 3..5
    pattern_width: int  # stripe width in pixels at 128 px, 1..2
    pattern_phase: int  # offset of the pattern, 0..period-1
    bag: str  # BAG_KINDS
    bag_colour: str
    watch: bool  # a watch on the viewer-left wrist
    hat_colour: str  # used when the character wears a hat
    height: float  # body height factor, in [0.92, 1.08]

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)


def stable_seed(*parts: object) -> int:
    """A 63-bit seed from ``parts`` that is the same in every process (unlike ``hash()``)."""
    blob = "\x1f".join(str(p) for p in parts).encode()
    return int.from_bytes(hashlib.blake2b(blob, digest_size=8).digest(), "little") >> 1


def draw_hidden(story_seed: int, character_id: str) -> HiddenDetails:
    """The hidden details of ``character_id`` in the story with ``story_seed`` (deterministic)."""
    rng = np.random.default_rng(stable_seed("storyworld-hidden", story_seed, character_id))
    period = int(rng.integers(3, 6))
    return HiddenDetails(
        skin_tone=int(rng.integers(len(SKIN_TONES))),
        shoe_colour=str(rng.choice(SHOE_COLOURS)),
        badge_shape=str(rng.choice(BADGE_SHAPES, p=[0.2, 0.3, 0.3, 0.2])),
        badge_colour=str(rng.choice(BADGE_COLOURS)),
        badge_side=str(rng.choice(("left", "right"))),
        top_hue_shift=round(float(rng.uniform(-14, 14)), 2),
        top_shade=round(float(rng.uniform(0.85, 1.15)), 3),
        trouser_shade=round(float(rng.uniform(0.8, 1.2)), 3),
        hair_shade=round(float(rng.uniform(0.8, 1.2)), 3),
        pattern_period=period,
        pattern_width=int(rng.integers(1, 3)),
        pattern_phase=int(rng.integers(period)),
        bag=str(rng.choice(BAG_KINDS, p=[0.4, 0.3, 0.3])),
        bag_colour=str(rng.choice(("brown", "black", "red", "blue", "green", "beige"))),
        watch=bool(rng.random() < 0.5),
        hat_colour=str(rng.choice(("red", "blue", "black", "green", "yellow", "grey"))),
        height=round(float(rng.uniform(0.92, 1.08)), 3),
    )


def resolve_appearance(described: Appearance, story_seed: int, character_id: str) -> Appearance:
    """``described`` with every unspecified attribute drawn from (story seed, character id)."""
    rng = np.random.default_rng(stable_seed("storyworld-appearance", story_seed, character_id))
    picks = {name: str(rng.choice(allowed)) for name, allowed in _ALLOWED.items() if name != "hat"}
    values = {name: getattr(described, name) if getattr(described, name) is not None else picks[name] for name in picks}
    if described.hair_style is None and values["hair_style"] == "bald" and values["body"] in ("woman", "girl"):
        values["hair_style"] = "long"
    if values["hair_style"] == "bald":
        values["hair_colour"] = None
    if described.top_garment is None and values["top_garment"] == "dress" and values["body"] in ("man", "boy"):
        values["top_garment"] = "shirt"
    return Appearance(**values, glasses=described.glasses, hat=described.hat)


def vocabulary() -> dict[str, Any]:
    """Everything StoryWorld understands, for ``longtake world vocab``."""
    from longtake.script.schema import CAMERA_MOVES, TRANSITIONS

    return {
        "locations": dict(LOCATIONS),
        "location_words": dict(LOCATION_WORDS),
        "actions": dict(ACTIONS),
        "action_phrases": dict(ACTION_PHRASES),
        "idle_action": IDLE_ACTION,
        "filler_words": sorted(FILLER_WORDS),
        "appearance": {
            "bodies": list(BODIES), "hair_colours": list(HAIR_COLOURS), "hair_styles": list(HAIR_STYLES),
            "top_colours": list(TOP_COLOURS), "top_patterns": list(TOP_PATTERNS), "top_garments": list(TOP_GARMENTS),
            "trouser_colours": list(TROUSER_COLOURS), "accessories": list(ACCESSORIES), "hats": list(HATS),
            "synonyms": dict(APPEARANCE_SYNONYMS),
        },
        "hidden_details": {
            "fields": [f.name for f in fields(HiddenDetails)],
            "skin_tones": [list(t) for t in SKIN_TONES], "shoe_colours": list(SHOE_COLOURS),
            "badge_shapes": list(BADGE_SHAPES), "badge_colours": list(BADGE_COLOURS), "bags": list(BAG_KINDS),
        },
        "camera_moves": list(CAMERA_MOVES),
        "transitions": list(TRANSITIONS),
    }


# Re-exported parsers (they need the tables above, so they are imported last).
from longtake.world.parse import check_story, parse_actions, parse_appearance, parse_location  # noqa: E402

__all__ = [
    "ACCESSORIES", "ACTIONS", "ACTION_PHRASES", "BODIES", "COLOUR_RGB", "FILLER_WORDS", "HAIR_COLOURS",
    "HAIR_STYLES", "HATS", "IDLE_ACTION", "LOCATIONS", "LOCATION_WORDS", "MOVING_ACTIONS", "TOP_COLOURS",
    "TOP_GARMENTS", "TOP_PATTERNS", "TROUSER_COLOURS", "Appearance", "HiddenDetails", "check_story",
    "draw_hidden", "parse_actions", "parse_appearance", "parse_location", "resolve_appearance",
    "stable_seed", "vocabulary",
]
