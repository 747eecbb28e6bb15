"""Sparse memory activation (SMA, MemFlow): each head attends only to its top-k memory frames.

MemFlow mean-pools the current chunk's queries and each memory frame's keys and keeps, per
head, the k frames with the largest dot product; its release ships it disabled. Here it is a
:class:`~longtake.model.kv_cache.MemorySelector` set on the KV cache
(``cache.memory_selector``). The DiT stays generic: in every one-chunk pass (each denoising
step and the cache write) each layer hands its queries (before RoPE) to
``KVCache.select_prefix``, which asks the selector for the frames to keep and gathers those
frames' tokens out of the already-rotated prefix, per head. Rotation happens before the
gather, so a kept frame keeps its position, and a layer with no memory (or a selector that
keeps everything) computes exactly what it computes without SMA.

Relevance uses keys and queries before RoPE (content, not position): ``mean_i q_i . mean_j
k_j`` per head, the pooled keys of each frame computed once per chunk (:meth:`prepare`).

Two granularities (``per``; measured in docs/memory.md):
  - "head" (MemFlow's definition): per layer and head, with the queries of the pass itself;
    a gather of the kept frames' tokens per layer and pass. No state.
  - "chunk" (the generator's default, cheaper on the CPU): once per chunk, before sampling (:meth:`choose`): the memory frames most relevant
    to the previous chunk's queries (pooled, recorded by the same hook during its cache-write
    pass, averaged over layers and heads) are installed, the others not at all. No gather, so
    it saves what attending fewer frames saves; the recorded queries are generator state.
"""

from __future__ import annotations

from typing import Any

import torch
from torch import Tensor

from longtake.memory.entry import MemoryEntry
from longtake.memory.errors import MemoryBankError


class SparseMemoryActivation:
    """Keeps ``top_k`` memory frames, per layer and head (``per="head"``) or per chunk.

    Call :meth:`prepare` with the installed entries (in memory-segment order) before the
    chunk's passes; the cache calls the object itself from attention. With ``per="chunk"``
    call :meth:`choose` on the candidates first and install what it returns.
    """

    def __init__(self, top_k: int, per: str = "head") -> None:
        if top_k < 1:
            raise MemoryBankError(f"sparse memory activation needs top_k >= 1, got {top_k}")
        if per not in ("head", "chunk"):
            raise MemoryBankError(f"sparse memory activation works per 'head' or per 'chunk', got {per!r}")
        self.top_k = top_k
        self.per = per
        self._pooled: Tensor | None = None  # (layers, M, Nh, Dh) float32
        self.queries: dict[int, Tensor] = {}  # per="chunk": layer -> pooled queries (Nh, Dh) of the last pass
        self.last_keep: dict[int, Tensor] = {}  # layer -> (B, Nh, k) of the last call, for inspection

    def prepare(self, entries: list[MemoryEntry]) -> None:
        """Pool the keys of the installed memory frames (the order of the memory segment)."""
        if not entries or self.per == "chunk":
            self._pooled = None
        else:
            self._pooled = torch.stack([e.pooled_keys() for e in entries], dim=1)  # (layers, M, Nh, Dh)
        self.last_keep = {}

    def __call__(self, layer: int, q: Tensor, frames: int) -> Tensor | None:
        """q (B, Nh, L, Dh) before RoPE, ``frames`` memory frames -> kept slots (B, Nh, k) or None."""
        qm = q.float().mean(dim=2)  # (B, Nh, Dh)
        if self.per == "chunk":
            self.queries[layer] = qm[0].detach().clone()  # the last pass of a chunk is its cache write
            return None
        if frames <= self.top_k:
            return None
        pooled = self._pooled
        if pooled is None or pooled.shape[1] != frames:
            raise MemoryBankError(f"SMA: {frames} memory frames installed but {0 if pooled is None else pooled.shape[1]} prepared; call prepare() after installing")
        rel = torch.einsum("bhd,mhd->bhm", qm, pooled[layer].to(q.device))  # (B, Nh, M)
        keep = rel.topk(self.top_k, dim=-1).indices.sort(dim=-1).values  # (B, Nh, k), memory order
        self.last_keep[layer] = keep
        return keep

    def choose(self, entries: list[MemoryEntry]) -> list[MemoryEntry]:
        """per="chunk": the ``top_k`` of ``entries`` most relevant to the recorded queries of the
        previous chunk (mean over layers and heads of pooled q . pooled k), in their order; the
        newest ``top_k`` while no queries were recorded yet. per="head": ``entries`` unchanged."""
        if self.per == "head" or len(entries) <= self.top_k:
            return entries
        if not self.queries:
            return sorted(entries, key=lambda e: e.frame)[-self.top_k :]
        layers = sorted(self.queries)
        q = torch.stack([self.queries[i] for i in layers])  # (l, Nh, Dh)
        pooled = torch.stack([e.pooled_keys()[layers].to(q.device) for e in entries])  # (E, l, Nh, Dh)
        rel = (pooled * q[None]).sum(-1).mean(dim=(1, 2))  # (E,)
        keep = sorted(rel.topk(self.top_k).indices.tolist())
        return [entries[i] for i in keep]

    def state_dict(self) -> dict[str, Any]:
        return {"per": self.per, "top_k": self.top_k, "layers": sorted(self.queries), "queries": [self.queries[i] for i in sorted(self.queries)]}

    def load_state_dict(self, state: dict[str, Any]) -> None:
        if (state["per"], state["top_k"]) != (self.per, self.top_k):
            raise MemoryBankError(f"saved SMA state is per {state['per']!r} top {state['top_k']}; this one per {self.per!r} top {self.top_k}")
        self.queries = {int(i): q for i, q in zip(state["layers"], state["queries"], strict=True)}
