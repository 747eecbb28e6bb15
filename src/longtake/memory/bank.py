"""MemFlow's Narrative Adaptive Memory (NAM): a small bank of prototype frames, kept by relevance.

Recording (MemFlow, REFERENCES.md): after every ``record_every``-th chunk is written, its
first latent frame (a "prototype") becomes a bank candidate, its K/V taken from the cache for
every layer. When the bank is full, the stored frames are scored against the *current*
prompt (:func:`~longtake.memory.entry.nam_scores`: text keys . stored visual keys / sqrt(Dh),
averaged) and the top ``capacity - 1`` are kept, plus the new prototype.

Two faults of MemFlow's released code are avoided on purpose:
  - after a prompt switch it scored against an empty text cache (every score tied, the
    survivors were arbitrary). Here scoring takes the prompt K/V explicitly, refuses None,
    and the generator records after the chunk's prompt is set, so the first chunk after a
    switch is scored with the new prompt;
  - it could insert the same prototype twice. Here an entry is identified by its frame index
    and a frame already in the bank is never added again.

The score (``score``): "memflow" is the formula above. "prompt" (what ``MemoryConfig`` picks by
default, session 17) compares the prompt each stored frame was written under with the current
prompt through the model's own text encoder (:func:`~longtake.memory.entry.prompt_scores`): on
the built-in model MemFlow's key product ranks frames of the current place *below* frames of
other places (AUC 0.40), the prompt comparison ranks them first (AUC 1.00; docs/memory.md).
With a ``gate`` (prompt score only), :meth:`NarrativeMemory.select` installs only the frames
whose relevance to the chunk's prompt reaches it: at a cut to another place the bank's frames
of the old place stay out of attention instead of being copied into the new one.

Looking ahead (``add(..., ahead=...)``, session 21): ranked by the current prompt alone, a
3-frame bank drops a character as soon as the prompts stop naming her, and she comes back to
an empty bank (sessions 16-20: NAM measured no better than sink-only on returning characters).
A script render knows its prompts ahead (``MemoryConfig.nam_lookahead``), so the bank keeps the
frames that best *cover* the current prompt and the prompts the script uses next
(:meth:`NarrativeMemory.covering`): the new prototype covers the current prompt, and a frame
of a character who will be back covers the prompt of her return. Ranking each frame by its
best relevance to any of those prompts is not enough: frames written under the current prompt
score 1.0 and fill the bank (measured, session 21). Only the prompt score can look ahead (it
needs a prompt's text, the MemFlow score its cross-attention keys).

Ties (equal scores) keep the newer frame, so the choice does not depend on the order of the
bank. The bank holds at most ``capacity`` entries whatever the render length.
"""

from __future__ import annotations

import logging
from collections.abc import Sequence
from typing import Any, Literal

import torch
from torch import Tensor

from longtake.memory.entry import KIND_FRAME, Embed, MemoryEntry, entry_from_cache, install, nam_scores, prompt_scores, prompt_similarity
from longtake.memory.errors import MemoryBankError
from longtake.model.kv_cache import KVCache, PromptKV
from longtake.plan.timeline import Chunk

log = logging.getLogger(__name__)

#: MemFlow: a bank of up to 3 frames, a prototype every 3rd chunk.
DEFAULT_CAPACITY = 3
DEFAULT_RECORD_EVERY = 3


def is_record_chunk(chunk: Chunk, record_every: int) -> bool:
    """Every ``record_every``-th chunk (the 3rd, 6th, ... with 3) gives a prototype. Chunk 0,
    the sink, is not one: it stays in the cache until a shot cut releases it to memory."""
    return (chunk.index + 1) % record_every == 0


