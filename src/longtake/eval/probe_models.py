"""The small networks behind :class:`longtake.eval.probes.StoryWorldProbes`.

* :class:`SceneNet` -- a fully convolutional net over a whole 128x128 frame: the location
  (global pooling, 9 classes), a person mask, and a CenterNet-style character detector
  (Zhou et al. 2019, "Objects as Points": a centre heat map, the box size and a sub-cell
  offset at output stride 4), which separates characters that overlap, where connected
  components of a person mask would merge them.
* :class:`BoxNet` -- the second stage of the detector: from a context crop around a
  detected box it regresses corrections of the box's four edges (as the second stage of
  Faster R-CNN, Ren et al. 2015, refines its proposals). The centre-net's boxes put the top
  edge a median 3.5% of the figure's height off, enough to shift the head crop off hair and
  hat; refined, 0.6%.
* :class:`CropNet` -- a net over one character crop (64x32, see :func:`crop_boxes`): the
  captioned attributes, the hidden details, the pose, and an L2-normalised identity
  embedding trained with a supervised contrastive loss (Khosla et al. 2020) whose batches
  hold twins (same caption, different hidden details) as hard negatives.
* :class:`AlignNet` -- a CLIP-style pair of small encoders (Radford et al. 2021): a bag of
  words and hashed word bigrams for the prompt, an MLP over pooled probe features for the
  clip, trained contrastively on StoryWorld (clip, chunk prompt) pairs.
"""

from __future__ import annotations

import zlib
from dataclasses import dataclass, field

import numpy as np
import torch
import torch.nn.functional as Fn
from einops import rearrange
from torch import nn

from longtake.model.tokenizer import Tokenizer, split_words


def conv_bn(cin: int, cout: int, stride: int = 1) -> nn.Sequential:
    """3x3 convolution, batch norm, ReLU."""
    return nn.Sequential(nn.Conv2d(cin, cout, 3, stride, 1, bias=False), nn.BatchNorm2d(cout), nn.ReLU(inplace=True))


# -- scene ---------------------------------------------------------------------------------


@dataclass(frozen=True)
class SceneConfig:
    """SceneNet sizes. The detection maps have stride 4 (two stride-2 stages)."""

    widths: tuple[int, int, int, int] = (16, 32, 64, 96)
    head_width: int = 32
    num_locations: int = 9
    stride: int = 4


class SceneNet(nn.Module):
    """frames (N, 3, H, W) in [0, 1] -> dict of
    ``location`` (N, L) logits, ``heat`` (N, 1, H/4, W/4) centre logits, ``size`` (N, 2, H/4, W/4)
    log box width/height in pixels, ``offset`` (N, 2, H/4, W/4) sub-cell centre offset in cells,
    ``mask`` (N, 1, H/4, W/4) person logits, ``feature`` (N, widths[-1]) pooled scene feature."""

    def __init__(self, cfg: SceneConfig = SceneConfig()) -> None:
        super().__init__()
        self.cfg = cfg
        w1, w2, w3, w4 = cfg.widths
        self.s2 = conv_bn(3, w1, 2)  # one conv at H/2: most of the training time is spent there
        self.s4 = nn.Sequential(conv_bn(w1, w2, 2), conv_bn(w2, w2))
        self.s8 = nn.Sequential(conv_bn(w2, w3, 2), conv_bn(w3, w3))
        self.s16 = nn.Sequential(conv_bn(w3, w4, 2), conv_bn(w4, w4))
        hw = cfg.head_width
        self.lat4 = nn.Conv2d(w2, hw, 1)
        self.lat8 = nn.Conv2d(w3, hw, 1)
        self.lat16 = nn.Conv2d(w4, hw, 1)
        self.head = nn.Sequential(conv_bn(hw, hw), nn.Conv2d(hw, 6, 1))
        self.location = nn.Linear(w4, cfg.num_locations)
        with torch.no_grad():  # CenterNet's prior: start with a low centre probability
            self.head[-1].bias[0].fill_(-2.2)

    def forward(self, x: torch.Tensor) -> dict[str, torch.Tensor]:
        f4 = self.s4(self.s2(x - 0.5))  # (N, w2, H/4, W/4)
        f8 = self.s8(f4)  # (N, w3, H/8, W/8)
        f16 = self.s16(f8)  # (N, w4, H/16, W/16)
        pooled = f16.mean((2, 3))  # (N, w4)
        up = lambda t, k: Fn.interpolate(t, scale_factor=k, mode="nearest")  # noqa: E731
        h = self.lat4(f4) + up(self.lat8(f8), 2) + up(self.lat16(f16), 4)  # (N, hw, H/4, W/4)
        out = self.head(h)  # (N, 6, H/4, W/4)
        return {"location": self.location(pooled), "heat": out[:, :1], "size": out[:, 1:3], "offset": out[:, 3:5],
                "mask": out[:, 5:6], "feature": pooled}


