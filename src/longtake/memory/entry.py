"""One memory entry: a latent frame's self-attention K/V for every layer, plus what was on screen.

Entries are taken from the KV cache after a chunk was written (:func:`entry_from_cache`),
from a reference image or a casting frame (:func:`entry_from_kv`), or from a memory file of
an earlier render. They are installed in front of the local window with :func:`install`
(``KVCache.set_memory``), so attention sees ``[sink | memory | local window]``.

Keys are stored before RoPE (like the cache): the DiT rotates them at read time, at the
entry's :attr:`MemoryEntry.position` with absolute positions or at its slot in the view with
compact positions.

Shapes: an entry holds, per layer, K and V of shape (1, Nh, n, Dh) with n tokens per frame.
"""

from __future__ import annotations

import math
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

import torch
from torch import Tensor

from longtake.memory.errors import MemoryBankError
from longtake.model.kv_cache import KVCache, PromptKV

KIND_FRAME = "frame"  # a generated frame (a prototype, or a shot sink released at a cut)
KIND_REF = "ref"  # a character's / location's reference image from the script
KIND_CAST = "cast"  # a frame of the casting pass (no refs)
KIND_IMPORT = "import"  # an entry of another render's memory file
KINDS = (KIND_FRAME, KIND_REF, KIND_CAST, KIND_IMPORT)


@dataclass
class MemoryEntry:
    """One latent frame's K/V for every layer and its metadata.

    Attributes:
        frame: absolute latent frame index of a generated frame (>= 0), unique in a render;
            frames from outside the render (refs, casting, memory files) get negative ids.
        chunk: index of the chunk the frame came from (-1 outside the render).
        entities: ids on screen (``Chunk.entities``: the location first, then characters).
        location: the location id ("" when unknown).
        kind: one of :data:`KINDS`.
        keys, values: per layer (1, Nh, n, Dh), keys not RoPE-rotated.
        prompt: the prompt the frame was written under ("" when unknown, e.g. in a state saved
            before prompts were kept); the prompt relevance of NAM and of the entity memory's
            gate compares it with the current one.
    """

    frame: int
    chunk: int
    entities: tuple[str, ...]
    location: str
    kind: str
    keys: list[Tensor]
    values: list[Tensor]
    prompt: str = ""
    _pooled: Tensor | None = field(default=None, repr=False, compare=False)

    def __post_init__(self) -> None:
        if self.kind not in KINDS:
            raise MemoryBankError(f"memory entry kind must be one of {KINDS}, got {self.kind!r}")
        if len(self.keys) != len(self.values) or not self.keys:
            raise MemoryBankError(f"memory entry of frame {self.frame}: {len(self.keys)} key and {len(self.values)} value layers")
        self.entities = tuple(self.entities)

    @property
    def position(self) -> int:
        """Absolute RoPE frame position when installed: the frame's own index; 0 (the start of
        the video, like the sink) for frames from outside the render."""
        return max(self.frame, 0)

    @property
    def tokens(self) -> int:
        return self.keys[0].shape[2]

    def pooled_keys(self) -> Tensor:
        """Mean over the frame's tokens of its keys, every layer: (layers, Nh, Dh) float32.

        Cached: NAM scores and SMA relevance are means of dot products, which equal dot
        products of means (REFERENCES.md, MemFlow)."""
        if self._pooled is None:
            self._pooled = torch.stack([k[0].float().mean(dim=1) for k in self.keys])  # (layers, Nh, Dh)
        return self._pooled

    def state_dict(self) -> dict[str, Any]:
        return {
            "frame": self.frame, "chunk": self.chunk, "entities": list(self.entities), "location": self.location,
            "kind": self.kind, "keys": list(self.keys), "values": list(self.values), "prompt": self.prompt,
        }

    @classmethod
    def from_state_dict(cls, state: dict[str, Any]) -> "MemoryEntry":
        try:
            return cls(
                int(state["frame"]), int(state["chunk"]), tuple(state["entities"]), str(state["location"]), str(state["kind"]),
                list(state["keys"]), list(state["values"]), str(state.get("prompt", "")),
            )
        except (KeyError, TypeError) as err:
            raise MemoryBankError(f"damaged memory entry in a saved state ({err})") from None