class NarrativeMemory:
    """The NAM bank. ``select`` before a chunk is sampled, ``update`` after it was written.

    Args:
        capacity: frames held at most (MemFlow: 3).
        record_every: a prototype every this many chunks (MemFlow: 3).
        score: "memflow" (text keys . frame keys) or "prompt" (the frames' prompts against
            the current one; needs ``embed``).
        embed: prompt -> its mean token embedding (D,) (the model's text encoder).
        gate: with the prompt score, the relevance a frame needs to be installed (None: all).
    """

    name = "nam"

    def __init__(
        self,
        capacity: int = DEFAULT_CAPACITY,
        record_every: int = DEFAULT_RECORD_EVERY,
        *,
        score: Literal["memflow", "prompt"] = "memflow",
        embed: Embed | None = None,
        gate: float | None = None,
    ) -> None:
        if capacity < 1 or record_every < 1:
            raise MemoryBankError(f"NarrativeMemory needs capacity >= 1 and record_every >= 1, got {capacity}, {record_every}")
        if score not in ("memflow", "prompt"):
            raise MemoryBankError(f"NAM score must be 'memflow' or 'prompt', got {score!r}")
        if score == "prompt" and embed is None:
            raise MemoryBankError("NAM's prompt score needs the text encoder's embed function")
        if gate is not None and score != "prompt":
            raise MemoryBankError("a NAM relevance gate needs the prompt score")
        self.capacity = capacity
        self.record_every = record_every
        self.score = score
        self.embed = embed
        self.gate = gate
        self.entries: list[MemoryEntry] = []

    def __len__(self) -> int:
        return len(self.entries)

    @property
    def frames(self) -> list[int]:
        """Frame ids in the bank, in bank order."""
        return [e.frame for e in self.entries]

    def relevance(self, prompt: PromptKV | None, text: str, entries: list[MemoryEntry]) -> Tensor:
        """Each entry's relevance to the current prompt (its cross-attention K/V ``prompt`` for
        the MemFlow score, its ``text`` for the prompt score): (E,)."""
        if self.score == "memflow":
            return nam_scores(prompt, entries)
        assert self.embed is not None
        return prompt_scores(self.embed, text, entries)

    def covering(self, entry: MemoryEntry, text: str, ahead: Sequence[str]) -> list[int]:
        """Indices (bank order) of the ``capacity - 1`` stored entries that best cover the
        current prompt ``text`` and the prompts ``ahead``, ``entry`` (the new prototype) kept
        anyway: chosen one at a time, each time the entry that raises the sum over those
        prompts of the best relevance among the kept frames the most (ties: the higher
        relevance to any of them, then the newer frame)."""
        if self.score != "prompt":
            raise MemoryBankError("NAM's MemFlow score cannot rank by prompts ahead; use the prompt score")
        assert self.embed is not None
        prompts = list(dict.fromkeys([text, *ahead]))
        sims = torch.stack([prompt_scores(self.embed, p, self.entries) for p in prompts])  # (P, E)
        best = torch.tensor([prompt_similarity(self.embed, p, entry.prompt) for p in prompts])  # (P,) what the prototype covers
        left, chosen = list(range(len(self.entries))), []
        for _ in range(min(self.capacity - 1, len(left))):
            gain = {i: (float((sims[:, i] - best).clamp(min=0).sum()), float(sims[:, i].max()), self.entries[i].frame) for i in left}
            pick = max(left, key=gain.__getitem__)
            chosen.append(pick)
            left.remove(pick)
            best = torch.maximum(best, sims[:, pick])
        return sorted(chosen)

    # ----------------------------------------------------------------- write
    def add(self, entry: MemoryEntry, prompt: PromptKV | None, text: str = "", ahead: Sequence[str] = ()) -> bool:
        """Insert ``entry``; when full, keep the ``capacity - 1`` stored entries most relevant to
        the current prompt (``prompt``: its K/V; ``text``: the prompt itself) plus ``entry``;
        with ``ahead`` (the script's next prompts), those that best cover ``text`` and them
        (:meth:`covering`). False when the frame is already held."""
        if any(e.frame == entry.frame for e in self.entries):
            return False
        if len(self.entries) >= self.capacity:
            if ahead:
                keep = self.covering(entry, text, ahead)
            else:
                scores = self.relevance(prompt, text, self.entries).tolist()
                order = sorted(range(len(self.entries)), key=lambda i: (-scores[i], -self.entries[i].frame))
                keep = sorted(order[: self.capacity - 1])  # bank order of the survivors
            log.debug("NAM: frame %d in, frames %s out", entry.frame, [e.frame for i, e in enumerate(self.entries) if i not in keep])
            self.entries = [self.entries[i] for i in keep]
        self.entries.append(entry)
        return True

    def update(self, chunk: Chunk, cache: KVCache, first_frame: int, ahead: Sequence[str] = ()) -> None:
        """After ``chunk`` was written to ``cache`` (its first latent frame at ``first_frame``):
        record the prototype of every ``record_every``-th chunk, scored with the cache's prompt
        (the chunk's own) and ``ahead`` (:meth:`add`)."""
        if is_record_chunk(chunk, self.record_every):
            entry = entry_from_cache(
                cache, first_frame, chunk=chunk.index, entities=chunk.entities, location=chunk.location, kind=KIND_FRAME, prompt=chunk.prompt
            )
            self.add(entry, cache.prompt, chunk.prompt, ahead)

    # ----------------------------------------------------------------- read
    def select(self, chunk: Chunk, cache: KVCache) -> list[MemoryEntry]:
        """Install the bank's frames that the cache does not already hold (sink or window) as
        the memory segment, oldest first; returns them. With a gate, only the frames whose
        relevance to ``chunk``'s prompt reaches it."""
        held = set(cache.frame_indices)
        chosen = sorted((e for e in self.entries if e.frame not in held), key=lambda e: e.frame)
        if self.gate is not None and chosen:
            scores = self.relevance(None, chunk.prompt, chosen).tolist()
            chosen = [e for e, s in zip(chosen, scores, strict=True) if s >= self.gate]
        install(cache, chosen)
        return chosen

    # ----------------------------------------------------------------- state
    def state_dict(self) -> dict[str, Any]:
        return {"kind": self.name, "capacity": self.capacity, "record_every": self.record_every, "entries": [e.state_dict() for e in self.entries]}

    def load_state_dict(self, state: dict[str, Any]) -> None:
        if not isinstance(state, dict) or state.get("kind") != self.name:
            raise MemoryBankError(f"saved memory is not a {self.name!r} bank (got {state.get('kind') if isinstance(state, dict) else type(state).__name__!r})")
        if (state["capacity"], state["record_every"]) != (self.capacity, self.record_every):
            raise MemoryBankError(
                f"saved NAM bank has capacity {state['capacity']}, record_every {state['record_every']}; "
                f"this one {self.capacity}, {self.record_every}"
            )
        self.entries = [MemoryEntry.from_state_dict(e) for e in state["entries"]]
