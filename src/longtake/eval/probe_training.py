"""The training stages of the StoryWorld probes (``python -m longtake.eval.train_probes`` runs them).

:func:`train_scene` (location, person mask, character centres), :func:`train_refine` (the
detector's second stage), :func:`train_crop` (attributes, hidden details, pose, identity) and
:func:`train_align` (text-video alignment), with their losses, targets and the detector pass
over the training frames (:func:`detector_boxes`). Every stage learns from StoryWorld ground
truth only.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Callable

import numpy as np
import torch
import torch.nn.functional as Fn
from einops import reduce

from longtake.eval.probe_data import ATTRIBUTES, HIDDEN, MIN_TARGET_AREA, POSES, ProbeData, augment, relight
from longtake.eval.probe_models import (AlignConfig, AlignNet, BoxConfig, BoxNet, CropConfig, CropNet, SceneConfig, SceneNet,
                                        bag_inputs, box_iou, crop_boxes, crop_scales, decode_boxes, flatten_detections,
                                        refine_targets)
from longtake.eval.probes import StoryWorldProbes
from longtake.model.tokenizer import Tokenizer

log = logging.getLogger(__name__)

#: Sampler seeds of the alignment stories start here (disjoint from the crop stories).
CLIP_SEED0 = 1_000_000
#: Centre probability above which a heat-map peak is a character.
THRESHOLD = 0.35



def _optimise(opt, sched, losses: dict, tag: str, step: int, steps: int, t0: float) -> None:
    """One optimiser step on the sum of ``losses``; a log line every 200 steps and at the end."""
    loss = sum(losses.values())
    opt.zero_grad(set_to_none=True)
    loss.backward()  # type: ignore[union-attr]
    opt.step()
    sched.step()
    if step % 200 == 0 or step == steps - 1:
        log.info("%s %d/%d %.0fs %s", tag, step, steps, time.time() - t0, " ".join(f"{k}={float(v.detach()):.3f}" for k, v in losses.items()))

def _autocast(enabled: bool) -> torch.autocast:
    """bfloat16 autocast for a training forward pass (weights, optimiser and losses stay
    float32): on CPUs with AVX512-BF16 the crop net's training step is about 1.4x faster,
    the scene net's 1.6x."""
    return torch.autocast("cpu", dtype=torch.bfloat16, enabled=enabled)


def _float(out: dict[str, torch.Tensor]) -> dict[str, torch.Tensor]:
    return {k: v.float() for k, v in out.items()}


def _frames(data: ProbeData, idx: np.ndarray) -> torch.Tensor:
    """(B, 3, H, W) float in [0, 1] of frames ``idx``."""
    return torch.from_numpy(data.frames[idx]).permute(0, 3, 1, 2).float() / 255


def _schedule(opt: torch.optim.Optimizer, steps: int, lr: float) -> torch.optim.lr_scheduler.LRScheduler:
    return torch.optim.lr_scheduler.OneCycleLR(opt, max_lr=lr, total_steps=steps, pct_start=0.15)


# -- scene -----------------------------------------------------------------------------------


def scene_targets(data: ProbeData, stride: int) -> dict[str, torch.Tensor]:
    """CenterNet targets at ``stride``: heat (N, h, w) Gaussians peaking at 1 on the centre
    cell, size/offset (N, 2, h, w) and their mask reg (N, h, w), soft person mask (N, h, w)."""
    n, H, W = data.masks.shape
    h, w = H // stride, W // stride
    heat = np.zeros((n, h, w), np.float32)
    size = np.zeros((n, 2, h, w), np.float32)
    offset = np.zeros((n, 2, h, w), np.float32)
    reg = np.zeros((n, h, w), bool)
    ys, xs = np.mgrid[0:h, 0:w]
    for b in np.flatnonzero(data.box_area >= MIN_TARGET_AREA):
        f = data.box_frame[b]
        x0, y0, x1, y1 = data.box_xyxy[b]
        cx, cy = (x0 + x1) / 2 / stride, (y0 + y1) / 2 / stride
        ix, iy = min(int(cx), w - 1), min(int(cy), h - 1)
        sx, sy = max(0.6, (x1 - x0) / stride / 6), max(0.6, (y1 - y0) / stride / 6)
        heat[f] = np.maximum(heat[f], np.exp(-((xs - ix) ** 2 / (2 * sx**2) + (ys - iy) ** 2 / (2 * sy**2))))
        size[f, :, iy, ix] = np.log([max(x1 - x0, 1.0), max(y1 - y0, 1.0)])
        offset[f, :, iy, ix] = (cx - ix, cy - iy)
        reg[f, iy, ix] = True
    soft = reduce(data.masks.astype(np.float32), "n (h a) (w b) -> n h w", "mean", a=stride, b=stride)  # (N, h, w)
    return {"heat": torch.from_numpy(heat), "size": torch.from_numpy(size), "offset": torch.from_numpy(offset),
            "reg": torch.from_numpy(reg), "mask": torch.from_numpy(soft)}


