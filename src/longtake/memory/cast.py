"""The cast the entity memory knows before the first chunk: who, described how, with which images.

A :class:`CastMember` is a character or a location of the script with the prompt that
describes it and its reference images already read into memory (reading files is the entry
point's job, :mod:`longtake.memory_files`). The generator encodes each image into the
member's entity memory before the first chunk (personalisation from reference images, as
MovieDreamer and Movie Gen do) or, with casting on and no image, generates one frame.

:func:`image_to_video` turns one image into the VAE's first-frame layout: a causal video VAE
encodes a single pixel frame into one latent frame (``1 + t * 0`` frames), so the image is
centre-cropped to the video's aspect, resized, scaled to [-1, 1] and given a time axis.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Literal

import numpy as np
import torch
import torch.nn.functional as F
from torch import Tensor

from longtake.memory.errors import MemoryBankError


@dataclass(frozen=True)
class CastMember:
    """One character or location. ``images``: reference images, each (H, W, 3) uint8 RGB."""

    entity: str
    kind: Literal["character", "location"]
    prompt: str
    images: tuple[np.ndarray, ...] = field(default=(), repr=False)

    def __post_init__(self) -> None:
        if self.kind not in ("character", "location"):
            raise MemoryBankError(f"cast member {self.entity!r}: kind must be 'character' or 'location', got {self.kind!r}")
        for i, img in enumerate(self.images):
            if not isinstance(img, np.ndarray) or img.dtype != np.uint8 or img.ndim != 3 or img.shape[2] != 3:
                got = f"{img.shape} {img.dtype}" if isinstance(img, np.ndarray) else type(img).__name__
                raise MemoryBankError(f"cast member {self.entity!r}: reference image {i} must be (H, W, 3) uint8 RGB, got {got}")

    @property
    def location(self) -> str:
        """The location id an entry of this member carries ("" for a character)."""
        return self.entity if self.kind == "location" else ""


def image_to_video(image: np.ndarray, height: int, width: int) -> Tensor:
    """(H, W, 3) uint8 RGB -> (1, 3, 1, height, width) float32 in [-1, 1]: centre crop to the
    target aspect, then an area-averaged (antialiased) resize."""
    h, w = image.shape[:2]
    if h * width > w * height:  # too tall: crop rows
        ch = max(1, round(w * height / width))
        top = (h - ch) // 2
        image = image[top : top + ch]
    elif h * width < w * height:  # too wide: crop columns
        cw = max(1, round(h * width / height))
        left = (w - cw) // 2
        image = image[:, left : left + cw]
    x = torch.from_numpy(np.ascontiguousarray(image)).permute(2, 0, 1)[None].float() / 127.5 - 1.0  # (1, 3, h, w)
    if x.shape[-2:] != (height, width):
        x = F.interpolate(x, size=(height, width), mode="bilinear", antialias=True, align_corners=False)  # (1, 3, height, width)
    return x.clamp(-1.0, 1.0)[:, :, None]  # (1, 3, 1, height, width)
