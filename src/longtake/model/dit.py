"""The causal video diffusion transformer (Wan2.1 architecture, streaming extensions).

:class:`CausalWanDiT` has the module tree and parameter names of diffusers'
``WanTransformer3DModel``, so ``model.load_state_dict(wan.state_dict(), strict=True)``
works, and in ``mode="bidirectional"`` it computes the same function. On top of Wan it has:

- per-frame timesteps: ``sigma`` of shape (B,) or (B, F), each latent frame its own noise
  level (diffusion forcing; Self-Forcing's clean-context + noisy-chunk passes);
- 3D RoPE whose frame positions start at ``frame_offset`` (absolute position in the video);
- block-causal attention by chunk of ``frames_per_chunk`` frames, optionally limited to
  sink + local window (LongLive), for full-sequence passes;
- a :class:`~longtake.model.kv_cache.KVCache` that the attention reads (previous chunks,
  sink, memory segment) and that a ``write_cache=True`` pass fills.

Time convention (DESIGN.md): the model takes sigma in [0, 1] (1 = noise) and predicts
v = eps - x0; the sinusoidal embedding sees ``sigma * num_train_timesteps`` like Wan.
"""

from __future__ import annotations

import functools
import math
from collections.abc import Callable
from typing import Literal

import torch
import torch.nn.functional as F
from einops import rearrange
from torch import Tensor, nn
from torch.utils.checkpoint import checkpoint

from longtake.model.attention import WanAttention, attend, frame_visibility, token_mask
from longtake.model.config import DiTConfig
from longtake.model.errors import ModelError
from longtake.model.kv_cache import KV, KVCache, PromptKV
from longtake.model.layout import FigurePainter, compose_paint
from longtake.model.rope import RopeTable, apply_rope

Mode = Literal["causal", "causal_window", "bidirectional"]
MODES = ("causal", "causal_window", "bidirectional")


def timestep_embedding(t: Tensor, dim: int, max_period: float = 10000.0) -> Tensor:
    """Sinusoidal embedding, cos half first (flip_sin_to_cos, no frequency shift): (N,) -> (N, dim) float32."""
    half = dim // 2
    freqs = torch.exp(-math.log(max_period) * torch.arange(half, dtype=torch.float32, device=t.device) / half)  # (dim/2,)
    args = t.float()[:, None] * freqs[None, :]  # (N, dim/2)
    emb = torch.cat([torch.cos(args), torch.sin(args)], dim=-1)  # (N, dim)
    return F.pad(emb, (0, dim % 2))


def layer_norm_fp32(x: Tensor, eps: float, weight: Tensor | None = None, bias: Tensor | None = None) -> Tensor:
    """LayerNorm over the last dim computed in float32, returned in float32."""
    w = None if weight is None else weight.float()
    b = None if bias is None else bias.float()
    return F.layer_norm(x.float(), (x.shape[-1],), w, b, eps)


def modulate(x: Tensor, shift: Tensor, scale: Tensor, frames: int) -> Tensor:
    """adaLN per frame: x (B, F*n, D), shift/scale (B, F, D) -> x * (1 + scale) + shift, (B, F*n, D)."""
    x = rearrange(x, "b (f n) d -> b f n d", f=frames)  # (B, F, n, D)
    x = x * (1 + scale[:, :, None]) + shift[:, :, None]
    return rearrange(x, "b f n d -> b (f n) d")  # (B, F*n, D)


def gated(x: Tensor, gate: Tensor, frames: int) -> Tensor:
    """x (B, F*n, D) * gate (B, F, D) per frame -> (B, F*n, D)."""
    x = rearrange(x, "b (f n) d -> b f n d", f=frames)  # (B, F, n, D)
    return rearrange(x * gate[:, :, None], "b f n d -> b (f n) d")  # (B, F*n, D)