def focal_loss(logits: torch.Tensor, target: torch.Tensor) -> torch.Tensor:
    """CenterNet's penalty-reduced focal loss; logits/target (N, h, w), target 1 at centres."""
    pos = target >= 1.0
    p = torch.sigmoid(logits)
    pos_loss = -(Fn.logsigmoid(logits) * (1 - p) ** 2)[pos].sum()
    neg_loss = -(Fn.logsigmoid(-logits) * p**2 * (1 - target) ** 4)[~pos].sum()
    return (pos_loss + neg_loss) / pos.sum().clamp_min(1)


def train_scene(datas: list[ProbeData], *, steps: int, batch: int, lr: float, gen: torch.Generator, amp: bool = False) -> SceneNet:
    """Location, person mask and CenterNet losses on the frames of all ``datas``; ``amp``:
    bfloat16 autocast for the forward pass."""
    net = SceneNet(SceneConfig()).to(memory_format=torch.channels_last)
    parts = [scene_targets(d, net.cfg.stride) for d in datas]
    tg = {k: torch.cat([p[k] for p in parts]) for k in parts[0]}
    frames = np.concatenate([d.frames for d in datas]) if len(datas) > 1 else datas[0].frames
    locs = torch.from_numpy(np.concatenate([d.locations for d in datas]))
    opt = torch.optim.AdamW(net.parameters(), lr=lr, weight_decay=1e-4)
    sched = _schedule(opt, steps, lr)
    net.train()
    t0 = time.time()
    for step in range(steps):
        idx = torch.randint(0, frames.shape[0], (batch,), generator=gen).numpy()
        x = torch.from_numpy(frames[idx]).permute(0, 3, 1, 2).float() / 255  # (B, 3, H, W)
        with _autocast(amp):
            out = _float(net(augment(x, gen).contiguous(memory_format=torch.channels_last)))
        reg = tg["reg"][idx]
        losses = {
            "loc": Fn.cross_entropy(out["location"], locs[idx]),
            "heat": focal_loss(out["heat"][:, 0], tg["heat"][idx]),
            "size": Fn.l1_loss(out["size"].permute(0, 2, 3, 1)[reg], tg["size"][idx].permute(0, 2, 3, 1)[reg]) if reg.any() else out["size"].sum() * 0,
            "offset": Fn.l1_loss(out["offset"].permute(0, 2, 3, 1)[reg], tg["offset"][idx].permute(0, 2, 3, 1)[reg]) if reg.any() else out["offset"].sum() * 0,
            "mask": Fn.binary_cross_entropy_with_logits(out["mask"][:, 0], tg["mask"][idx]),
        }
        _optimise(opt, sched, losses, "scene", step, steps, t0)
    return net.eval()


# -- crops -----------------------------------------------------------------------------------


def supcon_loss(emb: torch.Tensor, labels: torch.Tensor, temperature: float = 0.1) -> torch.Tensor:
    """Supervised contrastive loss (Khosla et al. 2020): emb (B, E) normalised, labels (B,)."""
    sim = emb @ emb.T / temperature  # (B, B)
    eye = torch.eye(len(labels), dtype=torch.bool)
    sim = sim.masked_fill(eye, -1e9)
    pos = (labels[:, None] == labels[None, :]) & ~eye
    logp = sim - torch.logsumexp(sim, 1, keepdim=True)
    has = pos.any(1)
    return -((logp * pos).sum(1)[has] / pos.sum(1)[has]).mean()


def jitter_boxes(boxes: torch.Tensor, gen: torch.Generator, amount: float = 1.0) -> torch.Tensor:
    """Boxes (M, 4) moved and rescaled a little, like a detector's boxes."""
    w, h = boxes[:, 2] - boxes[:, 0], boxes[:, 3] - boxes[:, 1]
    r = lambda: torch.randn(boxes.shape[0], generator=gen) * amount  # noqa: E731
    cx = (boxes[:, 0] + boxes[:, 2]) / 2 + r() * 0.05 * w
    cy = (boxes[:, 1] + boxes[:, 3]) / 2 + r() * 0.03 * h
    w, h = w * torch.exp(r() * 0.08), h * torch.exp(r() * 0.05)
    return torch.stack([cx - w / 2, cy - h / 2, cx + w / 2, cy + h / 2], 1)


