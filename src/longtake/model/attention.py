"""Attention for the causal DiT: Wan's attention module, the attention call and the masks.

:class:`WanAttention` holds the parameters under diffusers' names (``to_q``, ``to_k``,
``to_v``, ``to_out.0``, ``norm_q``, ``norm_k``: RMSNorm over all heads together, Wan's
``qk_norm="rms_norm_across_heads"``). The attention itself is :func:`attend`, one call of
``torch.nn.functional.scaled_dot_product_attention`` over ``[prefix | own]`` keys, where
the prefix is whatever the KV cache (and, later, the memory bank) hands over:
``[sink | memory | local window]``. Attention never manages the cache; it only reads it.

Masks are boolean, True = may attend, built per frame then expanded to tokens.
"""

from __future__ import annotations

import warnings

import torch
import torch.nn.functional as F
from einops import rearrange
from torch import Tensor, nn

# Under bfloat16 autocast the q/k RMSNorm gets bf16 activations and float32 weights; PyTorch
# then computes it on its unfused path (the one the built-in model was trained with) and warns
# once per process that the fused kernel could not be used. The warning is about speed only and
# reached users on every render, so it is silenced here, for this message only.
warnings.filterwarnings("ignore", message="Mismatch dtype between input and weight", category=UserWarning)


class WanAttention(nn.Module):
    """Projections of one attention layer (self- or cross-attention); D = Nh * Dh."""

    def __init__(self, dim: int, num_heads: int, eps: float = 1e-6):
        super().__init__()
        self.num_heads = num_heads
        self.to_q = nn.Linear(dim, dim)
        self.to_k = nn.Linear(dim, dim)
        self.to_v = nn.Linear(dim, dim)
        # to_out is a list [Linear, Dropout] so the names are diffusers' "to_out.0.weight".
        self.to_out = nn.ModuleList([nn.Linear(dim, dim), nn.Dropout(0.0)])
        self.norm_q = nn.RMSNorm(dim, eps=eps, elementwise_affine=True)
        self.norm_k = nn.RMSNorm(dim, eps=eps, elementwise_affine=True)

    def query(self, x: Tensor) -> Tensor:
        """(B, L, D) -> normalised queries (B, Nh, L, Dh)."""
        q = self.norm_q(self.to_q(x))  # (B, L, D)
        return rearrange(q, "b l (n d) -> b n l d", n=self.num_heads)  # (B, Nh, L, Dh)

    def key_value(self, x: Tensor) -> tuple[Tensor, Tensor]:
        """(B, L, D) -> normalised keys and values, each (B, Nh, L, Dh)."""
        k = self.norm_k(self.to_k(x))  # (B, L, D)
        v = self.to_v(x)  # (B, L, D)
        k = rearrange(k, "b l (n d) -> b n l d", n=self.num_heads)  # (B, Nh, L, Dh)
        v = rearrange(v, "b l (n d) -> b n l d", n=self.num_heads)  # (B, Nh, L, Dh)
        return k, v

    def output(self, o: Tensor) -> Tensor:
        """Attention result (B, Nh, L, Dh) -> (B, L, D)."""
        o = rearrange(o, "b n l d -> b l (n d)")  # (B, L, D)
        return self.to_out[1](self.to_out[0](o))


def attend(
    q: Tensor,
    k: Tensor,
    v: Tensor,
    *,
    prefix: tuple[Tensor, Tensor] | None = None,
    mask: Tensor | None = None,
) -> Tensor:
    """Scaled dot-product attention of q over ``[prefix | k]``.

    q (B, Nh, Lq, Dh); k, v (B, Nh, Lk, Dh); prefix: extra (K, V) tokens (B, Nh, Lp, Dh)
    placed before k/v (cache / memory, already RoPE-rotated); mask: bool (Lq, Lp + Lk) or
    broadcastable, True = attend, None = everything visible. Returns (B, Nh, Lq, Dh).
    """
    if prefix is not None and prefix[0].shape[2] > 0:
        k = torch.cat([prefix[0].to(k.dtype), k], dim=2)  # (B, Nh, Lp+Lk, Dh)
        v = torch.cat([prefix[1].to(v.dtype), v], dim=2)  # (B, Nh, Lp+Lk, Dh)
    return F.scaled_dot_product_attention(q, k, v, attn_mask=mask)


def frame_visibility(
    num_frames: int,
    frames_per_chunk: int,
    *,
    frame_offset: int = 0,
    sink_frames: int = 0,
    local_window_frames: int | None = None,
    prefix_frames: int = 0,
) -> Tensor:
    """Which key frame each query frame may see: bool (F, P + F), True = visible.

    Frames are grouped into chunks of ``frames_per_chunk`` counted from the first frame of
    the input (block-causal: a frame sees every frame of its own and earlier chunks). With a
    ``local_window_frames`` W (LongLive), a query in a chunk ending at frame e sees only the
    sink (absolute frame index < ``sink_frames``) and frames in [e - W, e). ``prefix_frames``
    P leading key frames (from a cache) are visible to every query.
    """
    idx = torch.arange(num_frames)
    chunk = idx // frames_per_chunk  # (F,)
    visible = chunk[None, :] <= chunk[:, None]  # (Fq, Fk) block-causal
    if local_window_frames is not None:
        chunk_end = torch.clamp((chunk + 1) * frames_per_chunk, max=num_frames)  # (Fq,)
        in_window = idx[None, :] >= (chunk_end[:, None] - local_window_frames)  # (Fq, Fk)
        in_sink = (idx + frame_offset)[None, :] < sink_frames  # (1, Fk)
        visible = visible & (in_window | in_sink)
    if prefix_frames:
        visible = torch.cat([torch.ones(num_frames, prefix_frames, dtype=torch.bool), visible], dim=1)  # (F, P+F)
    return visible


def token_mask(frame_mask: Tensor, tokens_per_frame: int, *, prefix_tokens: int | None = None, device=None) -> Tensor:
    """Expand a frame-level bool mask (Fq, Fk) to tokens (Fq*n, Fk*n), n = tokens_per_frame.

    When the first key "frame" of the mask stands for a prefix of a different token count,
    pass the mask without it and ``prefix_tokens``: those columns are all visible.
    """
    m = frame_mask.repeat_interleave(tokens_per_frame, dim=0).repeat_interleave(tokens_per_frame, dim=1)  # (Lq, Lk)
    if prefix_tokens:
        m = torch.cat([torch.ones(m.shape[0], prefix_tokens, dtype=torch.bool), m], dim=1)  # (Lq, Lp+Lk)
    return m.to(device) if device is not None else m
