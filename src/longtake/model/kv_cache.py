"""Bounded KV cache for streaming generation: frame sink + rolling local window (LongLive).

Self-Forcing loop, per chunk (REFERENCES.md):
  1. denoise the chunk in a few steps; every step *reads* the cache (``view``), never writes;
  2. one pass of the clean chunk at sigma=0 writes its self-attention K/V (``append`` per
     layer, then ``commit``), which advances the position and evicts old frames.

What one layer's attention sees, in order: ``[sink | memory | local window]``
  - sink: the first ``sink_frames`` frames of the video, kept forever;
  - memory: an optional segment set from outside (``set_memory``; MemFlow's memory bank);
  - local: the most recent ``window_frames`` frames before the next chunk.
Keys are stored *before* RoPE, in SDPA layout (B, Nh, L, Dh); the DiT rotates them when it
reads them, at the positions :meth:`KVCache.view_positions` gives (absolute) or at their
order in the view (compact; ``DiTConfig.rope_positions``). Stored raw, a frame's key can be
moved to any position (memory bank, compact positions) without undoing a rotation. The number of tokens is bounded by ``(sink_frames + window_frames) *
tokens_per_frame`` (plus the memory segment) whatever the video length.

Re-cache after a prompt switch (LongLive): ``set_prompt`` the new prompt,
``restart_sink(sink_start)``, write the sink frames again, ``seek()`` to the first recent
frame and write the recent frames in one pass (block-causal within it, sink as prefix).

Shot sinks: ``restart_sink()`` forgets the sink and the window (the memory segment and the
prompt stay) so that the next frames written become the sink of a new shot; the sink then
holds frames ``sink_start .. sink_start + sink_frames - 1`` instead of ``0 ..``.

Sparse memory activation (MemFlow's SMA): an optional ``memory_selector`` (see
:class:`MemorySelector`) picks, per layer and head, which memory frames a query chunk
attends to; the DiT asks :meth:`KVCache.select_prefix` with the layer's queries. Without a
selector (or without memory) the prefix is :meth:`view` unchanged.

The text cross-attention K/V of the current prompt (:class:`PromptKV`) rides along
(``set_prompt`` / ``clear_prompt``): it is computed once per prompt, not once per step.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from typing import Any, Protocol

from einops import rearrange

import torch
from torch import Tensor

from longtake.model.config import DiTConfig
from longtake.model.errors import ModelError

KV = tuple[Tensor, Tensor]


@dataclass
class PromptKV:
    """Cross-attention keys and values of one prompt, one (K, V) per layer, each (B, Nh, T, Dh)."""

    layers: list[KV]

    def __len__(self) -> int:
        return len(self.layers)

    def to(self, device: torch.device | str | None = None, dtype: torch.dtype | None = None) -> "PromptKV":
        return PromptKV([(k.to(device=device, dtype=dtype), v.to(device=device, dtype=dtype)) for k, v in self.layers])

    def state_dict(self) -> dict[str, Any]:
        return {"keys": [k for k, _ in self.layers], "values": [v for _, v in self.layers]}

    @classmethod
    def from_state_dict(cls, state: dict[str, Any]) -> "PromptKV":
        return cls(list(zip(state["keys"], state["values"], strict=True)))


class MemorySelector(Protocol):
    """Chooses the memory frames one layer's queries attend to (sparse memory activation)."""

    def __call__(self, layer: int, q: Tensor, frames: int) -> Tensor | None:
        """q: the layer's queries before RoPE (B, Nh, L, Dh); ``frames``: memory frames in the
        segment. Returns the memory frame slots to keep per head, long (B, Nh, k) in
        ascending order with k < frames, or None to keep every frame."""
        ...


def _extend(old: KV | None, k: Tensor, v: Tensor) -> KV:
    if old is None:
        return k, v
    return torch.cat([old[0], k], dim=2), torch.cat([old[1], v], dim=2)  # (B, Nh, Lold+L, Dh)