def _heads_loss(out: dict[str, torch.Tensor], table: dict[str, tuple[str, ...]], labels: torch.Tensor,
                weights: dict[str, float] | None = None) -> torch.Tensor:
    """Sum of the cross-entropies of the heads in ``table`` (times ``weights[name]``, default 1);
    labels (M, len(table)), -1 ignored (a head with no label in the batch, e.g. hat colour
    without hats, adds nothing)."""
    total = labels.new_zeros((), dtype=torch.float32)
    for j, name in enumerate(table):
        if (labels[:, j] >= 0).any():
            total = total + (weights or {}).get(name, 1.0) * Fn.cross_entropy(out[name], labels[:, j], ignore_index=-1)
    return total


def crop_heads() -> dict[str, int]:
    return {**{k: len(v) for k, v in ATTRIBUTES.items()}, **{k: len(v) for k, v in HIDDEN.items()}, "pose": len(POSES)}


@torch.no_grad()
def detector_boxes(scene: SceneNet, data: ProbeData, threshold: float, refine: BoxNet | None = None) -> np.ndarray:
    """(M, 4) the detection matching each ground-truth box best (IoU >= 0.5), NaN if none:
    the crop probe also trains on the boxes it will be given at inference (after ``refine``,
    the second stage, when given)."""
    out = np.full((data.box_frame.size, 4), np.nan, np.float32)
    for start in range(0, data.frames.shape[0], 64):
        idx = np.arange(start, min(start + 64, data.frames.shape[0]))
        x = _frames(data, idx)
        o = scene(x)
        dets = decode_boxes(o["heat"], o["size"], o["offset"], stride=scene.cfg.stride, threshold=threshold,
                            frame_hw=data.frames.shape[1:3])
        if refine is not None:
            index, flat, _ = flatten_detections(dets)
            moved = torch.split(refine.refine(x, index, flat), [len(b) for b, _ in dets])
            dets = [(b.numpy(), s) for b, (_, s) in zip(moved, dets)]
        for f, (boxes, _) in zip(idx, dets):
            sel = np.flatnonzero(data.box_frame == f)
            if sel.size and len(boxes):
                iou = box_iou(torch.from_numpy(data.box_xyxy[sel]), torch.from_numpy(boxes)).numpy()  # (K, D)
                best = iou.argmax(1)
                hit = iou[np.arange(sel.size), best] >= 0.5
                out[sel[hit]] = boxes[best[hit]]
    return out


def train_refine(data: ProbeData, det_xyxy: np.ndarray, *, steps: int, batch: int, lr: float, gen: torch.Generator,
                 min_area: int = 100, amp: bool = False) -> BoxNet:
    """The detector's second stage: :class:`BoxNet` learns to move a box onto its character's
    ground-truth box. Half of the boxes are the detector's (``det_xyxy``, where it found the
    character), the others ground truth jittered 1.5x as much as :func:`jitter_boxes` does for
    the crop probe, so the net also sees errors larger than the detector's usual ones. Crops are
    relit and degraded like the crop probe's. Loss: smooth L1 on the edge corrections."""
    net = BoxNet(BoxConfig()).to(memory_format=torch.channels_last)
    opt = torch.optim.AdamW(net.parameters(), lr=lr, weight_decay=1e-4)
    sched = _schedule(opt, steps, lr)
    usable = np.flatnonzero(data.box_area >= min_area)
    scale = net.cfg.crop_hw[0] / (52.0 * net.cfg.pad_h)  # crop pixels per frame pixel of a typical figure
    net.train()
    t0 = time.time()
    for step in range(steps):
        b = usable[torch.randint(0, usable.size, (batch,), generator=gen).numpy()]
        frames, inv = np.unique(data.box_frame[b], return_inverse=True)
        truth = torch.from_numpy(data.box_xyxy[b])
        boxes = jitter_boxes(truth, gen, amount=1.5)
        det = torch.from_numpy(det_xyxy[b])
        use = torch.isfinite(det[:, 0]) & (torch.rand(b.size, generator=gen) < 0.5)
        boxes[use] = det[use]
        index = torch.from_numpy(inv)
        x = net.context(_frames(data, frames), index, boxes)
        masks = net.context(torch.from_numpy(data.masks[frames])[:, None].float(), index, boxes)
        x = relight(x, masks[:, 0], torch.from_numpy(data.locations[data.box_frame[b]]), gen)
        x = augment(x, gen, scale=scale).contiguous(memory_format=torch.channels_last)
        with _autocast(amp):
            pred = net(x).float()
        losses = {"box": Fn.smooth_l1_loss(pred, refine_targets(boxes, truth), beta=0.02)}
        _optimise(opt, sched, losses, "refine", step, steps, t0)
    return net.eval()


