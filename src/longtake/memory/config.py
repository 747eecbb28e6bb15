"""Memory settings: one frozen dataclass, the mode a string choice (DESIGN.md).

Modes (docs/memory.md):
  - "none": local window only, no sink (the cache holds the most recent frames, nothing else);
  - "sink": LongLive's frame sink + local window; shot cuts within a place keep the cache, no
    re-cache at a prompt switch: the generator's behaviour before memory existed (but for the
    new sink at a new place, below), the baseline;
  - "nam": sink + MemFlow's narrative adaptive memory bank + local window;
  - "nam+sma": "nam" where each layer and head attends only to its top-k bank frames;
  - "entity": sink + memory frames retrieved by the ids of who / where is on screen.

The three memory modes also start a new shot sink at every shot cut (the old sink goes to
memory) and re-cache the sink and window under the new prompt at a prompt switch (LongLive);
``shot_sink`` / ``recache`` turn those on or off for any mode (None: the mode's default).
Every mode starts a new sink at a cut to another place (``Chunk.new_place``, ``scene_sink``):
the frames of the old place are not continued into the new one (docs/memory.md).
"""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass
from typing import TYPE_CHECKING, Literal, get_args

from longtake.memory.errors import MemoryBankError

if TYPE_CHECKING:
    from longtake.plan.timeline import Chunk

MemoryMode = Literal["none", "sink", "nam", "nam+sma", "entity"]
MEMORY_MODES: tuple[str, ...] = get_args(MemoryMode)
#: Modes with a memory segment between the sink and the window.
MEMORY_SEGMENT_MODES = ("nam", "nam+sma", "entity")
#: The default of ``longtake render`` and the built-in generator. "entity" since session 18:
#: with its place and prompt gates it measured no worse than sink-only on every measure of
#: the memory and quality benches (places, prompt alignment, attributes, minute 9 against
#: minute 1) and better on returning characters' identity, at about 2% more time
#: (docs/memory.md, "Why the default is entity").
DEFAULT_MODE: MemoryMode = "entity"


#: How far ahead in the script (seconds) NAM looks when it ranks its frames (the prompt score):
#: a frame is worth keeping while the current prompt or one the script uses within this many
#: seconds is about it (docs/memory.md, "NAM looks ahead").
NAM_LOOKAHEAD_S = 60.0

#: The default prompt-relevance gate of NAM (with the prompt score) and entity memory
#: (``MemoryConfig.nam_gate``, ``entity_gate``): set for the built-in text encoder.
PROMPT_GATE = 0.83


