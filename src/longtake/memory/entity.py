"""Entity memory: frames tagged with the characters and location on screen, retrieved by id.

The planner knows who and where is on screen in every chunk (``Chunk.entities``: the location
first, then the characters). Every recorded frame is tagged with those ids; when an entity
comes back, its frames are retrieved by id, whatever the prompt says and however long it was
away, so a character who left at second 10 can be copied from memory at second 50.

Recording: the first latent frame of every ``record_every``-th chunk (as NAM), and of any
chunk where an on-screen entity has no entry yet (its first appearance). Reference images
(``refs`` in the script), casting frames and entries of an earlier render's memory file are
added with ids from :meth:`EntityMemory.external_id` (negative, never a generated frame's).

Bounds: an entity holds at most ``per_entity`` entries, a frame tagged with several entities
counts for each, and the memory holds at most ``capacity`` entries in all. An entity's first
entry is its *anchor* (its reference image, else its first appearance) and is kept while the
entity has newer ones; past ``per_entity``, the entity's oldest non-anchor entry loses its tag
(the entry goes when no tag is left). Past ``capacity``, the entry of the entities seen least
recently (on screen or recorded) goes first, a non-anchor before an anchor: a character away
for long loses her newest frames, then her anchor, only when the memory is full of others.

Figures (:meth:`keep_figure`, memory/figures.py): a generator whose DiT has a figure painter
also keeps each character's figure latents at its first appearance and composites them into
the character's box whenever it is on screen (``MemoryConfig.entity_figures``).

Retrieval (:meth:`select`): ``slots`` memory frames per chunk (a fixed attention budget),
filled round-robin over the on-screen characters, then the location: each entity's anchor
first, then its most recent entries. Frames still in the KV cache (sink or window) are skipped.
"""

from __future__ import annotations

import logging
from typing import Any

from torch import Tensor

from longtake.memory.bank import DEFAULT_RECORD_EVERY, is_record_chunk
from longtake.memory.entry import KIND_FRAME, KIND_IMPORT, Embed, MemoryEntry, entry_from_cache, entry_from_kv, install, prompt_similarity
from longtake.memory.errors import MemoryBankError
from longtake.model.kv_cache import KVCache, PromptKV
from longtake.plan.timeline import Chunk

log = logging.getLogger(__name__)

DEFAULT_SLOTS = 3  # the same attention budget as MemFlow's 3-frame bank
DEFAULT_PER_ENTITY = 3  # anchor + the two most recent
DEFAULT_CAPACITY = 32


