"""The built-in video autoencoder: small, convolutional, fast enough for a 2-core CPU.

Made for StoryWorld (128x128 RGB, 16 fps) and trained by longtake's own training command.
Spatial factor ``2 ** (len(channels) - 1)`` (4 by default), ``latent_channels`` latent
channels, and a temporal factor of 1 (one latent per frame) or 4 (Wan-style causal: the first
frame alone, then groups of 4).

Layout (why it is cheap *and* exactly streamable):

* encoder: a per-frame 2D conv stack down to (c_last, H, W); with ``t = 4`` the features of
  each causal group of 4 frames are stacked along channels (the first frame is repeated to
  fill its group, as Wan's causal padding does) and a 3x3 conv maps them to the latent.
* decoder: one *causal temporal* conv reads the current latent frame and the
  ``temporal_kernel - 1`` previous ones (zeros before the first) and emits ``t`` frames of
  features; everything after it is a per-frame 2D conv stack up to RGB. So the only causal
  context a streaming decode needs is the last ``temporal_kernel - 1`` latent frames, and
  chunked decoding is bit-for-bit the full decode.

Shapes: video (B, 3, Fp, Hp, Wp) in [-1, 1]; latent (B, C, F, H, W), Fp = 1 + t (F - 1).
"""

from __future__ import annotations

import dataclasses
import json
import logging
from dataclasses import dataclass
from pathlib import Path

import torch
import torch.nn.functional as nnf
from einops import rearrange, repeat
from torch import nn

from longtake.model.loading import config_from_dict
from longtake.model.vae import VAEError, VideoVAE

log = logging.getLogger(__name__)


@dataclass(frozen=True)
class BuiltinVAEConfig:
    """Shape of :class:`BuiltinVAE`. ``channels`` run from full resolution down to the
    latent resolution; each step halves height and width."""

    latent_channels: int = 16
    # Spatial factor 4 (three levels): at 8x, 16 channels per 8x8x4 block of pixels (48x
    # compression) blurred StoryWorld's 16 px characters into smears; at 4x the same training
    # budget reconstructs them (whole-frame L1 0.059 vs 0.085 after 250 steps, side by side;
    # docs/training.md). The DiT patchifies 4x4 latents instead of 2x2, so it sees the same
    # 64 tokens per frame either way.
    channels: tuple[int, ...] = (16, 48, 96)
    enc_res_blocks: int = 1
    # Residual blocks per decoder level, lowest resolution first; the full-resolution level
    # is the most expensive, so the default leaves it with none.
    dec_res_blocks: tuple[int, ...] = (1, 1, 0)
    # 4 (Wan-style causal) by default: decode cost is the same as per-frame (the full-resolution
    # layers dominate; bench/bench_vae.py) while the DiT sees 4x fewer latent frames.
    temporal_factor: int = 4
    temporal_kernel: int = 2
    norm_groups: int = 8
    # Multiply normalised latents by this after encoding (set from data statistics after
    # training so the DiT sees roughly unit variance).
    latent_scale: float = 1.0
    # Non-parametric space-to-channel shortcuts around encoder and decoder (DC-AE, Chen et
    # al. 2024): the encoder adds channel-averaged pixel-unshuffled frames to its latent and
    # the decoder adds the channel-repeated, pixel-shuffled latent to its output, so the
    # network starts as a block-average codec and only learns the residual (measured: far
    # faster convergence on a CPU budget; docs/training.md).
    shortcut: bool = True

    def __post_init__(self) -> None:
        object.__setattr__(self, "channels", tuple(int(c) for c in self.channels))
        object.__setattr__(self, "dec_res_blocks", tuple(int(c) for c in self.dec_res_blocks))
        problems = []
        if len(self.channels) < 2:
            problems.append(f"channels needs at least 2 levels, got {self.channels}")
        if len(self.dec_res_blocks) != len(self.channels):
            problems.append(f"dec_res_blocks needs one entry per level ({len(self.channels)}), got {self.dec_res_blocks}")
        if self.temporal_factor not in (1, 4):
            problems.append(f"temporal_factor must be 1 or 4, got {self.temporal_factor}")
        if self.temporal_kernel < 1:
            problems.append(f"temporal_kernel must be >= 1, got {self.temporal_kernel}")
        if any(c % self.norm_groups for c in self.channels):
            problems.append(f"every channel count in {self.channels} must divide by norm_groups={self.norm_groups}")
        if self.latent_channels < 1:
            problems.append(f"latent_channels must be >= 1, got {self.latent_channels}")
        if self.shortcut and (3 * self.spatial_factor**2) % self.latent_channels:
            problems.append(f"shortcut needs latent_channels ({self.latent_channels}) to divide 3 * spatial_factor^2 = {3 * self.spatial_factor**2}")
        if problems:
            raise VAEError("invalid BuiltinVAEConfig: " + "; ".join(problems))

    @property
    def spatial_factor(self) -> int:
        return 2 ** (len(self.channels) - 1)

    def to_dict(self) -> dict:
        return dataclasses.asdict(self)

    @classmethod
    def from_dict(cls, data: dict) -> "BuiltinVAEConfig":
        return config_from_dict(cls, data, VAEError)


