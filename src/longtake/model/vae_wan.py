"""The Wan2.1 VAE (diffusers' ``AutoencoderKLWan``) behind the :class:`VideoVAE` interface.

Weights come only from a local folder (``from_pretrained(path)``, ``local_files_only``);
nothing is downloaded. diffusers is an optional dependency (the ``wan`` extra) and is
imported on first use.

Streaming decode. ``AutoencoderKLWan._decode`` runs its decoder one latent frame at a time
and threads a list of per-conv feature caches (``feat_cache``, the last ``CACHE_T`` input
frames of every causal 3D conv; ``"Rep"`` marks a temporal upsampler that has seen only the
first frame) through the calls, with ``first_chunk=True`` on the very first frame. It resets
that list (``clear_cache``) before and after every ``decode``. Here the list lives in a
:class:`WanDecoderState` that the caller keeps between chunks, and the decoder is driven
frame by frame in exactly the same order, so chunked decoding reproduces the full decode.

Latent normalisation. The DiT works on normalised latents ``(mu - mean) / std`` with the
per-channel ``latents_mean`` / ``latents_std`` of the VAE config (what diffusers'
``WanPipeline`` does before decoding); ``normalize=False`` exposes the raw latents.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import torch

from longtake.model.loading import require_model_folder
from longtake.model.vae import VAEError, VideoVAE

log = logging.getLogger(__name__)


@dataclass
class WanDecoderState:
    """Causal context of a streaming Wan decode.

    ``feat_cache`` holds one entry per ``WanCausalConv3d`` of the decoder (``None`` before the
    first frame, ``"Rep"`` for a temporal upsampler after the first frame, else a tensor
    (B, C, <=2, h, w)). ``frames_done`` counts latent frames decoded so far.
    :meth:`WanVAE.decode_chunk` returns a new state and leaves the one passed in unchanged.
    """

    feat_cache: list[Any]
    frames_done: int = 0


def _causal_conv_count(module: torch.nn.Module) -> int:
    from diffusers.models.autoencoders.autoencoder_kl_wan import WanCausalConv3d

    return sum(isinstance(m, WanCausalConv3d) for m in module.modules())


class WanVAE(VideoVAE):
    """:class:`VideoVAE` over a diffusers ``AutoencoderKLWan``.

    Args:
        model: the diffusers autoencoder (any size; a tiny random one in tests).
        normalize: encode returns ``(mu - mean) / std`` and decode expects it.
    """

    def __init__(self, model: Any, *, normalize: bool = True) -> None:
        self.model = model.eval()
        self.normalize = normalize
        cfg = model.config
        self._z = int(cfg.z_dim)
        self._s = int(cfg.scale_factor_spatial or 8)
        self._t = int(cfg.scale_factor_temporal or 2 ** sum(bool(d) for d in cfg.temperal_downsample))
        self._patch = cfg.patch_size
        self._conv_count = _causal_conv_count(model.decoder)
        mean = torch.tensor(list(cfg.latents_mean), dtype=torch.float32)
        std = torch.tensor(list(cfg.latents_std), dtype=torch.float32)
        if mean.numel() != self._z or std.numel() != self._z:
            raise VAEError(
                f"VAE config has z_dim={self._z} but {mean.numel()} latents_mean / "
                f"{std.numel()} latents_std values; they must match"
            )
        self._mean, self._std = mean, std

    # ------------------------------------------------------------------ loading
    @classmethod
    def from_pretrained(
        cls, path: str | Path, *, dtype: torch.dtype = torch.float32, normalize: bool = True, subfolder: str | None = None
    ) -> "WanVAE":
        """Load ``AutoencoderKLWan`` from a local diffusers folder (never downloads).

        ``path`` is the folder holding ``config.json`` and the weights, or a pipeline folder
        with ``subfolder="vae"``.
        """
        root = Path(path).expanduser()
        folder = root / subfolder if subfolder else root
        require_model_folder(folder, "Wan VAE", "Pass the local path of an AutoencoderKLWan (the 'vae' folder of Wan2.1-T2V-1.3B-Diffusers)", VAEError)
        try:
            from diffusers import AutoencoderKLWan
        except ImportError as err:  # pragma: no cover - depends on the environment
            raise VAEError("the Wan VAE needs diffusers: pip install 'longtake[wan]'") from err
        log.info("loading AutoencoderKLWan from %s", folder)
        model = AutoencoderKLWan.from_pretrained(str(folder), torch_dtype=dtype, local_files_only=True)
        return cls(model, normalize=normalize)

    # ------------------------------------------------------------------ geometry
    @property
    def latent_channels(self) -> int:
        return self._z

    @property
    def spatial_factor(self) -> int:
        return self._s

    @property
    def temporal_factor(self) -> int:
        return self._t

    def _stats(self, like: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        shape = (1, self._z, 1, 1, 1)
        mean = self._mean.to(device=like.device, dtype=like.dtype).view(shape)
        std = self._std.to(device=like.device, dtype=like.dtype).view(shape)
        return mean, std

    # ------------------------------------------------------------------ codec
    @torch.no_grad()
    def encode(self, video: torch.Tensor) -> torch.Tensor:
        """(B, 3, 1+4k, Hp, Wp) in [-1, 1] -> posterior mean (B, z, 1+k, Hp/8, Wp/8)."""
        self.check_video(video)
        param = next(self.model.parameters())
        x = video.to(dtype=param.dtype, device=param.device)
        mu = self.model.encode(x).latent_dist.mode()  # (B, z, F, H, W)
        if self.normalize:
            mean, std = self._stats(mu)
            mu = (mu - mean) / std
        return mu.to(video.dtype)

    def decoder_state(self) -> WanDecoderState:
        return WanDecoderState(feat_cache=[None] * self._conv_count)

    @torch.no_grad()
    def decode_chunk(self, latent: torch.Tensor, state: WanDecoderState) -> tuple[torch.Tensor, WanDecoderState]:
        """Decode latent frames (B, z, F, H, W) -> (B, 3, Fp, 8H, 8W), carrying ``state``.

        ``Fp = 1 + 4(F-1)`` on the first chunk of a stream and ``4F`` afterwards.
        """
        self.check_latent(latent)
        if len(state.feat_cache) != self._conv_count:
            raise VAEError("decoder state belongs to a different VAE (conv cache size differs)")
        param = next(self.model.parameters())
        z = latent.to(dtype=param.dtype, device=param.device)
        if self.normalize:
            mean, std = self._stats(z)
            z = z * std + mean
        x = self.model.post_quant_conv(z)  # 1x1x1 conv: per frame, needs no cache
        # The decoder only ever *rebinds* cache slots to fresh tensors (never writes into
        # them), so a shallow copy leaves the caller's state intact: a render can resume
        # from any saved state.
        state = WanDecoderState(feat_cache=list(state.feat_cache), frames_done=state.frames_done)
        outs = []
        for i in range(x.shape[2]):
            # One latent frame per call, as AutoencoderKLWan._decode does; the index list is
            # reset each call because every conv consumes the cache slots in module order.
            outs.append(
                self.model.decoder(
                    x[:, :, i : i + 1],  # (B, z, 1, H, W)
                    feat_cache=state.feat_cache,
                    feat_idx=[0],
                    first_chunk=state.frames_done == 0,
                )
            )
            state.frames_done += 1
        out = torch.cat(outs, dim=2)  # (B, 3*p*p, Fp, H*s/p, W*s/p)
        if self._patch is not None:
            from diffusers.models.autoencoders.autoencoder_kl_wan import unpatchify

            out = unpatchify(out, patch_size=self._patch)  # (B, 3, Fp, H*s, W*s)
        out = out.clamp(-1.0, 1.0)
        return out.to(latent.dtype), state