def train_crop(data: ProbeData, *, steps: int, stories_per_batch: int, singles: int, lr: float, gen: torch.Generator,
               det_xyxy: np.ndarray | None = None, min_area: int = 100, amp: bool = False,
               attr_weights: dict[str, float] | None = None, cfg: dict | None = None, relight_p: float = 0.5,
               callback: Callable[[int, CropNet], None] | None = None, pose_weights: dict[str, float] | None = None) -> CropNet:
    """Batches of ``stories_per_batch`` (story, character) twin pairs, two views each (the
    positives and hard negatives of the contrastive loss), plus ``singles`` boxes of other
    characters: more distinct looks per batch for the attribute heads, and easy negatives.
    Half of the boxes are the detector's (``det_xyxy``, where it found the character), the
    others jittered ground truth; half of the frames are relit as another location.
    ``pose_weights`` (pose name -> weight, default 1) draws the single boxes of those poses
    more often (walking and waving figures are where body and hair style are misread)."""
    net = CropNet(CropConfig(heads=crop_heads(), **(cfg or {}))).to(memory_format=torch.channels_last)  # faster convolutions on CPU
    opt = torch.optim.AdamW(net.parameters(), lr=lr, weight_decay=1e-4)
    sched = _schedule(opt, steps, lr)
    ok = data.box_area >= min_area
    usable = np.flatnonzero(ok)
    order = usable[np.argsort(data.box_ident[usable], kind="stable")]
    by_ident = dict(enumerate(np.split(order, np.searchsorted(data.box_ident[order], np.arange(1, len(data.ident_char))))))
    twins: dict[tuple[int, str], list[int]] = {}
    for i, (s, c) in enumerate(zip(data.ident_story, data.ident_char)):
        if by_ident[i].size >= 2:
            twins.setdefault((int(s), c), []).append(i)
    groups = [g for g in twins.values() if len(g) >= 2]
    single_p = None
    if pose_weights:
        single_p = torch.tensor([pose_weights.get(POSES[k], 1.0) for k in data.box_pose[usable]], dtype=torch.float64)
    attr = torch.from_numpy(data.ident_attr)
    hid = torch.from_numpy(data.ident_hidden)
    pose = torch.from_numpy(data.box_pose)
    net.train()
    t0 = time.time()
    for step in range(steps):
        picks = torch.randperm(len(groups), generator=gen)[:stories_per_batch].tolist()
        bidx = []
        for g in picks:
            for ident in groups[g][:2]:
                cand = by_ident[ident]
                bidx.extend(cand[torch.randperm(cand.size, generator=gen)[:2].numpy()])
        if single_p is None:
            bidx.extend(usable[torch.randint(0, usable.size, (singles,), generator=gen).numpy()])
        else:
            bidx.extend(usable[torch.multinomial(single_p, singles, replacement=True, generator=gen).numpy()])
        b = np.asarray(bidx)
        frames, inv = np.unique(data.box_frame[b], return_inverse=True)
        boxes = jitter_boxes(torch.from_numpy(data.box_xyxy[b]), gen)
        if det_xyxy is not None:
            det = torch.from_numpy(det_xyxy[b])
            use = torch.isfinite(det[:, 0]) & (torch.rand(b.size, generator=gen) < 0.5)
            boxes[use] = det[use]
        # crop first, then relight the crops with their resampled person masks (a fraction of
        # the pixels of the whole frames); equal generator states give a box's crops the same
        # light and degradation
        index = torch.from_numpy(inv)
        crops = crop_boxes(_frames(data, frames), index, boxes, net.cfg)
        masks = crop_boxes(torch.from_numpy(data.masks[frames])[:, None].float(), index, boxes, net.cfg)
        locs = torch.from_numpy(data.locations[data.box_frame[b]])
        seeds = torch.randint(0, 2**62, (2,), generator=gen).tolist()
        same = lambda k: torch.Generator().manual_seed(seeds[k])  # noqa: E731
        lit = [relight(c, m[:, 0], locs, same(0), relight_p) for c, m in zip(crops, masks)]
        aug = [augment(c, same(1), scale=k).contiguous(memory_format=torch.channels_last) for c, k in zip(lit, crop_scales(net.cfg))]
        with _autocast(amp):
            out = _float(net(*aug))
        ident = torch.from_numpy(data.box_ident[b])
        losses = {"attr": _heads_loss(out, ATTRIBUTES, attr[ident], attr_weights), "hidden": 0.5 * _heads_loss(out, HIDDEN, hid[ident]),
                  "pose": 0.3 * Fn.cross_entropy(out["pose"], pose[b]),
                  "supcon": supcon_loss(out["embedding"], ident)}
        _optimise(opt, sched, losses, "crop", step, steps, t0)
        if callback is not None:
            callback(step, net)
    return net.eval()