def box_iou(a: torch.Tensor, b: torch.Tensor) -> torch.Tensor:
    """a (K, 4), b (L, 4) x0,y0,x1,y1 -> (K, L) intersection over union."""
    lt = torch.maximum(a[:, None, :2], b[None, :, :2])
    rb = torch.minimum(a[:, None, 2:], b[None, :, 2:])
    inter = (rb - lt).clamp_min(0).prod(-1)
    area = lambda r: (r[:, 2] - r[:, 0]).clamp_min(0) * (r[:, 3] - r[:, 1]).clamp_min(0)  # noqa: E731
    return inter / (area(a)[:, None] + area(b)[None, :] - inter).clamp_min(1e-6)


def decode_boxes(heat: torch.Tensor, size: torch.Tensor, offset: torch.Tensor, *, stride: int, threshold: float,
                 frame_hw: tuple[int, int], max_boxes: int = 12, nms_iou: float = 0.5) -> list[tuple[np.ndarray, np.ndarray]]:
    """Peaks of the centre heat map -> per frame (boxes (K, 4) float x0,y0,x1,y1, scores (K,)).

    heat (N, 1, h, w) logits, size (N, 2, h, w), offset (N, 2, h, w). A peak is a cell that is
    the maximum of its 3x3 neighbourhood (CenterNet's NMS) with probability >= threshold; a
    tall figure can leave two such peaks, so boxes overlapping a better one by more than
    ``nms_iou`` are dropped as well.
    """
    prob = torch.sigmoid(heat)
    peaks = (prob == Fn.max_pool2d(prob, 3, 1, 1)) & (prob >= threshold)  # (N, 1, h, w)
    H, W = frame_hw
    out = []
    for i in range(prob.shape[0]):
        ys, xs = torch.nonzero(peaks[i, 0], as_tuple=True)
        scores = prob[i, 0, ys, xs]
        order = torch.argsort(scores, descending=True)[:max_boxes]
        ys, xs, scores = ys[order], xs[order], scores[order]
        cx = (xs.float() + offset[i, 0, ys, xs]) * stride
        cy = (ys.float() + offset[i, 1, ys, xs]) * stride
        bw, bh = torch.exp(size[i, 0, ys, xs]), torch.exp(size[i, 1, ys, xs])
        boxes = torch.stack([cx - bw / 2, cy - bh / 2, cx + bw / 2, cy + bh / 2], 1)
        boxes[:, 0::2] = boxes[:, 0::2].clamp(0, W)
        boxes[:, 1::2] = boxes[:, 1::2].clamp(0, H)
        iou = box_iou(boxes, boxes)
        keep: list[int] = []
        for k in range(boxes.shape[0]):  # scores are sorted: keep a box unless a kept one covers it
            if all(float(iou[k, j]) <= nms_iou for j in keep):
                keep.append(k)
        boxes, scores = boxes[keep], scores[keep]
        out.append((boxes.numpy().astype(np.float32), scores.numpy().astype(np.float32)))
    return out


def flatten_detections(dets: list[tuple[np.ndarray, np.ndarray]]) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """The per-frame (boxes, scores) of :func:`decode_boxes` -> frame index (M,) long, boxes
    (M, 4) and scores (M,) float32, in frame order."""
    index = torch.tensor([i for i, (b, _) in enumerate(dets) for _ in range(len(b))], dtype=torch.long)
    boxes = torch.from_numpy(np.concatenate([np.zeros((0, 4), np.float32), *(b for b, _ in dets)]).astype(np.float32))
    scores = torch.from_numpy(np.concatenate([np.zeros(0, np.float32), *(sc for _, sc in dets)]).astype(np.float32))
    return index, boxes, scores


