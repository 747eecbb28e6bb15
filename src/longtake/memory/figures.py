"""Figure memory: a character's look at its first appearance, kept in latent space and put back.

Why (session 14, docs/memory.md): the built-in model was never trained to copy appearance
from memory frames through attention, and with ``paint_composite`` every figure it shows is
painted from the prompt alone, so a character's look follows the wording of each prompt (the
description is the same, the rest of the prompt is not, and the text encoder reads it all).
Entity memory knows which character stands in which layout slot (the planner's ids and the
prompt's ``Name (description)`` order), so it can keep the figure latents of a character's
first appearance, in coordinates relative to its box, and composite them into its box every
time it is on screen again: a returning character is then drawn from the same latents as
at its first appearance, details the text never mentions included. This is an explicit
copy in latent space, not something the model learnt; it needs a DiT with a figure painter
(its coverage says which pixels of the box are the figure).

A figure is a tensor (C + 1, h, w): the latents of the box as they were (the box's own size),
then the painter's coverage there; a box of another size gets it resampled (bilinear).
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import Tensor

from longtake.model.layout import frame_boxes


def _span(box: Tensor) -> tuple[int, int, int, int] | None:
    """Box mask (H, W) -> (r0, r1, c0, c1) pixel bounds, None when empty."""
    h, w = box.shape
    frac, ok = frame_boxes(box)
    if not bool(ok):
        return None
    y0, x0, y1, x1 = (float(v) for v in frac)
    return round(y0 * h), round(y1 * h), round(x0 * w), round(x1 * w)


def crop_figure(x0: Tensor, cover: Tensor, box: Tensor) -> Tensor | None:
    """The figure in ``box`` of the first latent frame: x0 (1, C, F, H, W), the painter's
    summed coverage (1, F, H, W), the slot's box mask (F, H, W) -> (C + 1, h, w) (a copy),
    or None when the box is empty."""
    span = _span(box[0])
    if span is None:
        return None
    r0, r1, c0, c1 = span
    return torch.cat([x0[0, :, 0, r0:r1, c0:c1].float(), cover[0, 0, r0:r1, c0:c1][None].float()])


def paste_figure(x0: Tensor, figure: Tensor, box: Tensor, threshold: float) -> Tensor:
    """x0 (1, C, F, H, W) with ``figure`` (C + 1, h, w) put into the slot's box (F, H, W)
    of every frame, on the pixels where its stored coverage exceeds ``threshold`` (a copy;
    x0 unchanged when the box is empty)."""
    out = x0.clone()
    for f in range(x0.shape[2]):
        span = _span(box[f])
        if span is None:
            continue
        r0, r1, c0, c1 = span
        fig = figure.float()
        if fig.shape[1:] != (r1 - r0, c1 - c0):  # a box of another size: resampled
            fig = F.interpolate(fig[None], size=(r1 - r0, c1 - c0), mode="bilinear", align_corners=False)[0]
        lat, cov = fig[:-1].to(x0.dtype), fig[-1]
        region = out[0, :, f, r0:r1, c0:c1]
        out[0, :, f, r0:r1, c0:c1] = torch.where(cov > threshold, lat, region)
    return out