class _TwoLayerMLP(nn.Module):
    """linear_1 -> activation -> linear_2 (diffusers' TimestepEmbedding / PixArtAlphaTextProjection)."""

    def __init__(self, in_dim: int, dim: int, act: nn.Module):
        super().__init__()
        self.linear_1 = nn.Linear(in_dim, dim)
        self.act = act
        self.linear_2 = nn.Linear(dim, dim)

    def forward(self, x: Tensor) -> Tensor:
        return self.linear_2(self.act(self.linear_1(x)))


class ConditionEmbedder(nn.Module):
    """Timestep -> (temb, 6-way modulation) and text -> width D (diffusers' ``condition_embedder``)."""

    def __init__(self, dim: int, freq_dim: int, text_dim: int):
        super().__init__()
        self.freq_dim = freq_dim
        self.time_embedder = _TwoLayerMLP(freq_dim, dim, nn.SiLU())
        self.time_proj = nn.Linear(dim, 6 * dim)
        self.text_embedder = _TwoLayerMLP(text_dim, dim, nn.GELU(approximate="tanh"))

    def time(self, t: Tensor, dtype: torch.dtype) -> tuple[Tensor, Tensor]:
        """t (N,) Wan timesteps (0..1000) -> temb (N, D), modulation (N, 6*D), both ``dtype``."""
        emb = timestep_embedding(t, self.freq_dim).to(self.time_embedder.linear_1.weight.dtype)  # (N, freq_dim)
        temb = self.time_embedder(emb).to(dtype)  # (N, D)
        return temb, self.time_proj(F.silu(temb))  # (N, D), (N, 6D)


class _GeluProj(nn.Module):
    def __init__(self, dim: int, inner: int):
        super().__init__()
        self.proj = nn.Linear(dim, inner)

    def forward(self, x: Tensor) -> Tensor:
        return F.gelu(self.proj(x), approximate="tanh")


class FeedForward(nn.Module):
    """Linear -> GELU(tanh) -> Linear, named ``net.0.proj`` / ``net.2`` like diffusers."""

    def __init__(self, dim: int, inner: int):
        super().__init__()
        self.net = nn.ModuleList([_GeluProj(dim, inner), nn.Dropout(0.0), nn.Linear(inner, dim)])

    def forward(self, x: Tensor) -> Tensor:
        for layer in self.net:
            x = layer(x)
        return x


class FP32LayerNorm(nn.LayerNorm):
    """LayerNorm computed in float32 whatever the parameter/input dtype; returns the input dtype."""

    def forward(self, x: Tensor) -> Tensor:
        return layer_norm_fp32(x, self.eps, self.weight, self.bias).to(x.dtype)


