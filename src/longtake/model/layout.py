"""Entity layout: where each character of a chunk stands, as an input of the DiT.

Why (session 11, docs/training.md "Entity layout"): every built-in run drew generic figures.
The text path and the middle of the DiT did carry each unseen character's look (the cast and
attribute readouts), yet the output barely used it, because the x0 loss barely rewards it: at
high noise the figure's place is unknown, so the best x0 guess spreads its colours over every
place it might stand; at low noise the colours are already in the input. Telling the DiT
*where* each character is removes that uncertainty, so the description decides the pixels
at every noise level. Layout-conditioned generation is the usual way to place entities
(GLIGEN, Li et al. 2023; LLM-grounded and director-style video planners feed per-entity
boxes to the video model); here the boxes carry the character's own text embedding, the
encoder's output at its name, where the cast readout (train/cast_readout.py) puts the whole look.

Slots: the characters a prompt introduces as ``Name (description)`` (the planner's
``expand_prompt``), in the order the prompt introduces them. A slot's box mask (1 inside, 0
outside, per latent frame) times its name embedding, summed over slots, is the layout map
the DiT embeds like its latents (``CausalWanDiT.layout_map``).

Where the boxes come from: in training, the renderer's exact label images (the who maps of
the latent shards); at render time, the :class:`LayoutPrior` learnt from those maps: the
median box of slot k of n, per latent frame. The probes judge a character wherever it stands,
so a typical place is enough.
"""

from __future__ import annotations

import math
import re
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from functools import lru_cache

import numpy as np
import torch
import torch.nn.functional as F
from torch import nn
from torch import Tensor

#: a character as the planner introduces it in a prompt: ``Name (description)``
INTRO = re.compile(r"([A-Za-z][\w'-]*) \(([^()]+)\)")


@lru_cache(maxsize=65536)
def introduced(prompt: str, tokens: Callable[[str], list[str]], limit: int) -> tuple[tuple[str, int, str], ...]:
    """The characters ``prompt`` introduces, in order: (name, token index of the name,
    description). ``tokens`` is the encoder's tokenizer; a name past ``limit`` tokens (cut
    off) or of more than one token has index -1 (no embedding to read). Cached: training asks
    for the same prompts at every step."""
    out = []
    all_tokens = tokens(prompt)
    for m in INTRO.finditer(prompt):
        pos = len(tokens(prompt[: m.start(1)]))
        name = tokens(m.group(1))
        ok = pos < limit and len(name) == 1 and all_tokens[pos : pos + 1] == name
        out.append((m.group(1), pos if ok else -1, m.group(2)))
    return tuple(out)


def slot_names(prompt: str) -> list[str]:
    """Names of the slots of ``prompt`` (no tokenizer needed)."""
    return [m.group(1) for m in INTRO.finditer(prompt)]


def boxes_from_slots(slots: Tensor, num_slots: int, dilate: int = 1) -> Tensor:
    """Slot map (B, F, H, W) int (0 = nobody, k = slot k) -> box masks (B, E, F, H, W) float:
    per slot and frame the bounding box of its pixels grown by ``dilate`` latent pixels, empty
    where the slot has no pixel."""
    ks = torch.arange(1, num_slots + 1, device=slots.device)
    m = slots[:, None] == ks[None, :, None, None, None]  # (B, E, F, H, W)
    rows, cols = m.any(-1), m.any(-2)  # (B, E, F, H), (B, E, F, W)

    def span(a: Tensor) -> Tensor:
        a = a.to(torch.uint8)
        return (a.cummax(-1).values & a.flip(-1).cummax(-1).values.flip(-1)).bool()

    box = (span(rows)[..., :, None] & span(cols)[..., None, :]).float()  # (B, E, F, H, W)
    if dilate > 0:
        b, e, f, h, w = box.shape
        box = F.max_pool2d(box.reshape(b * e * f, 1, h, w), 2 * dilate + 1, stride=1, padding=dilate).reshape(b, e, f, h, w)
    return box


def name_embeddings(emb: Tensor, prompts: Sequence[str], tokens: Callable[[str], list[str]], limit: int, num_slots: int) -> Tensor:
    """Text embeddings (N, T, D) of ``prompts`` -> (N, E, D): each slot's embedding at its
    name token (zero for a missing slot or a name without a token)."""
    out = emb.new_zeros((emb.shape[0], num_slots, emb.shape[-1]))
    for i, prompt in enumerate(prompts):
        for k, (_, pos, _) in enumerate(introduced(prompt, tokens, limit)[:num_slots]):
            if pos >= 0:
                out[i, k] = emb[i, pos]
    return out


