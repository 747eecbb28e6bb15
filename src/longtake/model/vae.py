"""The video VAE interface every latent codec in longtake implements.

Shapes (DESIGN.md legend, plus pixel-space names):
    video   (B, 3, Fp, Hp, Wp) float in [-1, 1], Fp pixel frames
    latent  (B, C, F, H, W) with H = Hp / s, W = Wp / s, s = ``spatial_factor``

Temporal compression is *causal* in the Wan2.1 sense (REFERENCES.md): the first pixel frame
gets a latent frame of its own, then every ``temporal_factor`` pixel frames share one, so
``Fp = 1 + t * (F - 1)``. With ``t = 1`` this is simply ``Fp = F``.

Streaming decode: the generator produces latents chunk by chunk; ``decode_chunk`` turns each
chunk into pixel frames while carrying whatever causal context the decoder needs (Wan's conv
feature cache, the built-in VAE's previous latent frames) in an explicit state object.
Decoding chunk after chunk from ``decoder_state()`` gives the same frames as one ``decode``
of the whole latent.
"""

from __future__ import annotations

import abc
import dataclasses
from typing import Any

import torch

from longtake.model.errors import ModelError


class VAEError(ModelError):
    """Bad input to a VAE: wrong shapes, frame counts that do not fit the causal rule, a
    missing weights path. The message says what was expected."""


class VideoVAE(abc.ABC):
    """A video autoencoder with causal temporal compression and streaming decode."""

    # ------------------------------------------------------------------ geometry
    @property
    @abc.abstractmethod
    def latent_channels(self) -> int:
        """C, the number of latent channels."""

    @property
    @abc.abstractmethod
    def spatial_factor(self) -> int:
        """s: pixel height / latent height (and width)."""

    @property
    @abc.abstractmethod
    def temporal_factor(self) -> int:
        """t: pixel frames per latent frame after the first one."""

    def frames_for_latents(self, n: int) -> int:
        """Pixel frames decoded from ``n`` latent frames: ``1 + t * (n - 1)`` (0 for 0)."""
        if n < 0:
            raise VAEError(f"latent frame count must be >= 0, got {n}")
        return 0 if n == 0 else 1 + self.temporal_factor * (n - 1)

    def latents_for_frames(self, n: int) -> int:
        """Latent frames that encode ``n`` pixel frames; ``n`` must be ``1 + t * k``."""
        t = self.temporal_factor
        if n < 1 or (n - 1) % t:
            raise VAEError(
                f"a video of {n} frames cannot be encoded: the frame count must be 1 + {t} * k "
                f"(e.g. {1 + t * max(0, (n - 1) // t)} or {1 + t * (max(0, (n - 1) // t) + 1)})"
            )
        return 1 + (n - 1) // t

    # ------------------------------------------------------------------ codec
    @abc.abstractmethod
    def encode(self, video: torch.Tensor) -> torch.Tensor:
        """(B, 3, Fp, Hp, Wp) in [-1, 1] -> latent (B, C, F, Hp/s, Wp/s)."""

    @abc.abstractmethod
    def decoder_state(self) -> Any:
        """A fresh streaming-decode state (the causal context before the first frame)."""

    @abc.abstractmethod
    def decode_chunk(self, latent: torch.Tensor, state: Any) -> tuple[torch.Tensor, Any]:
        """Decode the next latent chunk (B, C, F, H, W) of a stream.

        Returns pixel frames (B, 3, Fp, H*s, W*s) in [-1, 1] and the state to pass with the
        following chunk. For the first chunk of a stream ``Fp = 1 + t * (F - 1)``, for later
        chunks ``Fp = t * F``.
        """

    def decoder_state_dict(self, state: Any) -> dict[str, Any]:
        """``state`` as plain data (tensors, numbers, strings, None, lists, dicts), so it can be
        saved without pickle (:mod:`longtake.render_state`). Tensors are shared, not copied.

        The default handles a dataclass state, field by field; override for other kinds.
        """
        if not dataclasses.is_dataclass(state) or isinstance(state, type):
            raise VAEError(f"{type(self).__name__}: decoder state {type(state).__name__} is not a dataclass; override decoder_state_dict")
        return {f.name: getattr(state, f.name) for f in dataclasses.fields(state)}

    def load_decoder_state(self, data: dict[str, Any]) -> Any:
        """The decoder state that :meth:`decoder_state_dict` turned into ``data``."""
        cls = type(self.decoder_state())
        names = {f.name for f in dataclasses.fields(cls)}
        if not isinstance(data, dict) or set(data) != names:
            got = sorted(data) if isinstance(data, dict) else type(data).__name__
            raise VAEError(f"{type(self).__name__}: saved decoder state has fields {got}, expected {sorted(names)}")
        return cls(**data)

    def decode(self, latent: torch.Tensor) -> torch.Tensor:
        """(B, C, F, H, W) -> video (B, 3, 1 + t*(F-1), H*s, W*s) in [-1, 1]."""
        frames, _ = self.decode_chunk(latent, self.decoder_state())
        return frames

    # ------------------------------------------------------------------ checks
    def check_video(self, video: torch.Tensor) -> None:
        """Raise :class:`VAEError` unless ``video`` is (B, 3, 1 + t*k, Hp, Wp), Hp, Wp % s == 0."""
        s = self.spatial_factor
        if video.ndim != 5 or video.shape[1] != 3:
            raise VAEError(f"video must be (B, 3, F, H, W), got shape {tuple(video.shape)}")
        if video.shape[-1] % s or video.shape[-2] % s:
            raise VAEError(
                f"video height and width must be multiples of {s}, got {video.shape[-2]}x{video.shape[-1]}"
            )
        self.latents_for_frames(video.shape[2])

    def check_latent(self, latent: torch.Tensor) -> None:
        """Raise :class:`VAEError` unless ``latent`` is (B, C, F, H, W) with this VAE's C."""
        if latent.ndim != 5 or latent.shape[1] != self.latent_channels:
            raise VAEError(
                f"latent must be (B, {self.latent_channels}, F, H, W), got shape {tuple(latent.shape)}"
            )
        if latent.shape[2] < 1:
            raise VAEError("latent chunk has no frames")