class KVCache:
    """Self-attention K/V of past frames for every layer, bounded by a sink and a window.

    Args:
        num_layers: transformer blocks.
        sink_frames: first frames of the video kept forever.
        window_frames: recent frames kept after the sink; None keeps every frame (unbounded,
            plain Self-Forcing). From a config: ``local_window_frames - frames_per_chunk``,
            so the chunk being denoised plus the window make LongLive's local window.
    """

    def __init__(self, num_layers: int, *, sink_frames: int, window_frames: int | None):
        if num_layers <= 0 or sink_frames < 0 or (window_frames is not None and window_frames < 0):
            raise ModelError(f"KVCache needs num_layers > 0, sink_frames >= 0, window_frames >= 0 or None; got {num_layers}, {sink_frames}, {window_frames}")
        self.num_layers = num_layers
        self.sink_frames = sink_frames
        self.window_frames = window_frames
        self.reset()
        self.prompt: PromptKV | None = None
        self.memory_selector: MemorySelector | None = None  # not saved: the owner sets it again

    @classmethod
    def from_config(cls, config: DiTConfig) -> "KVCache":
        window = None if config.local_window_frames is None else config.local_window_frames - config.frames_per_chunk
        return cls(config.num_layers, sink_frames=config.sink_frames, window_frames=window)

    # ----------------------------------------------------------------- state
    def reset(self) -> None:
        """Forget every frame and the memory segment (the prompt stays; see ``clear_prompt``)."""
        self._sink: list[KV | None] = [None] * self.num_layers
        self._local: list[KV | None] = [None] * self.num_layers
        self._memory: list[KV | None] = [None] * self.num_layers
        self._appended: list[int | None] = [None] * self.num_layers  # frames appended since last commit
        self.memory_positions: list[int] = []  # absolute position of each memory-segment frame
        self.next_frame = 0  # absolute latent-frame index of the next chunk (RoPE offset)
        self.sink_start = 0  # absolute index of the sink's first frame (a shot sink starts later)
        self.sink_count = 0  # frames in the sink
        self.local_count = 0  # frames in the local window
        self.tokens_per_frame: int | None = None
        # per layer: (the tensors it was made from, positions key, rotated (K, V)); see rotated_view
        self._rotated: list[tuple[tuple[Tensor, ...], Any, KV] | None] = [None] * self.num_layers

    def seek(self, frame: int) -> None:
        """Set the absolute index of the next frame to write (re-caching after a prompt switch).

        Only allowed while the local window is empty, so the window stays one contiguous run
        of frames ending at ``next_frame``.
        """
        if self.local_count:
            raise ModelError(f"KVCache.seek({frame}): the local window holds {self.local_count} frames; reset() first")
        if frame < self.sink_start + self.sink_count:
            raise ModelError(f"KVCache.seek({frame}): frames {self.sink_start}..{self.sink_start + self.sink_count - 1} are already in the sink")
        self.next_frame = frame

    def restart_sink(self, frame: int | None = None) -> None:
        """Forget the sink and window frames; the next frames written, from ``frame`` (default
        ``next_frame``) on, fill a new sink. The memory segment and the prompt stay.

        A shot cut starts a shot sink this way; the KV re-cache after a prompt switch uses it
        with the current ``sink_start`` to write the same frames again.
        """
        if any(a is not None for a in self._appended):
            raise ModelError("KVCache.restart_sink: append() without commit()")
        frame = self.next_frame if frame is None else int(frame)
        if frame < 0:
            raise ModelError(f"KVCache.restart_sink({frame}): frame must be >= 0")
        self._sink = [None] * self.num_layers
        self._local = [None] * self.num_layers
        self.sink_start = frame
        self.next_frame = frame
        self.sink_count = 0
        self.local_count = 0

    # ----------------------------------------------------------------- write
    def append(self, layer: int, k: Tensor, v: Tensor, frames: int) -> None:
        """Add the K/V of ``frames`` new frames (starting at ``next_frame``) to one layer.

        k, v: (B, Nh, frames * tokens_per_frame, Dh), keys not yet RoPE-rotated. Call once
        per layer, then :meth:`commit`.
        """
        if not 0 <= layer < self.num_layers:
            raise ModelError(f"KVCache.append: layer {layer} out of range 0..{self.num_layers - 1}")
        if self._appended[layer] is not None:
            raise ModelError(f"KVCache.append: layer {layer} appended twice before commit()")
        if frames <= 0 or k.shape[2] % frames or k.shape != v.shape:
            raise ModelError(f"KVCache.append: k {tuple(k.shape)} / v {tuple(v.shape)} do not hold {frames} whole frames")
        tpf = k.shape[2] // frames
        if self.tokens_per_frame is None:
            self.tokens_per_frame = tpf
        elif tpf != self.tokens_per_frame:
            raise ModelError(f"KVCache.append: {tpf} tokens per frame, the cache holds frames of {self.tokens_per_frame}")
        # Frames with absolute index < sink_start + sink_frames belong to the sink, the rest to the window.
        n_sink = self._sink_part(frames)
        cut = n_sink * tpf
        if n_sink:
            self._sink[layer] = _extend(self._sink[layer], k[:, :, :cut], v[:, :, :cut])
        if frames > n_sink:
            self._local[layer] = _extend(self._local[layer], k[:, :, cut:], v[:, :, cut:])
        self._appended[layer] = frames

    def commit(self, frames: int) -> None:
        """Every layer has appended the same ``frames`` frames: advance the position, evict."""
        if any(a != frames for a in self._appended):
            raise ModelError(f"KVCache.commit({frames}): layers appended {self._appended}; every layer must append {frames} frames")
        n_sink = self._sink_part(frames)
        self.sink_count += n_sink
        self.local_count += frames - n_sink
        self.next_frame += frames
        self._appended = [None] * self.num_layers
        self.evict()

    def _sink_part(self, frames: int) -> int:
        """How many of ``frames`` new frames written at ``next_frame`` go to the sink."""
        return max(0, min(frames, self.sink_start + self.sink_frames - self.next_frame))

    def evict(self) -> None:
        """Drop local-window frames older than the newest ``window_frames``."""
        if self.window_frames is None or self.local_count <= self.window_frames:
            return
        keep = self.window_frames * self.tokens_per_frame
        for layer, kv in enumerate(self._local):
            if kv is not None:
                # clone() so the evicted frames' storage is freed now, not at the next append.
                self._local[layer] = (kv[0][:, :, kv[0].shape[2] - keep :].clone(), kv[1][:, :, kv[1].shape[2] - keep :].clone())
        self.local_count = self.window_frames

    def set_memory(self, layer: int, k: Tensor, v: Tensor, positions: list[int] | None = None) -> None:
        """Set the memory segment of one layer (placed between sink and window); (B, Nh, Lm, Dh),
        keys not rotated. ``positions``: the absolute frame index of each memory frame (used
        with absolute RoPE positions; the same for every layer); None keeps the last ones set,
        or numbers the frames right after the sink."""
        n = self.tokens_per_frame
        if n is None and positions:  # nothing cached yet: the positions say how many frames
            n = max(1, k.shape[2] // len(positions))
        if n is not None and k.shape[2] % n:
            raise ModelError(f"KVCache.set_memory: {k.shape[2]} tokens are not whole frames of {n}")
        self._memory[layer] = (k, v)
        frames = k.shape[2] // (n or k.shape[2] or 1)
        if positions is not None:
            if len(positions) != frames:
                raise ModelError(f"KVCache.set_memory: {len(positions)} positions for {frames} memory frames")
            self.memory_positions = [int(p) for p in positions]
        elif len(self.memory_positions) != frames:
            self.memory_positions = list(range(self.sink_start + self.sink_count, self.sink_start + self.sink_count + frames))

    def clear_memory(self) -> None:
        self._memory = [None] * self.num_layers
        self.memory_positions = []

    # ----------------------------------------------------------------- prompt
    def set_prompt(self, prompt: PromptKV) -> None:
        """Cache the cross-attention K/V of the current prompt (from ``CausalWanDiT.encode_prompt``)."""
        if len(prompt) != self.num_layers:
            raise ModelError(f"KVCache.set_prompt: prompt has {len(prompt)} layers, cache {self.num_layers}")
        self.prompt = prompt

    def clear_prompt(self) -> None:
        self.prompt = None

    # ----------------------------------------------------------------- read
    def view(self, layer: int) -> KV | None:
        """K and V that layer ``layer`` attends to besides the new chunk: [sink | memory | local].

        Each (B, Nh, L, Dh); None while nothing is cached.
        """
        parts = [p for p in (self._sink[layer], self._memory[layer], self._local[layer]) if p is not None]
        if not parts:
            return None
        if len(parts) == 1:
            return parts[0]
        return torch.cat([p[0] for p in parts], dim=2), torch.cat([p[1] for p in parts], dim=2)  # (B, Nh, L, Dh)

    def rotated_view(self, layer: int, key: Any, rotate: Callable[[Tensor], Tensor]) -> KV | None:
        """:meth:`view` with the keys passed through ``rotate`` (RoPE at the view's positions,
        which ``key`` names), remembered until the cache changes.

        A chunk's denoising passes and its cache-writing pass all read the same view, so the
        concatenation and rotation are done once per chunk and layer instead of once per pass.
        The memo holds the very tensors it was made from and is used only while the cache still
        holds those same objects (every write replaces them: ``append`` concatenates, ``evict``
        clones, ``set_memory`` and ``load_state_dict`` assign) and ``key`` is equal.
        """
        parts = [p for p in (self._sink[layer], self._memory[layer], self._local[layer]) if p is not None]
        if not parts:
            return None
        src = tuple(t for p in parts for t in p)
        memo = self._rotated[layer]
        if memo is not None and memo[1] == key and len(memo[0]) == len(src) and all(a is b for a, b in zip(memo[0], src)):
            return memo[2]
        k, v = self.view(layer)  # type: ignore[misc]
        out = (rotate(k), v)
        self._rotated[layer] = (src, key, out)
        return out

    def select_prefix(self, layer: int, q: Tensor, prefix: KV) -> KV:
        """``prefix`` (this layer's :meth:`view`, keys already rotated, (B, Nh, Lp, Dh)) with
        only the memory frames that ``memory_selector`` keeps for the queries ``q`` (B, Nh, L,
        Dh, before RoPE), per head: (B, Nh, Lp', Dh). Positions were applied before the
        selection, so every kept frame stays at its place in the layout."""
        frames = len(self.memory_positions)
        if self.memory_selector is None or frames == 0 or self._memory[layer] is None:
            return prefix
        keep = self.memory_selector(layer, q, frames)
        if keep is None:
            return prefix
        n = self._memory[layer][0].shape[2] // frames
        start = self.sink_count * n
        stop = start + frames * n

        def pick(x: Tensor) -> Tensor:
            mem = rearrange(x[:, :, start:stop], "b h (m n) d -> b h m n d", m=frames)  # (B, Nh, M, n, Dh)
            idx = keep.to(x.device)[:, :, :, None, None].expand(-1, -1, -1, n, x.shape[-1])  # (B, Nh, k, n, Dh)
            mem = rearrange(torch.gather(mem, 2, idx), "b h k n d -> b h (k n) d")  # (B, Nh, k*n, Dh)
            return torch.cat([x[:, :, :start], mem, x[:, :, stop:]], dim=2)  # (B, Nh, Lp', Dh)

        return pick(prefix[0]), pick(prefix[1])

    def frame_kv(self, layer: int, frame: int) -> KV:
        """K and V of one held frame (absolute index) of one layer, each (B, Nh, tokens_per_frame, Dh).

        For the memory bank (MemFlow: a chunk's first frame becomes a prototype candidate).
        """
        indices = self.frame_indices
        if frame not in indices:
            raise ModelError(f"KVCache.frame_kv: frame {frame} is not held; held frames: {indices}")
        pos = indices.index(frame)
        if pos < self.sink_count:
            part, start = self._sink[layer], pos
        else:
            part, start = self._local[layer], pos - self.sink_count
        n = self.tokens_per_frame
        return part[0][:, :, start * n : (start + 1) * n], part[1][:, :, start * n : (start + 1) * n]

    @property
    def num_tokens(self) -> int:
        """Tokens one layer attends to from the cache (sink + memory + local)."""
        return sum(p[0].shape[2] for p in (self._sink[0], self._memory[0], self._local[0]) if p is not None)

    @property
    def view_frames(self) -> int:
        """Frames one layer attends to from the cache: sink + memory + local."""
        return self.sink_count + len(self.memory_positions) + self.local_count

    def view_positions(self) -> list[int]:
        """Absolute frame position of every frame of :meth:`view`, in view order [sink | memory | local]."""
        local = list(range(self.next_frame - self.local_count, self.next_frame))
        return self._sink_indices() + list(self.memory_positions) + local

    @property
    def num_frames(self) -> int:
        """Frames held (sink + local; the memory segment is not counted)."""
        return self.sink_count + self.local_count

    @property
    def frame_indices(self) -> list[int]:
        """Absolute frame index of every held frame, in view order (memory segment excluded)."""
        return self._sink_indices() + list(range(self.next_frame - self.local_count, self.next_frame))

    def _sink_indices(self) -> list[int]:
        return list(range(self.sink_start, self.sink_start + self.sink_count))

    def to(self, device: torch.device | str | None = None, dtype: torch.dtype | None = None) -> "KVCache":
        """Move every tensor in place; returns self."""
        def mv(kv: KV | None) -> KV | None:
            return None if kv is None else (kv[0].to(device=device, dtype=dtype), kv[1].to(device=device, dtype=dtype))

        self._sink = [mv(kv) for kv in self._sink]
        self._local = [mv(kv) for kv in self._local]
        self._memory = [mv(kv) for kv in self._memory]
        self._rotated = [None] * self.num_layers
        if self.prompt is not None:
            self.prompt = self.prompt.to(device, dtype)
        return self

    # ----------------------------------------------------------------- save / restore
    def state_dict(self) -> dict[str, Any]:
        """Everything needed to resume: tensors (None where empty) and the bookkeeping ints."""
        if any(a is not None for a in self._appended):
            raise ModelError("KVCache.state_dict: append() without commit(); save between chunks")
        return {
            "num_layers": self.num_layers,
            "sink_frames": self.sink_frames,
            "window_frames": self.window_frames,
            "next_frame": self.next_frame,
            "sink_start": self.sink_start,
            "sink_count": self.sink_count,
            "local_count": self.local_count,
            "tokens_per_frame": self.tokens_per_frame,
            "sink": list(self._sink),
            "local": list(self._local),
            "memory": list(self._memory),
            "memory_positions": list(self.memory_positions),
            "prompt": None if self.prompt is None else self.prompt.state_dict(),
        }

    def load_state_dict(self, state: dict[str, Any]) -> None:
        shape = (state["num_layers"], state["sink_frames"], state["window_frames"])
        if shape != (self.num_layers, self.sink_frames, self.window_frames):
            raise ModelError(
                f"KVCache.load_state_dict: saved cache has (layers, sink, window) = {shape}, "
                f"this one {(self.num_layers, self.sink_frames, self.window_frames)}"
            )
        self.reset()
        self.next_frame = state["next_frame"]
        self.sink_start = int(state.get("sink_start", 0))
        self.sink_count = state["sink_count"]
        self.local_count = state["local_count"]
        self.tokens_per_frame = state["tokens_per_frame"]
        self._sink = [None if kv is None else tuple(kv) for kv in state["sink"]]
        self._local = [None if kv is None else tuple(kv) for kv in state["local"]]
        self._memory = [None if kv is None else tuple(kv) for kv in state["memory"]]
        self.memory_positions = [int(p) for p in state.get("memory_positions", [])]
        self.prompt = None if state["prompt"] is None else PromptKV.from_state_dict(state["prompt"])
