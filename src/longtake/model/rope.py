"""3D rotary position embedding (RoPE) of Wan2.1, with a frame index that can start anywhere.

The head dimension Dh is split over (frame, height, width): height and width get
``2 * (Dh // 6)`` channels each, the frame axis the rest (Wan2.1; 44/42/42 for Dh=128).
Channel pairs (2i, 2i+1) are rotated by ``pos * theta ** (-2i / d_axis)`` (RoFormer).

Streaming: a chunk that starts at frame position ``frame_offset`` gets positions
``frame_offset, frame_offset + 1, ...``. The KV cache stores keys *before* rotation and the
DiT rotates them when it reads them, with positions the config chooses
(``DiTConfig.rope_positions``): the absolute frame index (Wan / Self-Forcing), or "compact"
positions numbered by order in the attended window, so that a chunk at minute 10 sees
exactly the relative distances it saw in a short training clip (see config.py).
Angles are computed in float64 (as Wan and diffusers do) and only then cast to float32;
positions beyond ``rope_max_seq_len`` are computed exactly instead of being read from a table.
"""

from __future__ import annotations

import torch
from einops import rearrange
from torch import Tensor


def rope_axis_dims(head_dim: int) -> tuple[int, int, int]:
    """Channels of Dh given to (frame, height, width)."""
    hw = 2 * (head_dim // 6)
    return head_dim - 2 * hw, hw, hw


def _angles(positions: Tensor, dim: int, theta: float) -> Tensor:
    """(N,) float64 positions -> (N, dim/2) float64 rotation angles."""
    inv_freq = 1.0 / (theta ** (torch.arange(0, dim, 2, dtype=torch.float64) / dim))  # (dim/2,)
    return torch.outer(positions, inv_freq)  # (N, dim/2)


def rope_cos_sin(
    head_dim: int,
    frames: int,
    height: int,
    width: int,
    *,
    frame_offset: int = 0,
    theta: float = 10000.0,
    device: torch.device | str | None = None,
) -> tuple[Tensor, Tensor]:
    """cos and sin of the rotation angles for a (frames, height, width) token grid whose
    frame positions are ``frame_offset, frame_offset + 1, ...``.

    ``height`` and ``width`` are in tokens (after patching). Returns two float32 tensors of
    shape (L, Dh/2) with L = frames*height*width in (f, h, w) order, the order of the
    patch embedding's flattened tokens.
    """
    positions = torch.arange(frame_offset, frame_offset + frames, dtype=torch.float64)
    return rope_cos_sin_at(head_dim, positions, height, width, theta=theta, device=device)


def rope_cos_sin_at(
    head_dim: int,
    frame_positions: Tensor | list[int],
    height: int,
    width: int,
    *,
    theta: float = 10000.0,
    device: torch.device | str | None = None,
) -> tuple[Tensor, Tensor]:
    """Like :func:`rope_cos_sin` for any frame positions (F,), e.g. the frames a KV cache
    holds ``[sink | memory | window]``, which need not be contiguous. Returns 2 x (F*H*W, Dh/2)."""
    dt, dh, dw = rope_axis_dims(head_dim)
    # float64 is not available on MPS; the tables are tiny, so build them on the CPU.
    f_pos = torch.as_tensor(frame_positions, dtype=torch.float64).flatten()
    frames = f_pos.shape[0]
    ang_f = _angles(f_pos, dt, theta)  # (F, dt/2)
    ang_h = _angles(torch.arange(height, dtype=torch.float64), dh, theta)  # (H, dh/2)
    ang_w = _angles(torch.arange(width, dtype=torch.float64), dw, theta)  # (W, dw/2)
    grid = torch.cat(
        [
            ang_f[:, None, None, :].expand(frames, height, width, -1),
            ang_h[None, :, None, :].expand(frames, height, width, -1),
            ang_w[None, None, :, :].expand(frames, height, width, -1),
        ],
        dim=-1,
    )  # (F, H, W, Dh/2)
    grid = rearrange(grid, "f h w d -> (f h w) d")  # (L, Dh/2)
    return grid.cos().float().to(device), grid.sin().float().to(device)


def apply_rope(x: Tensor, cos: Tensor, sin: Tensor) -> Tensor:
    """Rotate channel pairs of ``x``: (B, Nh, L, Dh) with cos/sin (L, Dh/2) -> (B, Nh, L, Dh).

    Arithmetic in float32 (cos/sin dtype); the result has x's dtype.
    """
    pairs = rearrange(x, "b n l (d two) -> b n l d two", two=2)  # (B, Nh, L, Dh/2, 2)
    x1, x2 = pairs[..., 0], pairs[..., 1]  # (B, Nh, L, Dh/2) each
    out = torch.stack([x1 * cos - x2 * sin, x1 * sin + x2 * cos], dim=-1)  # (B, Nh, L, Dh/2, 2)
    return rearrange(out, "b n l d two -> b n l (d two)").to(x.dtype)  # (B, Nh, L, Dh)


class RopeTable:
    """A tiny memo of :func:`rope_cos_sin` results keyed by grid, offset and device.

    A streaming render asks for the same grid at a new offset every chunk and for the same
    offset several times per chunk (denoising steps + cache write), so a few entries suffice.
    """

    def __init__(self, head_dim: int, theta: float = 10000.0, max_entries: int = 8):
        self.head_dim = head_dim
        self.theta = theta
        self.max_entries = max_entries
        self._memo: dict[tuple, tuple[Tensor, Tensor]] = {}

    def __call__(self, frames: int, height: int, width: int, *, frame_offset: int, device: torch.device) -> tuple[Tensor, Tensor]:
        """cos/sin for frames ``frame_offset ..`` (see :func:`rope_cos_sin`)."""
        return self.at(tuple(range(frame_offset, frame_offset + frames)), height, width, device=device)

    def at(self, positions: tuple[int, ...], height: int, width: int, *, device: torch.device) -> tuple[Tensor, Tensor]:
        """cos/sin for the given frame positions (see :func:`rope_cos_sin_at`)."""
        key = (positions, height, width, str(device))
        hit = self._memo.pop(key, None)
        if hit is None:
            hit = rope_cos_sin_at(self.head_dim, list(positions), height, width, theta=self.theta, device=device)
        self._memo[key] = hit  # most recent last
        while len(self._memo) > self.max_entries:
            self._memo.pop(next(iter(self._memo)))
        return hit