@dataclass(frozen=True)
class LayoutPrior:
    """Median boxes ``boxes[n][k] = (y0, x0, y1, x1)`` (fractions of the frame, y1/x1
    exclusive) of slot k when a prompt introduces n characters, learnt from training layouts."""

    boxes: dict[int, tuple[tuple[float, float, float, float], ...]]

    def to_dict(self) -> dict[str, list[list[float]]]:
        return {str(n): [list(b) for b in bs] for n, bs in sorted(self.boxes.items())}

    @classmethod
    def from_dict(cls, data: dict) -> "LayoutPrior":
        return cls({int(n): tuple(tuple(float(v) for v in b) for b in bs) for n, bs in data.items()})

    def masks(self, n: int, num_slots: int, frames: int, height: int, width: int) -> Tensor:
        """Box masks (E, F, H, W) float for a prompt with ``n`` characters (the largest
        learnt n when n is larger; nothing for n = 0)."""
        out = torch.zeros(num_slots, frames, height, width)
        if n <= 0 or not self.boxes:
            return out
        bs = self.boxes.get(n) or self.boxes[max(self.boxes)]
        for k, (y0, x0, y1, x1) in enumerate(bs[:num_slots]):
            r0, r1 = int(round(y0 * height)), max(int(round(y1 * height)), int(round(y0 * height)) + 1)
            c0, c1 = int(round(x0 * width)), max(int(round(x1 * width)), int(round(x0 * width)) + 1)
            out[k, :, r0:r1, c0:c1] = 1.0
        return out


def estimate_prior(samples: dict[int, list[list[tuple[float, float, float, float]]]]) -> LayoutPrior:
    """``samples[n][k]`` = boxes (fractions) seen for slot k of n -> the per-coordinate
    medians (slots never seen keep the box of the slot before, or are left out)."""
    boxes: dict[int, tuple[tuple[float, float, float, float], ...]] = {}
    for n, per_slot in sorted(samples.items()):
        row = []
        for k in range(n):
            seen = per_slot[k] if k < len(per_slot) else []
            if seen:
                row.append(tuple(float(v) for v in np.median(np.asarray(seen), axis=0)))
            elif row:
                row.append(row[-1])
        if row:
            boxes[n] = tuple(row)
    return LayoutPrior(boxes)


def frame_boxes(boxes: Tensor) -> tuple[Tensor, Tensor]:
    """Box masks (..., H, W) -> (y0, x0, y1, x1) as fractions of the frame (..., 4) float
    and whether each box is non-empty (...) bool."""
    h, w = boxes.shape[-2:]
    rows, cols = boxes.bool().any(-1), boxes.bool().any(-2)  # (..., H), (..., W)
    y0 = rows.float().argmax(-1)
    y1 = h - rows.flip(-1).float().argmax(-1)
    x0 = cols.float().argmax(-1)
    x1 = w - cols.flip(-1).float().argmax(-1)
    out = torch.stack([y0.float() / h, x0.float() / w, y1.float() / h, x1.float() / w], dim=-1)
    return out, rows.any(-1)


def box_coordinates(boxes: Tensor) -> Tensor:
    """Box masks (..., H, W) -> each pixel's place inside its box (..., 2, H, W): row and
    column as fractions of the box from its top-left corner (0..1 at pixel centres), zero
    where the box is empty. The figure painter reads hair at the top, trousers below."""
    h, w = boxes.shape[-2:]
    frac, _ = frame_boxes(boxes)  # (..., 4)
    y = (torch.arange(h, dtype=torch.float32, device=boxes.device) + 0.5) / h  # (H,)
    x = (torch.arange(w, dtype=torch.float32, device=boxes.device) + 0.5) / w  # (W,)
    y0, x0, y1, x1 = (frac[..., i, None] for i in range(4))  # (..., 1) each
    ry = ((y - y0) / (y1 - y0).clamp_min(1e-6)).clamp(0, 1)  # (..., H)
    rx = ((x - x0) / (x1 - x0).clamp_min(1e-6)).clamp(0, 1)  # (..., W)
    out = torch.stack([ry[..., :, None].expand(*ry.shape, w), rx[..., None, :].expand(*rx.shape[:-1], h, w)], dim=-3)
    return out * boxes[..., None, :, :].bool()