VAE_PRESETS: dict[str, BuiltinVAEConfig] = {
    "builtin": BuiltinVAEConfig(),
    "builtin-t1": BuiltinVAEConfig(temporal_factor=1),
}


class _ResBlock(nn.Module):
    """Pre-norm 2D residual block: x + conv(silu(norm(conv(silu(norm(x))))))."""

    def __init__(self, dim: int, groups: int) -> None:
        super().__init__()
        self.norm1 = nn.GroupNorm(groups, dim)
        self.conv1 = nn.Conv2d(dim, dim, 3, padding=1)
        self.norm2 = nn.GroupNorm(groups, dim)
        self.conv2 = nn.Conv2d(dim, dim, 3, padding=1)

    def forward(self, x: torch.Tensor) -> torch.Tensor:  # (N, D, h, w) -> same
        h = self.conv1(nnf.silu(self.norm1(x)))
        return x + self.conv2(nnf.silu(self.norm2(h)))


@dataclass
class BuiltinDecoderState:
    """Streaming context: the last ``temporal_kernel - 1`` latent frames (B, C, k-1, H, W),
    None before the first chunk, and the number of latent frames decoded so far."""

    past: torch.Tensor | None = None
    frames_done: int = 0


class BuiltinVAE(nn.Module, VideoVAE):
    """The built-in convolutional video VAE (deterministic autoencoder)."""

    def __init__(self, config: BuiltinVAEConfig | None = None) -> None:
        super().__init__()
        cfg = config or BuiltinVAEConfig()
        self.config = cfg
        ch, g, t = cfg.channels, cfg.norm_groups, cfg.temporal_factor
        # Encoder: per frame, full resolution -> latent resolution.
        self.enc_in = nn.Conv2d(3, ch[0], 3, padding=1)
        self.enc_blocks = nn.ModuleList()
        self.enc_down = nn.ModuleList()
        for i in range(len(ch) - 1):
            self.enc_blocks.append(nn.Sequential(*[_ResBlock(ch[i], g) for _ in range(cfg.enc_res_blocks)]))
            self.enc_down.append(nn.Conv2d(ch[i], ch[i + 1], 3, stride=2, padding=1))
        self.enc_mid = nn.Sequential(*[_ResBlock(ch[-1], g) for _ in range(max(1, cfg.enc_res_blocks))])
        self.enc_norm = nn.GroupNorm(g, ch[-1] * t)
        self.enc_out = nn.Conv2d(ch[-1] * t, cfg.latent_channels, 3, padding=1)
        # Decoder: causal temporal conv over latent frames, then per frame up to RGB.
        self.dec_in = nn.Conv2d(cfg.latent_channels * cfg.temporal_kernel, ch[-1] * t, 3, padding=1)
        rev = ch[::-1]
        self.dec_blocks = nn.ModuleList()
        self.dec_up = nn.ModuleList()
        for i, n in enumerate(cfg.dec_res_blocks):
            self.dec_blocks.append(nn.Sequential(*[_ResBlock(rev[i], g) for _ in range(n)]))
            if i + 1 < len(rev):
                self.dec_up.append(nn.Conv2d(rev[i], rev[i + 1], 3, padding=1))
        self.dec_norm = nn.GroupNorm(g, ch[0])
        self.dec_out = nn.Conv2d(ch[0], 3, 3, padding=1)

    # ------------------------------------------------------------------ geometry
    @property
    def latent_channels(self) -> int:
        return self.config.latent_channels

    @property
    def spatial_factor(self) -> int:
        return self.config.spatial_factor

    @property
    def temporal_factor(self) -> int:
        return self.config.temporal_factor

    # ------------------------------------------------------------------ encoder
    def encode(self, video: torch.Tensor) -> torch.Tensor:
        """(B, 3, 1 + t*k, Hp, Wp) in [-1, 1] -> latent (B, C, 1 + k, Hp/s, Wp/s)."""
        self.check_video(video)
        b, t = video.shape[0], self.temporal_factor
        x = rearrange(video, "b c f h w -> (b f) c h w")  # (B*Fp, 3, Hp, Wp)
        x = self.enc_in(x)
        for block, down in zip(self.enc_blocks, self.enc_down):
            x = down(block(x))
        x = self.enc_mid(x)  # (B*Fp, c_last, H, W)
        x = rearrange(x, "(b f) c h w -> b c f h w", b=b)  # (B, c_last, Fp, H, W)
        if t > 1:
            # Causal grouping: the first frame fills a group of its own (Wan2.1's rule).
            first = repeat(x[:, :, :1], "b c 1 h w -> b c r h w", r=t - 1)
            x = torch.cat([first, x], dim=2)  # (B, c_last, t*F, H, W)
        x = rearrange(x, "b c (n t) h w -> (b n) (t c) h w", t=t)  # (B*F, t*c_last, H, W)
        z = self.enc_out(nnf.silu(self.enc_norm(x)))  # (B*F, C, H, W)
        z = rearrange(z, "(b n) c h w -> b c n h w", b=b)  # (B, C, F, H, W)
        if self.config.shortcut:
            z = z + self._encode_shortcut(video)
        return z * self.config.latent_scale

    def _encode_shortcut(self, video: torch.Tensor) -> torch.Tensor:
        """(B, 3, Fp, Hp, Wp) -> (B, C, F, H, W): pixel-unshuffle, mean over each causal
        group of t frames, mean over groups of ``3 s^2 / C`` channels."""
        b, t, s = video.shape[0], self.temporal_factor, self.spatial_factor
        x = rearrange(video, "b c f (h sy) (w sx) -> b (c sy sx) f h w", sy=s, sx=s)  # (B, 3s^2, Fp, H, W)
        if t > 1:
            x = torch.cat([repeat(x[:, :, :1], "b c 1 h w -> b c r h w", r=t - 1), x], dim=2)  # (B, 3s^2, t*F, H, W)
        x = rearrange(x, "b c (n t) h w -> b c n t h w", t=t).mean(dim=3)  # (B, 3s^2, F, H, W)
        return rearrange(x, "b (k g) n h w -> b k g n h w", k=self.latent_channels).mean(dim=2)  # (B, C, F, H, W)

    # ------------------------------------------------------------------ decoder
    def decoder_state(self) -> BuiltinDecoderState:
        return BuiltinDecoderState()

    def decode_chunk(
        self, latent: torch.Tensor, state: BuiltinDecoderState
    ) -> tuple[torch.Tensor, BuiltinDecoderState]:
        """Decode the next latent chunk (B, C, F, H, W) -> (B, 3, Fp, H*s, W*s) in [-1, 1].

        ``Fp = 1 + t(F-1)`` for the first chunk of a stream, ``t*F`` afterwards. Returns a new
        state; the one passed in is not modified (so a render can resume from it).
        """
        frames = self._decode_raw(latent, state)
        new_state = BuiltinDecoderState(self._next_past(latent, state), state.frames_done + latent.shape[2])
        return frames.clamp(-1.0, 1.0), new_state

    def forward(self, video: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """Training pass: video -> (reconstruction before clamping, latent)."""
        z = self.encode(video)
        return self._decode_raw(z, BuiltinDecoderState()), z

    def _context(self, latent: torch.Tensor, state: BuiltinDecoderState) -> torch.Tensor:
        """Prepend the causal context: (B, C, F, H, W) -> (B, C, k-1+F, H, W)."""
        k = self.config.temporal_kernel
        if k == 1:
            return latent
        past = state.past
        if past is None:
            past = latent.new_zeros(latent.shape[0], latent.shape[1], k - 1, *latent.shape[3:])
        elif past.shape[0] != latent.shape[0] or past.shape[1] != latent.shape[1] or past.shape[3:] != latent.shape[3:]:
            raise VAEError(
                f"decoder state holds latents of shape {tuple(past.shape)}, which does not fit the chunk "
                f"{tuple(latent.shape)}; start a new stream with decoder_state()"
            )
        return torch.cat([past.to(latent), latent], dim=2)

    def _next_past(self, latent: torch.Tensor, state: BuiltinDecoderState) -> torch.Tensor | None:
        k = self.config.temporal_kernel
        if k == 1:
            return None
        return self._context(latent, state)[:, :, -(k - 1) :].detach().clone()  # (B, C, k-1, H, W)

    def _decode_raw(self, latent: torch.Tensor, state: BuiltinDecoderState) -> torch.Tensor:
        self.check_latent(latent)
        cfg = self.config
        b, n, k, t = latent.shape[0], latent.shape[2], cfg.temporal_kernel, cfg.temporal_factor
        z = self._context(latent / cfg.latent_scale, state)  # (B, C, k-1+F, H, W)
        # Sliding causal window of k latent frames, stacked along channels.
        win = torch.stack([z[:, :, j : j + n] for j in range(k)], dim=1)  # (B, k, C, F, H, W)
        x = rearrange(win, "b k c f h w -> (b f) (k c) h w")  # (B*F, k*C, H, W)
        x = self.dec_in(x)  # (B*F, t*c_last, H, W)
        x = rearrange(x, "(b f) (t c) h w -> b (f t) c h w", b=b, t=t)  # (B, F*t, c_last, H, W)
        if state.frames_done == 0 and t > 1:
            x = x[:, t - 1 :]  # the first latent frame stands for one pixel frame
        fp = x.shape[1]
        x = rearrange(x, "b f c h w -> (b f) c h w")  # (B*Fp, c_last, H, W)
        for i, block in enumerate(self.dec_blocks):
            x = block(x)
            if i < len(self.dec_up):
                x = self.dec_up[i](nnf.interpolate(x, scale_factor=2.0, mode="nearest"))
        x = self.dec_out(nnf.silu(self.dec_norm(x)))  # (B*Fp, 3, Hp, Wp)
        x = rearrange(x, "(b f) c h w -> b c f h w", b=b, f=fp)  # (B, 3, Fp, Hp, Wp)
        if cfg.shortcut:
            x = x + self._decode_shortcut(latent / cfg.latent_scale, fp)
        return x

    def _decode_shortcut(self, z: torch.Tensor, fp: int) -> torch.Tensor:
        """(B, C, F, H, W) -> (B, 3, Fp, Hp, Wp): repeat channels to 3 s^2, pixel-shuffle,
        repeat each latent frame over its t frames (the last ``fp`` frames are kept)."""
        s, t = self.spatial_factor, self.temporal_factor
        g = 3 * s * s // self.latent_channels
        x = repeat(z, "b k n h w -> b (k g) n h w", g=g)  # (B, 3s^2, F, H, W)
        x = rearrange(x, "b (c sy sx) n h w -> b c n (h sy) (w sx)", sy=s, sx=s)  # (B, 3, F, Hp, Wp)
        x = repeat(x, "b c n h w -> b c (n t) h w", t=t)  # (B, 3, F*t, Hp, Wp)
        return x[:, :, x.shape[2] - fp :]

    # ------------------------------------------------------------------ training
    def loss(
        self, video: torch.Tensor, *, grad_weight: float = 0.5, latent_weight: float = 1e-4,
        weight: torch.Tensor | None = None,
    ) -> tuple[torch.Tensor, dict[str, float]]:
        """Reconstruction loss for training: L1 + ``grad_weight`` * L1 of spatial and temporal
        finite differences (keeps edges and motion sharp without a perceptual network) +
        ``latent_weight`` * mean(z^2) (keeps the latent scale bounded for the DiT).

        video: (B, 3, Fp, Hp, Wp) in [-1, 1]. ``weight``: optional per-pixel weights
        broadcastable to (B, 1, Fp, Hp, Wp) (e.g. more on character pixels); both L1 terms
        become weighted means (a difference takes the larger weight of its two pixels).
        Returns (scalar loss, metrics); the metric ``l1`` stays the plain mean.
        """
        recon, z = self(video)
        err = (recon - video).abs()
        l1 = err.mean()
        weighted = None if weight is None else (err * weight).mean() / weight.mean()
        total = l1 if weighted is None else weighted
        grad = recon.new_zeros(())
        if grad_weight:
            for dim in (2, 3, 4):
                if video.shape[dim] > 1:
                    d = (recon.diff(dim=dim) - video.diff(dim=dim)).abs()
                    if weight is None:
                        grad = grad + d.mean()
                    else:
                        w = weight.narrow(dim, 0, weight.shape[dim] - 1).maximum(weight.narrow(dim, 1, weight.shape[dim] - 1))
                        grad = grad + (d * w).mean() / w.mean()
            total = total + grad_weight * grad
        reg = z.square().mean()
        total = total + latent_weight * reg
        metrics = {"loss": float(total.detach()), "l1": float(l1.detach()), "grad": float(grad.detach()),
                   "latent_ms": float(reg.detach())}
        if weighted is not None:
            metrics["weighted_l1"] = float(weighted.detach())
        return total, metrics

    # ------------------------------------------------------------------ weights
    def save_safetensors(self, path: str | Path) -> None:
        """Write weights plus the config (JSON in the safetensors metadata)."""
        from safetensors.torch import save_file

        tensors = {k: v.detach().contiguous().cpu() for k, v in self.state_dict().items()}
        save_file(tensors, str(path), metadata={"longtake_config": json.dumps(self.config.to_dict())})

    @classmethod
    def from_safetensors(cls, path: str | Path, *, device: str | torch.device = "cpu") -> "BuiltinVAE":
        """Load a VAE written by :meth:`save_safetensors`."""
        from safetensors import safe_open

        p = Path(path).expanduser()
        if not p.is_file():
            raise VAEError(f"built-in VAE weights not found at {p}; expected a .safetensors file")
        with safe_open(str(p), framework="pt", device=str(device)) as fh:
            meta = fh.metadata() or {}
            if "longtake_config" not in meta:
                raise VAEError(f"{p} has no longtake_config metadata; was it written by BuiltinVAE.save_safetensors?")
            cfg = BuiltinVAEConfig.from_dict(json.loads(meta["longtake_config"]))
            state = {k: fh.get_tensor(k) for k in fh.keys()}
        model = cls(cfg)
        missing, unexpected = model.load_state_dict(state, strict=False)
        if missing or unexpected:
            raise VAEError(f"{p} does not match BuiltinVAE: missing {missing[:5]}, unexpected {unexpected[:5]}")
        log.info("loaded built-in VAE from %s", p)
        return model.to(device)