# -- box refinement --------------------------------------------------------------------------


@dataclass(frozen=True)
class BoxConfig:
    """BoxNet sizes. The context crop is centred on the box, ``pad_h`` x its height tall and
    ``pad_w`` x its height wide (a waving or walking figure is wider than it is tall would
    suggest), resampled to ``crop_hw``; the net sees the box's edges and what lies beyond them."""

    crop_hw: tuple[int, int] = (64, 48)
    pad_h: float = 1.5
    pad_w: float = 1.1
    widths: tuple[int, int, int, int] = (16, 32, 48, 64)
    hidden: int = 128


class BoxNet(nn.Module):
    """context crops (M, 3, *crop_hw) in [0, 1] -> (M, 4) corrections of x0, y0, x1, y1 in units
    of the box height (:func:`refine_targets`, :func:`apply_refinement`). The last feature map is
    flattened, not pooled, so where an edge lies stays in the features. Starts as the identity
    (zero corrections)."""

    def __init__(self, cfg: BoxConfig = BoxConfig()) -> None:
        super().__init__()
        self.cfg = cfg
        w1, w2, w3, w4 = cfg.widths
        self.trunk = nn.Sequential(conv_bn(3, w1), conv_bn(w1, w2, 2), conv_bn(w2, w2), conv_bn(w2, w3, 2), conv_bn(w3, w3),
                                   conv_bn(w3, w4, 2), conv_bn(w4, w4))
        h, w = cfg.crop_hw
        self.fc = nn.Sequential(nn.Flatten(), nn.Linear(w4 * (h // 8) * (w // 8), cfg.hidden), nn.ReLU(inplace=True),
                                nn.Linear(cfg.hidden, 4))
        nn.init.zeros_(self.fc[-1].weight)
        nn.init.zeros_(self.fc[-1].bias)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.fc(self.trunk(x - 0.5))

    def context(self, images: torch.Tensor, frame_index: torch.Tensor, boxes: torch.Tensor) -> torch.Tensor:
        """images (N, C, H, W), frame_index (M,), boxes (M, 4) x0,y0,x1,y1 -> (M, C, *crop_hw)."""
        boxes = boxes.float()
        cx, cy = (boxes[:, 0] + boxes[:, 2]) / 2, (boxes[:, 1] + boxes[:, 3]) / 2
        h = (boxes[:, 3] - boxes[:, 1]).clamp_min(4.0)
        return _resample(images, frame_index, cx, cy, h * self.cfg.pad_w, h * self.cfg.pad_h, self.cfg.crop_hw)

    @torch.no_grad()
    def refine(self, images: torch.Tensor, frame_index: torch.Tensor, boxes: torch.Tensor, batch: int = 256) -> torch.Tensor:
        """The boxes (M, 4) after one refinement, clamped to the frame."""
        if boxes.shape[0] == 0:
            return boxes
        delta = torch.cat([self(self.context(images, frame_index[i : i + batch], boxes[i : i + batch]))
                           for i in range(0, boxes.shape[0], batch)])
        out = apply_refinement(boxes.float(), delta)
        H, W = images.shape[-2:]
        out[:, 0::2] = out[:, 0::2].clamp(0, W)
        out[:, 1::2] = out[:, 1::2].clamp(0, H)
        return out


def refine_targets(boxes: torch.Tensor, truth: torch.Tensor) -> torch.Tensor:
    """(M, 4) what :class:`BoxNet` learns: (truth - box) / box height, per edge."""
    return (truth - boxes) / (boxes[:, 3] - boxes[:, 1]).clamp_min(4.0)[:, None]


def apply_refinement(boxes: torch.Tensor, delta: torch.Tensor) -> torch.Tensor:
    """The inverse of :func:`refine_targets`: boxes (M, 4) moved by delta (M, 4) box heights."""
    return boxes + delta * (boxes[:, 3] - boxes[:, 1]).clamp_min(4.0)[:, None]


# -- crops ---------------------------------------------------------------------------------


@dataclass(frozen=True)
class CropConfig:
    """CropNet sizes; ``heads`` maps a head name to its number of classes.

    Two crops per box: the whole figure (``crop_hw``, about 1:1 with a 128-px frame) and
    its head, the top ``head_frac`` of the box magnified to ``head_hw``: hair style,
    glasses and hats are a few pixels wide, and a net this small learns them much faster
    at twice the scale.
    """

    crop_hw: tuple[int, int] = (64, 32)
    head_hw: tuple[int, int] = (32, 32)
    head_frac: float = 0.45
    widths: tuple[int, int, int, int] = (24, 32, 64, 96)
    head_widths: tuple[int, int, int] = (24, 32, 64)
    hidden: int = 256
    embed_dim: int = 64
    pad: float = 1.15
    heads: dict[str, int] = field(default_factory=dict)
    layout_hw: tuple[int, int] = (4, 2)
    coords: bool = False
    torso_hw: tuple[int, int] | None = None
    torso_span: tuple[float, float, float] = (0.12, 0.72, 0.5)
    torso_widths: tuple[int, int, int] = (24, 32, 64)
    torso_layout_hw: tuple[int, int] = (2, 2)


def _resample(images: torch.Tensor, frame_index: torch.Tensor, cx: torch.Tensor, cy: torch.Tensor, side_w: torch.Tensor,
              side_h: torch.Tensor, out_hw: tuple[int, int]) -> torch.Tensor:
    """Bilinear crops of ``side_w x side_h`` pixels centred on (cx, cy) -> (M, C, *out_hw); 0 outside."""
    H, W = images.shape[-2:]
    theta = torch.zeros(cx.shape[0], 2, 3)
    theta[:, 0, 0] = side_w / W
    theta[:, 0, 2] = 2 * cx / W - 1
    theta[:, 1, 1] = side_h / H
    theta[:, 1, 2] = 2 * cy / H - 1
    grid = Fn.affine_grid(theta, [cx.shape[0], images.shape[1], *out_hw], align_corners=False)  # (M, oh, ow, 2)
    return Fn.grid_sample(images[frame_index], grid, mode="bilinear", padding_mode="zeros", align_corners=False)


def crop_boxes(images: torch.Tensor, frame_index: torch.Tensor, boxes: torch.Tensor, cfg: CropConfig) -> tuple[torch.Tensor, ...]:
    """The crops of every box: figure (M, C, *crop_hw), head (M, C, *head_hw) and, when
    ``cfg.torso_hw`` is set, torso (M, C, *torso_hw).

    images (N, C, H, W) float, frame_index (M,) long, boxes (M, 4) float x0,y0,x1,y1 pixels.
    The figure crop is centred on the box, ``pad`` times its larger extent (height, or width
    scaled to the crop aspect), so a figure keeps its proportions. The head crop is a square
    of side ``head_frac`` x box height at the top centre of the box. The torso crop spans
    ``torso_span`` = (top, bottom, width) fractions of the box height, centred on the box.
    """
    ch, cw = cfg.crop_hw
    boxes = boxes.float()
    cx, cy = (boxes[:, 0] + boxes[:, 2]) / 2, (boxes[:, 1] + boxes[:, 3]) / 2
    bh = (boxes[:, 3] - boxes[:, 1]).clamp_min(4.0)
    side_h = torch.maximum(bh, (boxes[:, 2] - boxes[:, 0]) * ch / cw).clamp_min(4.0) * cfg.pad
    body = _resample(images, frame_index, cx, cy, side_h * cw / ch, side_h, cfg.crop_hw)
    s = bh * cfg.head_frac
    head = _resample(images, frame_index, cx, boxes[:, 1] + 0.45 * s, s, s, cfg.head_hw)
    if cfg.torso_hw is None:
        return body, head
    t0, t1, tw = cfg.torso_span
    torso = _resample(images, frame_index, cx, boxes[:, 1] + bh * (t0 + t1) / 2, bh * tw, bh * (t1 - t0), tuple(cfg.torso_hw))
    return body, head, torso


def crop_scales(cfg: CropConfig, box_h: float = 52.0) -> tuple[float, ...]:
    """Crop pixels per frame pixel of each crop of :func:`crop_boxes` for a typical box
    (a 52-px-tall figure at 128x128), for the blur of ``augment``."""
    out = [cfg.crop_hw[0] / (box_h * cfg.pad), cfg.head_hw[0] / (box_h * cfg.head_frac)]
    if cfg.torso_hw is not None:
        out.append(cfg.torso_hw[0] / (box_h * (cfg.torso_span[1] - cfg.torso_span[0])))
    return tuple(out)


def _pool(f: torch.Tensor) -> torch.Tensor:
    """(M, C, h, w) -> (M, 2C): mean and max; the max keeps a 2-px badge or bun from being
    averaged away."""
    return torch.cat([f.mean((2, 3)), f.amax((2, 3))], 1)


def _with_coords(x: torch.Tensor) -> torch.Tensor:
    """(M, 3, h, w) -> (M, 5, h, w): the image and its pixel coordinates (CoordConv, Liu et al.
    2018), from 0 to 1 (the trunk subtracts 0.5). Crops are centred on and scaled to the box,
    so a position in the crop is a fraction of the figure's height: the 1-2 pixels by which a
    man's shoulders are wider than a woman's become a position the filters can read."""
    m, _, h, w = x.shape
    ys = torch.linspace(0, 1, h, dtype=x.dtype, device=x.device)[:, None].expand(h, w)
    xs = torch.linspace(0, 1, w, dtype=x.dtype, device=x.device)[None, :].expand(h, w)
    grid = torch.stack([xs, ys])[None].expand(m, 2, h, w)  # (M, 2, h, w)
    return torch.cat([x, grid], 1).contiguous(memory_format=torch.channels_last)


class CropNet(nn.Module):
    """figure crops (M, 3, *crop_hw) and head crops (M, 3, *head_hw) in [0, 1] -> dict: one
    logits tensor (M, classes) per head of ``cfg.heads`` and ``embedding`` (M, embed_dim),
    L2-normalised."""

    def __init__(self, cfg: CropConfig) -> None:
        super().__init__()
        self.cfg = cfg
        w1, w2, w3, w4 = cfg.widths
        cin = 5 if cfg.coords else 3
        self.trunk = nn.Sequential(conv_bn(cin, w1), conv_bn(w1, w2, 2), conv_bn(w2, w2), conv_bn(w2, w3, 2), conv_bn(w3, w3),
                                   conv_bn(w3, w4, 2), conv_bn(w4, w4))
        h1, h2, h3 = cfg.head_widths
        self.head_trunk = nn.Sequential(conv_bn(cin, h1), conv_bn(h1, h2, 2), conv_bn(h2, h2), conv_bn(h2, h3, 2), conv_bn(h3, h3))
        self.layout = nn.AdaptiveAvgPool2d(cfg.layout_hw)
        dim = w4 * cfg.layout_hw[0] * cfg.layout_hw[1] + 2 * w4 + 2 * h3
        if cfg.torso_hw is not None:
            # the torso magnified: shoulder and hip widths (body), collar, hem and buttons
            # (garment) and 1-px dots and stripes (pattern) are a few pixels in the figure crop
            t1, t2, t3 = cfg.torso_widths
            self.torso_trunk = nn.Sequential(conv_bn(cin, t1), conv_bn(t1, t2, 2), conv_bn(t2, t2), conv_bn(t2, t3, 2), conv_bn(t3, t3))
            self.torso_layout = nn.AdaptiveAvgPool2d(cfg.torso_layout_hw)
            dim += 2 * t3 + t3 * cfg.torso_layout_hw[0] * cfg.torso_layout_hw[1]
        self.norm = nn.LayerNorm(dim)
        # linear heads straight on the pooled features learn small cues (a bun, glasses) in
        # far fewer steps than heads behind a hidden layer; the embedding gets one
        self.heads = nn.ModuleDict({name: nn.Linear(dim, n) for name, n in cfg.heads.items()})
        self.embed = nn.Sequential(nn.Linear(dim, cfg.hidden), nn.ReLU(inplace=True), nn.Linear(cfg.hidden, cfg.embed_dim))

    def forward(self, body: torch.Tensor, head: torch.Tensor, torso: torch.Tensor | None = None) -> dict[str, torch.Tensor]:
        if self.cfg.coords:
            body, head = _with_coords(body), _with_coords(head)
        f = self.trunk(body - 0.5)  # (M, w4, ch/8, cw/8)
        g = self.head_trunk(head - 0.5)  # (M, h3, hh/4, hw/4)
        # a coarse layout of the figure keeps left/right (badge side, watch) and top/bottom
        lay = rearrange(self.layout(f), "m c h w -> m (c h w)")  # (M, w4*lh*lw)
        parts = [lay, _pool(f), _pool(g)]
        if self.cfg.torso_hw is not None:
            if torso is None:
                raise ValueError("this CropNet reads a torso crop: pass the three crops of crop_boxes")
            t = self.torso_trunk((_with_coords(torso) if self.cfg.coords else torso) - 0.5)  # (M, t3, th/4, tw/4)
            parts += [_pool(t), rearrange(self.torso_layout(t), "m c h w -> m (c h w)")]
        z = self.norm(torch.cat(parts, 1))  # (M, dim)
        out = {name: layer(z) for name, layer in self.heads.items()}
        out["embedding"] = Fn.normalize(self.embed(z), dim=-1)
        return out


# -- text-video alignment --------------------------------------------------------------------


@dataclass(frozen=True)
class AlignConfig:
    """AlignNet sizes. ``video_dim`` is the length of a clip's pooled probe feature."""

    vocab_size: int
    video_dim: int
    bigram_buckets: int = 4096
    width: int = 128
    embed_dim: int = 64


def text_token_ids(tok: Tokenizer, text: str, bigram_buckets: int) -> list[int]:
    """Word ids and hashed bigram ids (offset by the vocabulary size) of ``text``.

    Bigrams keep some binding a bag of words loses ("red trousers" vs "red shirt"); crc32
    hashing is the same in every process.
    """
    words = [w for w in split_words(text) if w.isalnum()]
    ids = [tok.index.get(w, tok.unk_id) for w in words]
    grams = [len(tok) + zlib.crc32(f"{a} {b}".encode()) % bigram_buckets for a, b in zip(words, words[1:])]
    return ids + grams


class AlignNet(nn.Module):
    """Text: (ids (T,) long, offsets (B,) long) of an EmbeddingBag -> (B, E); video: pooled
    clip features (B, video_dim) -> (B, E). Both L2-normalised; ``scale`` is CLIP's learned
    temperature."""

    def __init__(self, cfg: AlignConfig) -> None:
        super().__init__()
        self.cfg = cfg
        self.bag = nn.EmbeddingBag(cfg.vocab_size + cfg.bigram_buckets, cfg.width, mode="mean")
        self.text_mlp = nn.Sequential(nn.GELU(), nn.Linear(cfg.width, cfg.width), nn.GELU(), nn.Linear(cfg.width, cfg.embed_dim))
        self.video_mlp = nn.Sequential(nn.LayerNorm(cfg.video_dim), nn.Linear(cfg.video_dim, 2 * cfg.width), nn.GELU(),
                                       nn.Linear(2 * cfg.width, cfg.embed_dim))
        self.scale = nn.Parameter(torch.tensor(np.log(10.0), dtype=torch.float32))

    def encode_text(self, ids: torch.Tensor, offsets: torch.Tensor) -> torch.Tensor:
        return Fn.normalize(self.text_mlp(self.bag(ids, offsets)), dim=-1)  # (B, E)

    def encode_video(self, feats: torch.Tensor) -> torch.Tensor:
        return Fn.normalize(self.video_mlp(feats), dim=-1)  # (B, E)


def bag_inputs(tok: Tokenizer, texts: list[str], bigram_buckets: int) -> tuple[torch.Tensor, torch.Tensor]:
    """texts (B) -> EmbeddingBag ids (T,) and offsets (B,)."""
    seqs = [text_token_ids(tok, t, bigram_buckets) or [tok.unk_id] for t in texts]
    offsets = torch.tensor(np.cumsum([0] + [len(s) for s in seqs[:-1]]), dtype=torch.long)
    return torch.tensor([i for s in seqs for i in s], dtype=torch.long), offsets