class FigurePainter(nn.Module):
    """Paints each placed character in its box: a per-pixel MLP of the character's name
    embedding and the pixel's place in the box (:func:`box_coordinates`, with sines of 4
    octaves) -> the latent the figure has there (``channels``) and a coverage logit. With
    ``rank`` R > 0 a product term is added: R learned functions of the place (``basis``), each
    weighted per output by a linear map of the name (``template``), zero at first.

    Why (session 12, docs/training.md): the one-step x0 estimate of a layout DiT at sigma 1
    showed no figure at all in the boxes (probe-judged attributes 0%), yet at sigma 0.25,
    where the noisy input holds the figure, 60%. The painter is trained directly on the
    figures' latents (``train.dit_stage``'s paint loss), so the DiT starts every chunk from
    a rough figure in the described colours and only has to do what it does well: refine.
    Only pixels inside a box are computed."""

    octaves = 4

    def __init__(self, text_dim: int, hidden: int, channels: int, rank: int = 0) -> None:
        super().__init__()
        self.channels = channels
        self.rank = rank
        self.name_proj = nn.Linear(text_dim, hidden)
        self.pos_proj = nn.Linear(2 + 4 * self.octaves, hidden)
        self.mid = nn.Linear(hidden, hidden)
        self.out = nn.Linear(hidden, channels + 1)
        if rank:  # the product term (DiTConfig.paint_rank): zero at first, so it adds nothing until trained
            self.basis = nn.Sequential(nn.Linear(2 + 4 * self.octaves, hidden), nn.SiLU(), nn.Linear(hidden, rank))
            self.template = nn.Linear(text_dim, rank * (channels + 1))
            nn.init.zeros_(self.template.weight)
            nn.init.zeros_(self.template.bias)

    def _features(self, r: Tensor) -> Tensor:
        """(N, 2) places in boxes -> (N, 2 + 4 * octaves)."""
        k = math.pi * 2.0 ** torch.arange(self.octaves, dtype=r.dtype, device=r.device)  # (K,)
        ang = (r[..., None] * k).flatten(1)  # (N, 2K)
        return torch.cat([r, ang.sin(), ang.cos()], dim=-1)

    def forward(self, boxes: Tensor, names: Tensor) -> tuple[Tensor, Tensor]:
        """Box masks (B, E, F, H, W) and name embeddings (B, E, D) or per frame (B, F, E, D)
        -> (coverage logits (B, E, F, H, W), latents (B, E, C, F, H, W)), zero outside boxes."""
        b, e, f, h, w = boxes.shape
        dtype = self.name_proj.weight.dtype
        if names.ndim == 3:
            names = names[:, None].expand(b, f, e, names.shape[-1])
        z = self.name_proj(names.to(dtype))  # (B, F, E, hidden)
        coords = box_coordinates(boxes.float())  # (B, E, F, 2, H, W)
        inside = boxes > 0
        bi, ei, fi, yi, xi = inside.nonzero(as_tuple=True)
        feats = self._features(coords[bi, ei, fi, :, yi, xi].to(dtype))  # (N, 2 + 4K)
        hid = z[bi, fi, ei] + self.pos_proj(feats)  # (N, hidden)
        y = self.out(F.silu(self.mid(F.silu(hid)))).float()  # (N, C + 1)
        if self.rank:
            t = self.template(names.to(dtype)).view(b, f, e, self.rank, self.channels + 1)[bi, fi, ei]  # (N, R, C + 1)
            y = y + torch.einsum("nr,nrc->nc", self.basis(feats).float(), t.float())
        logits = boxes.new_zeros((b, e, f, h, w), dtype=torch.float32)
        lat = boxes.new_zeros((b, e, self.channels, f, h, w), dtype=torch.float32)
        logits[bi, ei, fi, yi, xi] = y[:, 0]
        lat.permute(0, 1, 3, 4, 5, 2)[bi, ei, fi, yi, xi] = y[:, 1:]
        return logits, lat


def composite_paint(x0: Tensor, layout: Tensor, threshold: float) -> Tensor:
    """Put the figure painter's figures over a sampled chunk: x0 (B, C, F, H, W) and the
    layout map (B, layout_width, F, H, W) whose last C + 1 channels are the painter's
    (:func:`compose_paint`) -> x0 with every latent pixel whose summed coverage exceeds
    ``threshold`` replaced by the painted latent (the coverage-weighted mean of the slots').
    Measured in session 13 (docs/models.md): b19's DiT draws a generic figure over what the
    painter gives it; composited after sampling the painter's look survives."""
    c = x0.shape[1]
    paint = layout[:, -(c + 1):].to(x0.dtype)
    painted, cover = paint[:, :c], paint[:, c:]
    return torch.where(cover > threshold, painted / cover.clamp_min(1e-3), x0)


def compose_paint(boxes: Tensor, logits: Tensor, latents: Tensor) -> Tensor:
    """Per-slot painter output -> the layout's paint channels (B, C + 1, F, H, W): the
    coverage-weighted sum of the slots' latents, then the summed coverage."""
    cover = torch.sigmoid(logits) * boxes.float()  # (B, E, F, H, W)
    painted = torch.einsum("befhw,becfhw->bcfhw", cover, latents)
    return torch.cat([painted, cover.sum(1, keepdim=True)], dim=1)