class WanBlock(nn.Module):
    """One Wan block: adaLN self-attention (RoPE, cache) -> cross-attention on text -> adaLN FFN."""

    def __init__(self, cfg: DiTConfig):
        super().__init__()
        dim = cfg.dim
        self.eps = cfg.eps
        self.attn1 = WanAttention(dim, cfg.num_heads, cfg.eps)
        self.attn2 = WanAttention(dim, cfg.num_heads, cfg.eps)
        self.norm2 = FP32LayerNorm(dim, cfg.eps, elementwise_affine=True) if cfg.cross_attn_norm else nn.Identity()
        self.ffn = FeedForward(dim, cfg.ffn_dim)
        self.scale_shift_table = nn.Parameter(torch.randn(1, 6, dim) / dim**0.5)

    def forward(
        self,
        h: Tensor,
        mod: Tensor,
        rope: tuple[Tensor, Tensor],
        text_kv: KV,
        prefix: KV | None = None,
        mask: Tensor | None = None,
        prefix_rope: tuple[Tensor, Tensor] | None = None,
        select: Callable[[Tensor, KV], KV] | None = None,
    ) -> tuple[Tensor, KV]:
        """h (B, L, D); mod (B, F, 6, D) float32 per-frame modulation; rope cos/sin (L, Dh/2);
        text_kv cross-attention K/V (B, Nh, T, Dh); prefix cached K/V (B, Nh, Lp, Dh) with
        keys not rotated, and ``prefix_rope`` cos/sin (Lp, Dh/2) to rotate them; ``select``
        (sparse memory activation) narrows the rotated prefix given this layer's queries
        before RoPE (B, Nh, L, Dh), e.g. :meth:`KVCache.select_prefix`.
        Returns the new h (B, L, D) and this chunk's self-attention (K, V), (B, Nh, L, Dh),
        keys not rotated (what the KV cache stores)."""
        frames = mod.shape[1]
        shift, scale, gate, c_shift, c_scale, c_gate = (self.scale_shift_table.float()[None] + mod).unbind(2)  # 6 x (B, F, D)

        # 1. Self-attention over [cache prefix | this input], block-causal by the mask.
        x = modulate(layer_norm_fp32(h, self.eps), shift, scale, frames).to(h.dtype)  # (B, L, D)
        q_raw = self.attn1.query(x)  # (B, Nh, L, Dh)
        q = apply_rope(q_raw, *rope)
        k_raw, v = self.attn1.key_value(x)  # (B, Nh, L, Dh)
        k = apply_rope(k_raw, *rope)
        if prefix is not None and prefix_rope is not None:
            prefix = (apply_rope(prefix[0], *prefix_rope), prefix[1])  # (B, Nh, Lp, Dh)
        if prefix is not None and select is not None:
            prefix = select(q_raw, prefix)  # (B, Nh, Lp', Dh)
        o = self.attn1.output(attend(q, k, v, prefix=prefix, mask=mask))  # (B, L, D)
        h = (h.float() + gated(o.float(), gate, frames)).to(h.dtype)

        # 2. Cross-attention on the (cached) prompt; a prompt per chunk when the prompt K/V
        #    hold B*K rows for K chunks (training on clips that cross a prompt switch).
        x = self.norm2(h.float()).to(h.dtype)
        q2 = self.attn2.query(x)  # (B, Nh, L, Dh)
        per_chunk = text_kv[0].shape[0] // h.shape[0]
        if per_chunk > 1:
            q2 = rearrange(q2, "b n (k l) d -> (b k) n l d", k=per_chunk)  # (B*K, Nh, L/K, Dh)
            o2 = rearrange(attend(q2, *text_kv), "(b k) n l d -> b n (k l) d", k=per_chunk)  # (B, Nh, L, Dh)
        else:
            o2 = attend(q2, *text_kv)
        h = h + self.attn2.output(o2)  # (B, L, D)

        # 3. Feed-forward.
        x = modulate(layer_norm_fp32(h, self.eps), c_shift, c_scale, frames).to(h.dtype)  # (B, L, D)
        h = (h.float() + gated(self.ffn(x).float(), c_gate, frames)).to(h.dtype)
        return h, (k_raw, v)


class RefineHead(nn.Module):
    """Per-frame 3x3 convolutions that correct the unpatchified x0 estimate: input the
    estimate, the noisy latents and sigma (one constant channel), output estimate + delta.
    Frames are processed independently, so streaming still equals a full pass."""

    def __init__(self, channels: int, hidden: int, extra: int = 0):
        super().__init__()
        self.conv_in = nn.Conv2d(2 * channels + 1, hidden, 3, padding=1)
        self.conv_mid = nn.Conv2d(hidden, hidden, 3, padding=1)
        self.conv_out = nn.Conv2d(hidden, channels, 3, padding=1)
        nn.init.zeros_(self.conv_out.weight)
        nn.init.zeros_(self.conv_out.bias)
        if extra:  # the figure painter's channels (DiTConfig.paint_hidden); zero: changes nothing at first
            self.paint_in = nn.Conv2d(extra, hidden, 3, padding=1)
            nn.init.zeros_(self.paint_in.weight)
            nn.init.zeros_(self.paint_in.bias)

    def forward(self, x0: Tensor, xt: Tensor, sigma: Tensor, extra: Tensor | None = None) -> Tensor:
        """x0, xt (B, C, F, H, W); sigma (B, F); extra (B, C + 1, F, H, W) the painter's channels
        (a head built with ``extra``; None = nothing painted) -> refined x0 (B, C, F, H, W)."""
        b, _, f, h, w = x0.shape
        s = sigma.to(x0.dtype)[:, None, :, None, None].expand(b, 1, f, h, w)
        inp = rearrange(torch.cat([x0, xt.to(x0.dtype), s], dim=1), "b c f h w -> (b f) c h w")
        y = self.conv_in(inp)
        if extra is not None and hasattr(self, "paint_in"):
            y = y + self.paint_in(rearrange(extra.to(x0.dtype), "b c f h w -> (b f) c h w"))
        y = self.conv_out(F.silu(self.conv_mid(F.silu(y))))
        return x0 + rearrange(y, "(b f) c h w -> b c f h w", b=b).to(x0.dtype)