@dataclass(frozen=True)
class MemoryConfig:
    """How a generator remembers beyond its local window.

    Attributes:
        mode: see the module docstring.
        capacity: NAM bank frames (MemFlow: 3).
        record_every: a prototype every this many chunks (MemFlow: 3), NAM and entity memory.
        nam_score: how NAM ranks its frames against the current prompt: "prompt" (default:
            the prompt each frame was written under against the current one, through the
            model's text encoder) or "memflow" (MemFlow's text keys . frame keys; on the
            built-in model it prefers frames of other places, docs/memory.md).
        nam_gate: with the prompt score, the relevance (a cosine similarity, -1 to 1) a bank
            frame needs to be installed for a chunk; -1 installs every frame, as MemFlow does.
            None: :data:`PROMPT_GATE` with the prompt score (it keeps frames written under prompts
            of the same setting and drops the others at a cut to another place; calibrated on
            storyworld-bench stories 30-34, docs/memory.md), no gate with the MemFlow score.
        nam_lookahead: seconds of the script ahead whose prompts NAM also weighs when the bank
            is full: it keeps the frames that best cover the current prompt and those
            (``NarrativeMemory.covering``), so a character who leaves keeps a frame while the
            script brings her back within this horizon. 0 ranks by the current prompt alone (MemFlow). None:
            :data:`NAM_LOOKAHEAD_S` with the prompt score, 0 with the MemFlow score (ranking by
            a future prompt needs its text alone, not cross-attention keys).
        sma_top_k: frames each head attends to in "nam+sma" (of ``capacity``).
        sma_per: "chunk" (default: once per chunk, the frames most relevant to the previous
            chunk's queries; it saves what attending fewer frames saves) or "head" (MemFlow's
            definition: each layer and head picks with its own queries inside attention; the
            per-pass gather cost more than it saved on the CPU, docs/memory.md).
        entity_slots: memory frames installed per chunk in "entity" (the attention budget).
        entity_per_entity: entries one entity keeps (its anchor + the newest).
        entity_capacity: entries the entity memory keeps in all.
        entity_gate: "entity" installs a generated frame only when the prompt it was written
            under reaches this relevance to the chunk's prompt (as ``nam_gate``; reference
            images, casting frames and imported entries are never gated); -1 installs every
            retrieved frame (before session 17). None: :data:`PROMPT_GATE`.
        entity_place: "entity" installs a generated frame only when it was made at the
            chunk's location (the planner's tag; refs, casting frames and imports are never
            held back). On by default since session 18: the prompt gate alone let in frames of
            another place whose prompts shared long character descriptions.
        recache: LongLive's KV re-cache at a prompt switch; None = on for the memory modes.
        shot_sink: a new sink at every shot cut, the old one to memory; None = on for the
            memory modes (only they have a memory to put the old sink in).
        scene_sink: a new sink at a cut to another location (``Chunk.new_place``): the sink
            and window of the old place are forgotten (the memory modes send the old sink to
            memory, as at any shot cut). None = on in every mode: a model that attends to
            frames of the old place keeps drawing it under the new place's prompt (the
            built-in model did on 4 of 10 held-out stories, docs/memory.md).
        casting: "entity" without reference images: first generate one frame per character
            and location with the same model (MovieDreamer's hierarchical step). Off by default.
        entity_figures: "entity" with a DiT that has a figure painter: keep each character's
            figure latents at its first appearance and composite them into its box whenever
            it is on screen (memory/figures.py). Off by default: on the shipped model it
            changed the memory bench by no more than one return (docs/memory.md).
    """

    mode: MemoryMode = "sink"
    capacity: int = 3
    record_every: int = 3
    nam_score: Literal["prompt", "memflow"] = "prompt"
    nam_gate: float | None = None
    nam_lookahead: float | None = None
    sma_top_k: int = 2
    sma_per: Literal["head", "chunk"] = "chunk"
    entity_slots: int = 3
    entity_per_entity: int = 3
    entity_capacity: int = 32
    entity_gate: float | None = None
    entity_place: bool = True
    recache: bool | None = None
    shot_sink: bool | None = None
    scene_sink: bool | None = None
    casting: bool = False
    entity_figures: bool = False

    def __post_init__(self) -> None:
        if self.mode not in MEMORY_MODES:
            raise MemoryBankError(f"memory mode must be one of {', '.join(MEMORY_MODES)}; got {self.mode!r}")
        small = {k: getattr(self, k) for k in ("capacity", "record_every", "sma_top_k", "entity_slots", "entity_per_entity", "entity_capacity") if getattr(self, k) < 1}
        if small:
            raise MemoryBankError(f"memory settings must be >= 1: {small}")
        if self.nam_score not in ("prompt", "memflow"):
            raise MemoryBankError(f"nam_score must be 'prompt' or 'memflow', got {self.nam_score!r}")
        if self.nam_gate is not None and (self.nam_score != "prompt" or not -1.0 <= self.nam_gate <= 1.0):
            raise MemoryBankError(
                f"nam_gate needs nam_score 'prompt' and a value in [-1, 1] (a cosine similarity); got {self.nam_gate!r} with nam_score {self.nam_score!r}"
            )
        if self.nam_lookahead is not None and (self.nam_lookahead < 0 or (self.nam_lookahead > 0 and self.nam_score != "prompt")):
            raise MemoryBankError(f"nam_lookahead must be >= 0 seconds, and > 0 needs nam_score 'prompt'; got {self.nam_lookahead!r} with nam_score {self.nam_score!r}")
        if self.entity_gate is not None and not -1.0 <= self.entity_gate <= 1.0:
            raise MemoryBankError(f"entity_gate must be a cosine similarity in [-1, 1]; got {self.entity_gate!r}")
        if self.sma_per not in ("head", "chunk"):
            raise MemoryBankError(f"sma_per must be 'head' or 'chunk', got {self.sma_per!r}")
        if self.shot_sink and self.mode not in MEMORY_SEGMENT_MODES:
            raise MemoryBankError(f"shot_sink needs a memory to put the old sink in; mode {self.mode!r} has none")
        if self.entity_figures and self.mode != "entity":
            raise MemoryBankError(f"entity_figures keeps figures in the entity memory; it needs mode 'entity', not {self.mode!r}")
        if self.casting and self.mode != "entity":
            raise MemoryBankError(f"casting fills the entity memory; it needs mode 'entity', not {self.mode!r}")

    @property
    def has_memory(self) -> bool:
        """Whether there is a memory segment (bank or entity memory)."""
        return self.mode in MEMORY_SEGMENT_MODES

    @property
    def use_nam_gate(self) -> float | None:
        """The NAM relevance gate in force: None with the MemFlow score."""
        if self.nam_score != "prompt":
            return None
        return PROMPT_GATE if self.nam_gate is None else float(self.nam_gate)

    @property
    def use_nam_lookahead(self) -> float:
        """Seconds of the script NAM ranks its frames against beyond the current prompt."""
        if self.nam_lookahead is not None:
            return float(self.nam_lookahead)
        return NAM_LOOKAHEAD_S if self.nam_score == "prompt" else 0.0

    @property
    def use_entity_gate(self) -> float | None:
        """The entity memory's relevance gate in force: None when off (-1)."""
        gate = PROMPT_GATE if self.entity_gate is None else float(self.entity_gate)
        return None if gate <= -1.0 else gate

    @property
    def use_recache(self) -> bool:
        return self.has_memory if self.recache is None else bool(self.recache)

    @property
    def use_shot_sink(self) -> bool:
        return self.has_memory if self.shot_sink is None else bool(self.shot_sink)

    @property
    def use_scene_sink(self) -> bool:
        return True if self.scene_sink is None else bool(self.scene_sink)

    def restarts_at(self, chunk: Chunk) -> bool:
        """Whether the cache starts a new sink before ``chunk`` (a shot cut with shot sinks,
        or a cut to another place with scene sinks)."""
        return chunk.cut and (self.use_shot_sink or (self.use_scene_sink and chunk.new_place))

    @property
    def use_sink(self) -> bool:
        return self.mode != "none"

    def replace(self, **changes) -> "MemoryConfig":
        unknown = set(changes) - {f.name for f in dataclasses.fields(self)}
        if unknown:
            raise MemoryBankError(f"unknown memory settings: {', '.join(sorted(unknown))}")
        return dataclasses.replace(self, **changes)

    def to_dict(self) -> dict[str, object]:
        """Plain settings, for the manifest and the resume identity (defaults resolved)."""
        out = dataclasses.asdict(self)
        out.update(recache=self.use_recache, shot_sink=self.use_shot_sink, scene_sink=self.use_scene_sink, nam_gate=self.use_nam_gate,
                   nam_lookahead=self.use_nam_lookahead,
                   entity_gate=self.use_entity_gate)
        return out