def entry_from_kv(
    kv: list[tuple[Tensor, Tensor]], *, frame: int, chunk: int, entities: tuple[str, ...], location: str, kind: str, prompt: str = ""
) -> MemoryEntry:
    """An entry from one frame's per-layer (K, V), each (1, Nh, n, Dh); copies the tensors so
    that the entry does not keep a cache buffer alive."""
    return MemoryEntry(frame, chunk, entities, location, kind, [k.clone() for k, _ in kv], [v.clone() for _, v in kv], prompt)


def entry_from_cache(
    cache: KVCache, frame: int, *, chunk: int, entities: tuple[str, ...], location: str, kind: str = KIND_FRAME, prompt: str = ""
) -> MemoryEntry:
    """The entry of one frame held by ``cache`` (absolute index ``frame``), every layer."""
    kv = [cache.frame_kv(layer, frame) for layer in range(cache.num_layers)]
    return entry_from_kv(kv, frame=frame, chunk=chunk, entities=entities, location=location, kind=kind, prompt=prompt)


def install(cache: KVCache, entries: list[MemoryEntry]) -> None:
    """Make ``entries`` the cache's memory segment, in the given order (none: clear it)."""
    if not entries:
        cache.clear_memory()
        return
    positions = [e.position for e in entries]
    for layer in range(cache.num_layers):
        k = torch.cat([e.keys[layer] for e in entries], dim=2)  # (1, Nh, M*n, Dh)
        v = torch.cat([e.values[layer] for e in entries], dim=2)  # (1, Nh, M*n, Dh)
        cache.set_memory(layer, k, v, positions=positions)


def nam_scores(prompt: PromptKV | None, entries: list[MemoryEntry]) -> Tensor:
    """MemFlow's narrative relevance of each entry to a prompt: (E,) float32.

    score = mean over layers, heads, text tokens t and frame tokens i of
    ``k_text[t] . k_frame[i] / sqrt(Dh)`` (REFERENCES.md; no softmax, as in MemFlow's released
    code). A mean of dot products is the dot product of the means, so it costs one pooled
    vector per side. Raises when there is no prompt: MemFlow's release scored against an
    empty text cache right after a prompt switch, which ties every score.
    """
    if prompt is None or len(prompt) == 0:
        raise MemoryBankError("NAM scoring needs the current prompt's cross-attention keys; none is set (score after set_prompt)")
    if not entries:
        return torch.zeros(0)
    text = torch.stack([k.float().mean(dim=(0, 2)) for k, _ in prompt.layers])  # (layers, Nh, Dh)
    pooled = torch.stack([e.pooled_keys().to(text.device) for e in entries])  # (E, layers, Nh, Dh)
    if pooled.shape[1:] != text.shape:
        raise MemoryBankError(f"memory entries have (layers, heads, head dim) {tuple(pooled.shape[1:])}, the prompt {tuple(text.shape)}")
    return (pooled * text[None]).sum(-1).mean(dim=(1, 2)) / math.sqrt(text.shape[-1])  # (E,)


#: A prompt embedding: prompt -> the mean of its token embeddings (D,), padding excluded.
Embed = Callable[[str], Tensor]


def prompt_similarity(embed: Embed, current: str, other: str) -> float:
    """Cosine similarity of the two prompts' mean token embeddings (``embed``: the model's own
    text encoder): 1 for prompts that encode alike. -1 when ``other`` is empty (an entry whose
    prompt is unknown ranks last). On the built-in encoder and storyworld-bench stories 10-19
    and 30-34, prompts of the chunk's setting scored 0.79-1.00 and of other settings at most
    0.81: the ranges barely overlap, and the default gate (0.83) errs towards leaving a frame
    out (docs/memory.md)."""
    if not other:
        return -1.0
    return float(torch.nn.functional.cosine_similarity(embed(current).float(), embed(other).float(), dim=0))


def prompt_scores(embed: Embed, current: str, entries: list[MemoryEntry]) -> Tensor:
    """NAM's prompt relevance of each entry to the current prompt: (E,) float32
    (:func:`prompt_similarity` of the prompt each frame was written under)."""
    if not current:
        raise MemoryBankError("NAM prompt scoring needs the current prompt; it is empty")
    return torch.tensor([prompt_similarity(embed, current, e.prompt) for e in entries], dtype=torch.float32)