class EntityMemory:
    """Frames tagged by entity id. ``select`` before a chunk is sampled, ``update`` after it was written.

    Args:
        slots: memory frames installed per chunk.
        per_entity: entries one entity holds at most.
        capacity: entries held in all.
        record_every: a prototype every this many chunks (plus first appearances).
        embed, gate: with both, a generated frame (kind "frame") is installed only when its
            prompt's relevance to the chunk's prompt (:func:`~longtake.memory.entry.prompt_similarity`)
            reaches ``gate``; frames from outside the render (refs, casting, imports) always may be.
        same_place: a generated frame is installed only when it was made at the chunk's
            location (its planner tag); refs, casting frames and imports always may be. The
            prompt gate alone lets in frames of another place when the two prompts share long
            character descriptions (session 18, docs/memory.md); the tag is exact.
    """

    name = "entity"

    def __init__(
        self,
        slots: int = DEFAULT_SLOTS,
        per_entity: int = DEFAULT_PER_ENTITY,
        capacity: int = DEFAULT_CAPACITY,
        record_every: int = DEFAULT_RECORD_EVERY,
        *,
        embed: Embed | None = None,
        gate: float | None = None,
        same_place: bool = False,
    ) -> None:
        if slots < 1 or per_entity < 1 or capacity < max(slots, per_entity) or record_every < 1:
            raise MemoryBankError(
                f"EntityMemory needs slots >= 1, per_entity >= 1, capacity >= both, record_every >= 1; "
                f"got slots={slots}, per_entity={per_entity}, capacity={capacity}, record_every={record_every}"
            )
        self.slots = slots
        self.per_entity = per_entity
        self.capacity = capacity
        if gate is not None and embed is None:
            raise MemoryBankError("an entity memory gate needs the text encoder's embed function")
        self.record_every = record_every
        self.embed = embed
        self.gate = gate
        self.same_place = same_place
        self.entries: dict[int, MemoryEntry] = {}  # frame id -> entry, oldest first
        self.tags: dict[str, list[int]] = {}  # entity id -> frame ids, oldest first ([0] = anchor)
        self.seen: dict[str, int] = {}  # entity id -> tick it was last on screen or recorded
        self._tick = 0
        self._next_external = -1
        # entity id -> its figure at its first appearance (memory/figures.py), for a generator
        # that copies figures; at most ``capacity``, the least recently seen dropped first
        self.figures: dict[str, Tensor] = {}

    def __len__(self) -> int:
        return len(self.entries)

    def of(self, entity: str) -> list[MemoryEntry]:
        """The entries of one entity, oldest first (the anchor first)."""
        return [self.entries[f] for f in self.tags.get(entity, [])]

    def external_id(self) -> int:
        """A fresh negative frame id for an entry from outside the render."""
        fid = self._next_external
        self._next_external -= 1
        return fid

    # ----------------------------------------------------------------- write
    def add(self, entry: MemoryEntry, prompt: PromptKV | None = None, text: str = "") -> bool:
        """Insert ``entry`` under each of its entities; False when its frame is already held.
        (``prompt`` and ``text`` are unused: retrieval is by id; they keep the interface of the
        NAM bank.)"""
        if entry.frame in self.entries or not entry.entities:
            return False
        self.entries[entry.frame] = entry
        self._see(entry.entities)
        for ent in dict.fromkeys(entry.entities):
            frames = self.tags.setdefault(ent, [])
            frames.append(entry.frame)
            while len(frames) > self.per_entity:
                self._untag(ent, frames[1])  # the oldest after the anchor
        while len(self.entries) > self.capacity:
            self._remove(self._victim())
        return True

    def _victim(self) -> int:
        """The entry to drop past ``capacity``: the one whose entities were seen least recently
        (least recently used); among equals a non-anchor, then the oldest."""
        anchors = {frames[0] for frames in self.tags.values()}
        holders: dict[int, list[str]] = {}
        for ent, frames in self.tags.items():
            for f in frames:
                holders.setdefault(f, []).append(ent)
        order = {f: i for i, f in enumerate(self.entries)}
        return min(self.entries, key=lambda f: (max(self.seen.get(e, -1) for e in holders.get(f, [""])), f in anchors, order[f]))

    def _see(self, entities: tuple[str, ...]) -> None:
        self._tick += 1
        for ent in entities:
            self.seen[ent] = self._tick

    def add_external(self, kv: list[tuple[Tensor, Tensor]], *, entities: tuple[str, ...], location: str, kind: str) -> MemoryEntry:
        """Add one frame from outside the render (reference image, casting frame): per-layer
        (K, V), each (1, Nh, n, Dh)."""
        entry = entry_from_kv(kv, frame=self.external_id(), chunk=-1, entities=entities, location=location, kind=kind)
        self.add(entry)
        return entry

    def update(self, chunk: Chunk, cache: KVCache, first_frame: int) -> None:
        """After ``chunk`` was written (its first latent frame at ``first_frame``): record it
        when it is a prototype chunk or shows an entity that has no entry yet."""
        new = [e for e in chunk.entities if not self.tags.get(e)]
        if new or is_record_chunk(chunk, self.record_every):
            entry = entry_from_cache(
                cache, first_frame, chunk=chunk.index, entities=chunk.entities, location=chunk.location, kind=KIND_FRAME, prompt=chunk.prompt
            )
            self.add(entry, cache.prompt, chunk.prompt)

    def keep_figure(self, entity: str, figure: Tensor) -> None:
        """Keep ``entity``'s figure (C + 1, h, w) unless it has one (the first appearance
        stays); past ``capacity`` figures, the one of the entity seen least recently goes."""
        if entity in self.figures:
            return
        self.figures[entity] = figure.detach()
        while len(self.figures) > self.capacity:
            del self.figures[min(self.figures, key=lambda e: self.seen.get(e, -1))]

    def _untag(self, entity: str, frame: int) -> None:
        self.tags[entity].remove(frame)
        if not self.tags[entity]:
            del self.tags[entity]
        if not any(frame in frames for frames in self.tags.values()):
            del self.entries[frame]

    def _remove(self, frame: int) -> None:
        for ent in [e for e, frames in self.tags.items() if frame in frames]:
            self._untag(ent, frame)
        self.entries.pop(frame, None)

    # ----------------------------------------------------------------- read
    def retrieve(self, entities: tuple[str, ...], *, exclude: set[int] | None = None, limit: int | None = None) -> list[MemoryEntry]:
        """Up to ``limit`` (default ``slots``) entries for ``entities`` in priority order:
        round-robin over the entities, each one's anchor first, then its newest entries."""
        exclude = exclude or set()
        limit = self.slots if limit is None else limit
        queues = []
        for ent in entities:
            frames = self.tags.get(ent, [])
            queues.append([f for f in frames[:1] + frames[:0:-1] if f not in exclude])
        chosen: list[int] = []
        depth = 0
        while len(chosen) < limit and any(depth < len(q) for q in queues):
            for q in queues:
                if depth < len(q) and q[depth] not in chosen and len(chosen) < limit:
                    chosen.append(q[depth])
            depth += 1
        return [self.entries[f] for f in chosen]

    def select(self, chunk: Chunk, cache: KVCache) -> list[MemoryEntry]:
        """Install the entries of the on-screen characters, then of the location (at most
        ``slots``, none still held by the cache; with ``same_place`` none of the generated
        frames made at another location, with a gate none written under a prompt too far from
        the chunk's), in time order (outside frames first)."""
        order = (*chunk.characters, chunk.location)
        self._see(order)
        exclude = set(cache.frame_indices)
        if self.same_place or self.gate is not None:
            candidates = {f for ent in order for f in self.tags.get(ent, []) if f not in exclude and self.entries[f].kind == KIND_FRAME}
            if self.same_place:
                exclude |= {f for f in candidates if self.entries[f].location != chunk.location}
            if self.gate is not None:
                assert self.embed is not None
                exclude |= {f for f in candidates - exclude if prompt_similarity(self.embed, chunk.prompt, self.entries[f].prompt) < self.gate}
        chosen = self.retrieve(order, exclude=exclude)
        chosen.sort(key=lambda e: e.frame)
        install(cache, chosen)
        return chosen

    # ----------------------------------------------------------------- state
    def state_dict(self) -> dict[str, Any]:
        return {
            "kind": self.name,
            "slots": self.slots,
            "per_entity": self.per_entity,
            "capacity": self.capacity,
            "record_every": self.record_every,
            "next_external": self._next_external,
            "entries": [e.state_dict() for e in self.entries.values()],
            "tags": {k: list(v) for k, v in self.tags.items()},
            "seen": dict(self.seen),
            "tick": self._tick,
            "figures": dict(self.figures),
        }

    def load_state_dict(self, state: dict[str, Any]) -> None:
        if not isinstance(state, dict) or state.get("kind") != self.name:
            raise MemoryBankError(f"saved memory is not an {self.name!r} memory")
        self.slots, self.per_entity, self.capacity, self.record_every = (int(state[k]) for k in ("slots", "per_entity", "capacity", "record_every"))
        self._next_external = int(state["next_external"])
        self.entries = {}
        for s in state["entries"]:
            e = MemoryEntry.from_state_dict(s)
            self.entries[e.frame] = e
        self.tags = {k: [int(f) for f in v] for k, v in state["tags"].items()}
        self.seen = {k: int(v) for k, v in state["seen"].items()}
        self._tick = int(state["tick"])
        self.figures = {str(k): v for k, v in (state.get("figures") or {}).items()}  # absent in memories saved before session 14
        if any(f not in self.entries for frames in self.tags.values() for f in frames):
            raise MemoryBankError("saved entity memory is damaged: a tag names a missing entry")

    def import_entries(self, state: dict[str, Any], entities: set[str] | None = None) -> int:
        """Add the entries of another render's memory (:meth:`state_dict`) as outside frames
        (new negative ids, kind "import"), in their order (anchors stay anchors), keeping only
        the tags of ``entities`` (None: all). Returns how many entries were added."""
        if not isinstance(state, dict) or state.get("kind") != self.name:
            raise MemoryBankError(f"saved memory is not an {self.name!r} memory")
        tags = {str(k): {int(f) for f in v} for k, v in state["tags"].items()}
        added = 0
        for s in state["entries"]:
            src = MemoryEntry.from_state_dict(s)
            ents = tuple(e for e, frames in tags.items() if src.frame in frames and (entities is None or e in entities))
            if ents:
                kv = list(zip(src.keys, src.values, strict=True))
                entry = entry_from_kv(kv, frame=self.external_id(), chunk=-1, entities=ents, location=src.location, kind=KIND_IMPORT)
                added += self.add(entry)
        for ent, fig in (state.get("figures") or {}).items():
            if entities is None or ent in entities:
                self.keep_figure(str(ent), fig)
        return added
