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

Choice (docs/memory.md, measured): per layer and per head, with the queries of the pass
itself, rather than once per chunk from the previous chunk's queries. It follows MemFlow's
definition, needs no state between chunks (resume stays exact for free), and its cost is a
mean over the queries and a gather per layer.
"""

from __future__ import annotations

import torch
from torch import Tensor

from longtake.memory.entry import MemoryEntry
from longtake.memory.errors import MemoryBankError


class SparseMemoryActivation:
    """Keeps ``top_k`` memory frames per layer and head (all of them when there are no more).

    Call :meth:`prepare` with the installed entries (in memory-segment order) before the
    chunk's passes; the cache calls the object itself from attention.
    """

    def __init__(self, top_k: int) -> None:
        if top_k < 1:
            raise MemoryBankError(f"sparse memory activation needs top_k >= 1, got {top_k}")
        self.top_k = top_k
        self._pooled: Tensor | None = None  # (layers, M, Nh, Dh) float32
        self.last_keep: dict[int, Tensor] = {}  # layer -> (B, Nh, k) of the last call, for inspection

    def prepare(self, entries: list[MemoryEntry]) -> None:
        """Pool the keys of the installed memory frames (the order of the memory segment)."""
        if not entries:
            self._pooled = None
        else:
            self._pooled = torch.stack([e.pooled_keys() for e in entries], dim=1)  # (layers, M, Nh, Dh)
        self.last_keep = {}

    def __call__(self, layer: int, q: Tensor, frames: int) -> Tensor | None:
        """q (B, Nh, L, Dh) before RoPE, ``frames`` memory frames -> kept slots (B, Nh, k) or None."""
        if frames <= self.top_k:
            return None
        pooled = self._pooled
        if pooled is None or pooled.shape[1] != frames:
            raise MemoryBankError(f"SMA: {frames} memory frames installed but {0 if pooled is None else pooled.shape[1]} prepared; call prepare() after installing")
        keys = pooled[layer].to(q.device)  # (M, Nh, Dh)
        qm = q.float().mean(dim=2)  # (B, Nh, Dh)
        rel = torch.einsum("bhd,mhd->bhm", qm, keys)  # (B, Nh, M)
        keep = rel.topk(self.top_k, dim=-1).indices.sort(dim=-1).values  # (B, Nh, k), memory order
        self.last_keep[layer] = keep
        return keep