class CausalWanDiT(nn.Module):
    """Wan2.1 DiT with per-frame timesteps, offset RoPE, block-causal attention and a KV cache.

    Shapes: x (B, C, F, H, W) latents; sigma (B,) or (B, F); text (B, T, text_dim)
    embeddings or a :class:`PromptKV`; output v (B, C_out, F, H, W).
    """

    def __init__(self, config: DiTConfig):
        super().__init__()
        self.config = config
        dim = config.dim
        self.patch_embedding = nn.Conv3d(config.in_channels, dim, kernel_size=config.patch_size, stride=config.patch_size)
        self.condition_embedder = ConditionEmbedder(dim, config.freq_dim, config.text_dim)
        self.blocks = nn.ModuleList([WanBlock(config) for _ in range(config.num_layers)])
        self.proj_out = nn.Linear(dim, config.out_channels * math.prod(config.patch_size))
        self.scale_shift_table = nn.Parameter(torch.randn(1, 2, dim) / dim**0.5)
        if config.abs_pos_tokens is not None:  # builtin only (config.abs_pos_tokens)
            self.pos_embed = nn.Parameter(torch.randn(*config.abs_pos_tokens, dim) * 0.02)  # (rows, cols, D)
        paint = config.layout_width - config.layout_channels  # the figure painter's channels (0 = none)
        if config.refine_channels:  # builtin only (config.refine_channels)
            self.refine = RefineHead(config.out_channels, config.refine_channels, extra=paint)
        if config.layout_channels:  # builtin only (config.layout_channels, model/layout.py)
            self.layout_proj = nn.Linear(config.text_dim, config.layout_channels)
            self.layout_embedding = nn.Conv3d(config.layout_channels, dim, kernel_size=config.patch_size, stride=config.patch_size)
            # zero: a model gains the input without changing what it computes
            nn.init.zeros_(self.layout_embedding.weight)
            nn.init.zeros_(self.layout_embedding.bias)
        if paint:  # builtin only (config.paint_hidden, model/layout.py FigurePainter)
            self.paint = FigurePainter(config.text_dim, config.paint_hidden, config.out_channels, config.paint_rank)
            self.paint_embedding = nn.Conv3d(paint, dim, kernel_size=config.patch_size, stride=config.patch_size)
            nn.init.zeros_(self.paint_embedding.weight)
            nn.init.zeros_(self.paint_embedding.bias)
        self.rope = RopeTable(config.head_dim, config.rope_theta)
        self.gradient_checkpointing = False

    # ------------------------------------------------------------------ helpers
    def new_cache(self) -> KVCache:
        """An empty KV cache bounded as the config says (sink + local window)."""
        return KVCache.from_config(self.config)

    def encode_prompt(self, text: Tensor) -> PromptKV:
        """Text embeddings (B, T, text_dim) -> cross-attention K/V of every layer (computed once per prompt)."""
        if text.ndim != 3 or text.shape[-1] != self.config.text_dim:
            raise ModelError(f"text must be (B, T, {self.config.text_dim}), got {tuple(text.shape)}")
        y = self.condition_embedder.text_embedder(text.to(self.proj_out.weight.dtype))  # (B, T, D)
        return PromptKV([block.attn2.key_value(y) for block in self.blocks])

    def layout_map(self, boxes: Tensor, names: Tensor, painted: tuple[Tensor, Tensor] | None = None) -> Tensor:
        """The entity layout input (model/layout.py): box masks (B, E, F, H, W) of E slots and
        their name embeddings (B, E, text_dim), or per frame (B, F, E, text_dim) when the
        frames' chunks have other prompts -> (B, layout_width, F, H, W): the layout map, then
        with a figure painter its composed output (``painted``: the painter's output for
        these boxes and names when the caller already has it, as training does)."""
        if not self.config.layout_channels:
            raise ModelError("this DiT has no layout input (layout_channels=0)")
        z = self.layout_proj(names.to(self.layout_proj.weight.dtype)).float()  # (B, [F,] E, Cl)
        if z.ndim == 3:
            out = torch.einsum("befhw,bec->bcfhw", boxes.float(), z)
        else:
            out = torch.einsum("befhw,bfec->bcfhw", boxes.float(), z)
        if not self.config.paint_hidden:
            return out
        logits, latents = painted if painted is not None else self.paint(boxes, names)
        return torch.cat([out, compose_paint(boxes, logits, latents)], dim=1)

    def _timesteps(self, sigma: Tensor | float, batch: int, frames: int, device: torch.device) -> Tensor:
        """sigma scalar, (B,) or (B, F) -> Wan timesteps (B, F) float32."""
        s = torch.as_tensor(sigma, dtype=torch.float32, device=device)
        if s.ndim == 0:
            s = s.expand(batch)
        if s.ndim == 1 and s.shape[0] == batch:
            s = s[:, None].expand(batch, frames)  # (B, F)
        if s.shape != (batch, frames):
            raise ModelError(f"sigma must be a scalar, (B,)=({batch},) or (B, F)=({batch}, {frames}); got {tuple(s.shape)}")
        return s * self.config.num_train_timesteps  # (B, F)

    # ------------------------------------------------------------------ forward
    def forward(
        self,
        x: Tensor,
        sigma: Tensor | float,
        text: Tensor | PromptKV | None = None,
        *,
        frame_offset: int | None = None,
        cache: KVCache | None = None,
        write_cache: bool = False,
        mode: Mode = "causal",
        sink_frames: int | None = None,
        layout: Tensor | None = None,
    ) -> Tensor:
        """Predict the velocity v = eps - x0 for latents ``x`` at noise level ``sigma``
        (with ``config.prediction == "sample"`` the head predicts x0 and v is derived from it).

        Args:
            x: (B, C, F, H, W) latent frames.
            sigma: noise level(s) in [0, 1]: scalar, (B,), or (B, F) one per frame.
            text: (B, T, text_dim) text embeddings, or a PromptKV from :meth:`encode_prompt`;
                None uses ``cache.prompt``. (B, K, T, text_dim) (or a PromptKV of B*K rows)
                gives each of K equal groups of frames its own prompt.
            frame_offset: absolute index of x's first frame (sink membership, and the RoPE
                position with ``rope_positions="absolute"``); defaults to
                ``cache.next_frame`` with a cache, else 0. With "compact" positions x's first
                frame sits right after the cached frames it attends to (position
                ``cache.view_frames``), or at ``frame_offset`` without a cache.
            cache: K/V of previous frames to attend to (read-only unless ``write_cache``).
            write_cache: append this pass's K/V to ``cache`` and commit (the sigma=0 pass).
            mode: "causal" block-causal by chunk of ``frames_per_chunk`` frames;
                "causal_window" also limits each chunk to sink + ``local_window_frames``
                (the full-pass equivalent of a bounded cache); "bidirectional" full
                attention (Wan; no cache).
            sink_frames: leading frames every chunk of a "causal_window" pass sees, instead
                of ``config.sink_frames``: a training clip [sink | memory frames | chunks]
                passes sink + memory, the full-pass equivalent of a cache with a memory
                segment (memory training, train/dit_stage.py).
            layout: (B, layout_channels, F, H, W) entity layout (:meth:`layout_map`), for a
                DiT with ``layout_channels``; None = nobody placed.
        Returns:
            v: (B, C_out, F, H, W) in the model's dtype.
        """
        cfg = self.config
        if mode not in MODES:
            raise ModelError(f"mode must be one of {MODES}, got {mode!r}")
        if x.ndim != 5 or x.shape[1] != cfg.in_channels:
            raise ModelError(f"x must be (B, {cfg.in_channels}, F, H, W), got {tuple(x.shape)}")
        if mode == "bidirectional" and cache is not None:
            raise ModelError("a KV cache needs causal attention; use mode='causal' with a cache")
        if write_cache and cache is None:
            raise ModelError("write_cache=True needs a cache")
        if frame_offset is None:
            frame_offset = cache.next_frame if cache is not None else 0
        elif cache is not None and write_cache and frame_offset != cache.next_frame:
            raise ModelError(f"frame_offset {frame_offset} != cache.next_frame {cache.next_frame}; use cache.seek() to move")

        B, _, frames, H, W = x.shape
        _, ph, pw = cfg.patch_size
        tpf = cfg.tokens_per_frame(H, W)
        dtype = self.proj_out.weight.dtype

        # Prompt K/V: given, computed now, or cached. text (B, K, T, text_dim) or a PromptKV
        # of B*K rows gives each of K equal groups of frames (chunks) its own prompt.
        if isinstance(text, Tensor) and text.ndim == 4:
            text = rearrange(text, "b k t d -> (b k) t d")  # (B*K, T, text_dim)
        if text is None:
            if cache is None or cache.prompt is None:
                raise ModelError("no text given and no prompt cached (cache.set_prompt(model.encode_prompt(text)))")
            prompt = cache.prompt
        elif isinstance(text, PromptKV):
            prompt = text
        else:
            prompt = self.encode_prompt(text)

        rows = prompt.layers[0][0].shape[0]
        if rows % B or frames % (rows // B):
            raise ModelError(f"the prompt has {rows} rows for a batch of {B} and {frames} frames; expected B or B*K rows with K dividing the frames")
        h = self.patch_embedding(x.to(dtype))  # (B, D, F, H/ph, W/pw)
        paint = None  # the figure painter's channels of the layout, for the refine head
        if layout is not None:
            if not cfg.layout_channels:
                raise ModelError("a layout was given but this DiT has no layout input (layout_channels=0)")
            if layout.shape != (B, cfg.layout_width, frames, H, W):
                raise ModelError(f"layout must be (B, {cfg.layout_width}, F, H, W) = {(B, cfg.layout_width, frames, H, W)}, got {tuple(layout.shape)}")
            h = h + self.layout_embedding(layout[:, : cfg.layout_channels].to(dtype))  # (B, D, F, H/ph, W/pw)
            if cfg.paint_hidden:
                paint = layout[:, cfg.layout_channels :]  # (B, C + 1, F, H, W)
                h = h + self.paint_embedding(paint.to(dtype))
        if cfg.abs_pos_tokens is not None:
            if tuple(h.shape[-2:]) != tuple(cfg.abs_pos_tokens):
                raise ModelError(f"this model has absolute positions for {cfg.abs_pos_tokens[0]}x{cfg.abs_pos_tokens[1]} tokens per frame, "
                                 f"got {h.shape[-2]}x{h.shape[-1]} (latents {H}x{W}); render at the size it was trained for")
            h = h + rearrange(self.pos_embed, "h w d -> d 1 h w").to(h.dtype)
        h = rearrange(h, "b d f h w -> b (f h w) d").contiguous()  # (B, L, D), L = F*tpf

        t = self._timesteps(sigma, B, frames, x.device)  # (B, F)
        temb, mod = self.condition_embedder.time(rearrange(t, "b f -> (b f)"), dtype)  # (B*F, D), (B*F, 6D)
        temb = rearrange(temb, "(b f) d -> b f d", b=B)  # (B, F, D)
        mod = rearrange(mod.float(), "(b f) (six d) -> b f six d", b=B, six=6)  # (B, F, 6, D)

        sink = cfg.sink_frames if sink_frames is None else sink_frames
        compact = cfg.rope_positions == "compact"
        rope_offset = cache.view_frames if (compact and cache is not None) else frame_offset
        rope = self.rope(frames, H // ph, W // pw, frame_offset=rope_offset, device=x.device)  # 2 x (L, Dh/2)
        prefix_rope, rope_key = None, None
        if cache is not None and cache.view_frames:
            positions = tuple(range(cache.view_frames)) if compact else tuple(cache.view_positions())
            prefix_rope = self.rope.at(positions, H // ph, W // pw, device=x.device)  # 2 x (Lp, Dh/2)
            rope_key = (positions, H // ph, W // pw)
        if compact and cache is None and mode == "causal_window" and cfg.local_window_frames is not None:
            limit = sink + cfg.local_window_frames
            if frames > limit:
                raise ModelError(
                    f"with compact RoPE positions a full causal_window pass covers at most sink + window = {limit} frames, "
                    f"got {frames}; stream longer videos chunk by chunk with a KV cache"
                )

        prefix_tokens = 0 if cache is None else cache.num_tokens
        mask = None
        if mode != "bidirectional":
            window = mode == "causal_window"
            if frames > cfg.frames_per_chunk or (window and cfg.local_window_frames is not None and frames > cfg.local_window_frames):
                vis = frame_visibility(
                    frames,
                    cfg.frames_per_chunk,
                    frame_offset=frame_offset,
                    sink_frames=sink if window else 0,
                    local_window_frames=cfg.local_window_frames if window else None,
                )  # (F, F)
                mask = token_mask(vis, tpf, prefix_tokens=prefix_tokens, device=x.device)  # (L, Lp+L)

        # Sparse memory activation (the cache's memory_selector) narrows the prefix per layer and
        # head; only for one-chunk passes, where no token mask has to match the prefix width.
        sparse = cache is not None and cache.memory_selector is not None and mask is None
        for i, block in enumerate(self.blocks):
            # the cached keys rotated to their positions, once per chunk (KVCache.rotated_view)
            prefix = None if cache is None else cache.rotated_view(i, rope_key, lambda k: apply_rope(k, *prefix_rope)) if prefix_rope is not None else cache.view(i)
            select = functools.partial(cache.select_prefix, i) if sparse else None
            if self.gradient_checkpointing and torch.is_grad_enabled() and not write_cache:
                h, kv = checkpoint(block, h, mod, rope, prompt.layers[i], prefix, mask, None, select, use_reentrant=False)
            else:
                h, kv = block(h, mod, rope, prompt.layers[i], prefix, mask, None, select)
            if write_cache:
                cache.append(i, kv[0], kv[1], frames)
        if write_cache:
            cache.commit(frames)

        shift, scale = (self.scale_shift_table.float()[None] + temb.float()[:, :, None]).unbind(2)  # 2 x (B, F, D)
        h = modulate(layer_norm_fp32(h, cfg.eps), shift, scale, frames).to(dtype)  # (B, L, D)
        out = self.proj_out(h)  # (B, L, ph*pw*C_out)
        out = rearrange(
            out,
            "b (f h w) (pt ph pw c) -> b c (f pt) (h ph) (w pw)",
            f=frames, h=H // ph, w=W // pw, pt=1, ph=ph, pw=pw,
        )  # (B, C_out, F, H, W)
        if cfg.prediction == "sample":
            if cfg.refine_channels:
                out = self.refine(out, x, t / cfg.num_train_timesteps, paint)
            # The head predicts x0; return the velocity it implies (config.prediction).
            s = (t / cfg.num_train_timesteps).clamp_min(cfg.sample_sigma_min)[:, None, :, None, None]  # (B, 1, F, 1, 1)
            out = ((x.float() - out.float()) / s).to(out.dtype)
        return out