# -- alignment --------------------------------------------------------------------------------


def frame_features(probes: StoryWorldProbes, data: ProbeData, gen: torch.Generator) -> np.ndarray:
    """(N, D) probe features of every frame, degraded with ``augment`` first (so the alignment
    model learns from what blurry video gives the probes)."""
    feats = []
    for i in range(0, data.frames.shape[0], 256):
        t = augment(torch.from_numpy(data.frames[i : i + 256]).permute(0, 3, 1, 2).float() / 255, gen)
        feats.append(probes.frame_features((t * 255 + 0.5).to(torch.uint8).permute(0, 2, 3, 1).numpy()))
    return np.concatenate(feats)


def train_align(feats: np.ndarray, clips: list[np.ndarray], prompts: list[str], stories: list[int], *, steps: int,
                batch: int, lr: float, gen: torch.Generator, whole_stories: int = 8) -> tuple[AlignNet, Tokenizer]:
    """CLIP's symmetric InfoNCE over batches of distinct prompts. feats (N, D) frame features,
    ``clips[i]`` the frame rows of clip i (time order), ``prompts[i]`` its prompt,
    ``stories[i]`` its story (-1: not used for whole-story batches). A batch holds every shot
    of ``whole_stories`` stories -- the same characters and place, different actions, who is
    on screen and camera: the negatives that teach a per-segment score to follow the prompt
    switches of one video -- filled up with random prompts. Each step pools a random, ordered
    subset of each clip's frames, so one frame or a whole shot both give in-distribution
    clip features."""
    tok = Tokenizer.build(prompts)
    dim = StoryWorldProbes.pool_clip(feats[:1]).shape[0]
    net = AlignNet(AlignConfig(vocab_size=len(tok), video_dim=dim))
    opt = torch.optim.AdamW(net.parameters(), lr=lr, weight_decay=1e-4)
    sched = _schedule(opt, steps, lr)
    uniq = sorted(set(prompts))
    pid = {p: i for i, p in enumerate(uniq)}
    clips_of: list[list[int]] = [[] for _ in uniq]
    for c, p in enumerate(prompts):
        clips_of[pid[p]].append(c)
    bags = [bag_inputs(tok, [p], net.cfg.bigram_buckets)[0] for p in uniq]
    by_story: dict[int, list[int]] = {}
    for c, st in enumerate(stories):
        if st >= 0:
            by_story.setdefault(st, []).append(pid[prompts[c]])
    story_keys = sorted(by_story)
    net.train()
    for step in range(steps):
        ps = []
        for k in torch.randperm(len(story_keys), generator=gen)[:whole_stories].tolist():
            ps.extend(p for p in dict.fromkeys(by_story[story_keys[k]]) if p not in ps)
        seen = set(ps)
        ps.extend(p for p in torch.randperm(len(uniq), generator=gen)[: 2 * batch].tolist() if p not in seen)
        ps = ps[:batch]
        video = []
        for p in ps:
            rows = clips[clips_of[p][int(torch.randint(len(clips_of[p]), (1,), generator=gen))]]
            k = int(torch.randint(1, len(rows) + 1, (1,), generator=gen))
            pick = np.sort(torch.randperm(len(rows), generator=gen)[:k].numpy())
            video.append(StoryWorldProbes.pool_clip(feats[rows[pick]]))
        ids = torch.cat([bags[p] for p in ps])
        offsets = torch.tensor(np.cumsum([0] + [len(bags[p]) for p in ps[:-1]]), dtype=torch.long)
        t = net.encode_text(ids, offsets)
        v = net.encode_video(torch.from_numpy(np.stack(video)))
        logits = net.scale.exp().clamp(max=100) * v @ t.T  # (B, B)
        target = torch.arange(len(ps))
        loss = (Fn.cross_entropy(logits, target) + Fn.cross_entropy(logits.T, target)) / 2
        opt.zero_grad(set_to_none=True)
        loss.backward()
        opt.step()
        sched.step()
        if step % 500 == 0 or step == steps - 1:
            log.info("align %d/%d loss=%.3f scale=%.1f", step, steps, loss.item(), net.scale.exp().item())
    return net.eval(), tok
