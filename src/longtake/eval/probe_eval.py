"""Held-out accuracy of the StoryWorld probes (the numbers in docs/probes.md).

Data: ``sample_story(seed, 30, split="heldout")`` for seeds 0..n-1 (held-out looks, held-out
story seeds), 3 frames per shot, each story in 3 seed variants (variant 0 = the story's own
seed; variants 1 and 2 are twins: same captions, other hidden details). Every probe is scored
on three versions of the same frames: ``clean`` ground truth, ``blurred`` (Gaussian blur
sigma 1 px, 2x down- and up-sampling, noise 2/255) and ``h264`` (an x264 yuv420p encode at CRF 23, x264's default; longtake writes CRF 18).

Protocols:

* **location**: top-1 over the 9 locations, every frame (fade-ins included).
* **detection**: a ground-truth character with >= 150 visible pixels is found when a
  detected box has IoU >= 0.5 with it (greedy matching); precision counts detections that
  match any character with >= 40 visible pixels.
* **attributes**: on *clear* characters (>= 150 px, off the frame border, not overlapping
  another character), the attributes of the matched detection (end to end); ``gt box``
  rows classify the ground-truth box instead.
* **identity**: a query box of a character, a gallery of 10 boxes: the same character in
  another frame (another shot when it has one), its 2 twins (same caption, different hidden
  details) and 7 other characters; top-1 by cosine similarity. ``twins only``: the same
  with just the positive and the 2 twins.
* **alignment**: a shot's frames against its chunk prompt and 9 prompts of shots of other
  stories; top-1. ``same story``: against the other prompts of the same story (up to 9).
"""

from __future__ import annotations

import io
import logging
import time
from typing import Any

import numpy as np

from longtake.eval.probe_data import ATTRIBUTES, HIDDEN, MIN_CLEAR_AREA, MIN_TARGET_AREA, ProbeData, build_data, degrade_fixed
from longtake.eval.probes import StoryWorldProbes

log = logging.getLogger(__name__)

CHUNK = 256


def h264_roundtrip(frames: np.ndarray, *, crf: int = 23, fps: int = 16) -> np.ndarray:
    """frames (N, H, W, 3) uint8 -> the same frames after an x264 encode/decode (yuv420p)."""
    import av

    buf = io.BytesIO()
    with av.open(buf, "w", format="mp4") as out:
        stream = out.add_stream("libx264", rate=fps)
        stream.width, stream.height = frames.shape[2], frames.shape[1]
        stream.pix_fmt = "yuv420p"
        stream.options = {"crf": str(crf), "preset": "medium"}
        for f in frames:
            for pkt in stream.encode(av.VideoFrame.from_ndarray(np.ascontiguousarray(f), format="rgb24")):
                out.mux(pkt)
        for pkt in stream.encode():
            out.mux(pkt)
    buf.seek(0)
    with av.open(buf) as inp:
        dec = np.stack([f.to_ndarray(format="rgb24") for f in inp.decode(video=0)])
    return dec


def _iou(a: np.ndarray, b: np.ndarray) -> np.ndarray:
    """a (K, 4), b (L, 4) -> (K, L) IoU."""
    ix = np.clip(np.minimum(a[:, None, 2], b[None, :, 2]) - np.maximum(a[:, None, 0], b[None, :, 0]), 0, None)
    iy = np.clip(np.minimum(a[:, None, 3], b[None, :, 3]) - np.maximum(a[:, None, 1], b[None, :, 1]), 0, None)
    inter = ix * iy
    area = lambda r: (r[:, 2] - r[:, 0]) * (r[:, 3] - r[:, 1])  # noqa: E731
    return inter / np.maximum(area(a)[:, None] + area(b)[None, :] - inter, 1e-6)


def _detection_and_attributes(probes: StoryWorldProbes, data: ProbeData, frames: np.ndarray) -> dict[str, Any]:
    inst = [i for s in range(0, len(frames), CHUNK) for i in probes.instances(frames[s : s + CHUNK])]
    found = total = tp = npred = 0
    correct = {k: [0, 0] for k in ATTRIBUTES}
    no_hat = [0, 0]  # hair style of characters without a hat (a hat hides a bun or curls)
    for f, dets in enumerate(inst):
        sel = np.flatnonzero((data.box_frame == f) & (data.box_area >= MIN_TARGET_AREA))
        pred = np.asarray([d.box for d in dets], np.float32).reshape(-1, 4)
        npred += len(dets)
        if sel.size == 0:
            continue
        iou = _iou(data.box_xyxy[sel], pred) if len(dets) else np.zeros((sel.size, 0))
        match = -np.ones(sel.size, int)
        used: set[int] = set()
        for g, p in sorted(((g, p) for g in range(sel.size) for p in range(pred.shape[0]) if iou[g, p] >= 0.5), key=lambda gp: -iou[gp]):
            if match[g] < 0 and p not in used:
                match[g] = p
                used.add(p)
        tp += len(used)
        for g, b in enumerate(sel):
            if data.box_area[b] < MIN_CLEAR_AREA:
                continue
            total += 1
            found += match[g] >= 0
            if match[g] >= 0 and data.box_clear[b]:
                attrs = dets[match[g]].attributes
                for j, k in enumerate(ATTRIBUTES):
                    want = data.ident_attr[data.box_ident[b], j]
                    if want >= 0:
                        correct[k][0] += attrs.get(k) == ATTRIBUTES[k][want]
                        correct[k][1] += 1
                if data.ident_attr[data.box_ident[b], list(ATTRIBUTES).index("hat")] == 0:
                    no_hat[0] += attrs.get("hair_style") == ATTRIBUTES["hair_style"][data.ident_attr[data.box_ident[b], 2]]
                    no_hat[1] += 1
    return {"detection_recall": found / max(total, 1), "detection_precision": tp / max(npred, 1),
            "attributes": {k: c / max(n, 1) for k, (c, n) in correct.items()}, "hair_style_no_hat": no_hat[0] / max(no_hat[1], 1)}


def _gt_box_heads(probes: StoryWorldProbes, data: ProbeData, frames: np.ndarray, boxes: np.ndarray) -> dict[str, Any]:
    """Attribute and hidden-detail accuracy of the crop probe on the clear ground-truth boxes."""
    import torch

    x = torch.cat([probes._tensor(frames[s : s + CHUNK])[0] for s in range(0, len(frames), CHUNK)])
    out = probes._crops(x, torch.from_numpy(data.box_frame[boxes]), torch.from_numpy(data.box_xyxy[boxes]))
    res: dict[str, Any] = {"attributes": {}, "hidden": {}}
    for table, labels, key in ((ATTRIBUTES, data.ident_attr, "attributes"), (HIDDEN, data.ident_hidden, "hidden")):
        for j, k in enumerate(table):
            want = labels[data.box_ident[boxes], j]
            ok = want >= 0
            res[key][k] = float((out[k].argmax(-1).numpy()[ok] == want[ok]).mean()) if ok.any() else float("nan")
    return res | {"embedding": out["identity"].numpy()}


def _reid(data: ProbeData, boxes: np.ndarray, emb: np.ndarray, rng: np.random.Generator, queries_per_ident: int = 3) -> dict[str, float]:
    ident = data.box_ident[boxes]
    rows: dict[int, np.ndarray] = {i: np.flatnonzero(ident == i) for i in np.unique(ident)}
    twin_of: dict[tuple[int, str], dict[int, int]] = {}
    for i in rows:
        twin_of.setdefault((int(data.ident_story[i]), data.ident_char[i]), {})[int(data.ident_variant[i])] = i
    hits = hard = n = 0
    pos_sims: list[float] = []
    twin_sims: list[float] = []
    for (story, _), variants in twin_of.items():
        if 0 not in variants or len(variants) < 3 or rows[variants[0]].size < 2:
            continue
        me = variants[0]
        twins = [variants[v] for v in variants if v != 0][:2]
        others = [i for i in rows if data.ident_story[i] != story]
        for _ in range(queries_per_ident):
            q, p = rng.choice(rows[me], 2, replace=False)
            shots = data.frame_clip[data.box_frame[boxes[rows[me]]]]
            far = rows[me][shots != data.frame_clip[data.box_frame[boxes[q]]]]  # another shot when possible
            if far.size:
                p = rng.choice(far)
            tw = [rng.choice(rows[t]) for t in twins]
            ot = [rng.choice(rows[o]) for o in rng.choice(others, 7, replace=False)]
            sims = emb[[p, *tw, *ot]] @ emb[q]
            pos_sims.append(float(sims[0]))
            twin_sims.extend(float(v) for v in sims[1:3])
            hits += int(np.argmax(sims) == 0)
            hard += int(np.argmax(sims[:3]) == 0)
            n += 1
    q = lambda v, p: float(np.percentile(v, p)) if v else float("nan")  # noqa: E731
    return {"reid_top1": hits / max(n, 1), "reid_twins_top1": hard / max(n, 1), "reid_queries": n,
            "cosine_same_p5": q(pos_sims, 5), "cosine_same_median": q(pos_sims, 50),
            "cosine_twin_median": q(twin_sims, 50), "cosine_twin_p95": q(twin_sims, 95)}


def _alignment(probes: StoryWorldProbes, data: ProbeData, frames: np.ndarray, rng: np.random.Generator) -> dict[str, float]:
    variant0 = [c for c in range(len(data.clip_prompt)) if data.clip_variant[c] == 0]
    hits = same = n_same = 0
    for c in variant0:
        others = [o for o in variant0 if data.clip_story[o] != data.clip_story[c]]
        texts = [data.clip_prompt[c], *(data.clip_prompt[o] for o in rng.choice(others, 9, replace=False))]
        scores = probes.alignment(frames[data.clip_frames[c]], texts)
        hits += int(np.argmax(scores) == 0)
        mine = sorted({data.clip_prompt[o] for o in variant0 if data.clip_story[o] == data.clip_story[c]} - {data.clip_prompt[c]})
        if mine:
            pick = [mine[i] for i in rng.permutation(len(mine))[:9]]
            s2 = probes.alignment(frames[data.clip_frames[c]], [data.clip_prompt[c], *pick])
            same += int(np.argmax(s2) == 0)
            n_same += 1
    return {"align_top1": hits / max(len(variant0), 1), "align_same_story_top1": same / max(n_same, 1), "align_clips": len(variant0)}


def evaluate(probes: StoryWorldProbes, *, stories: int = 80, seed: int = 0) -> dict[str, Any]:
    """Score ``probes`` on held-out ground truth under the clean, blurred and h264 conditions."""
    t0 = time.time()
    data = build_data("heldout", range(stories), variants=3, frames_per_shot=3, rng_seed=seed + 1)
    log.info("held-out data: %d frames, %d boxes, %.0fs", data.frames.shape[0], data.box_frame.size, time.time() - t0)
    clear = np.flatnonzero(data.box_clear)
    metrics: dict[str, Any] = {"heldout_stories": stories, "frames": int(data.frames.shape[0]), "clear_boxes": int(clear.size)}
    conditions = {"clean": data.frames, "blurred": degrade_fixed(data.frames, seed=seed), "h264": h264_roundtrip(data.frames)}
    for name, frames in conditions.items():
        t = time.time()
        rng = np.random.default_rng(seed)
        probs = np.concatenate([probes.location_probs(frames[s : s + CHUNK]) for s in range(0, len(frames), CHUNK)])
        m: dict[str, Any] = {"location": float((probs.argmax(1) == data.locations).mean()),
                             "location_no_fade": float((probs.argmax(1) == data.locations)[data.fades >= 0.5].mean())}
        m |= _detection_and_attributes(probes, data, frames)
        gt = _gt_box_heads(probes, data, frames, clear)
        m["attributes_gt_box"], m["hidden_gt_box"] = gt["attributes"], gt["hidden"]
        m |= _reid(data, clear, gt["embedding"], rng)
        if probes.align is not None:
            m |= _alignment(probes, data, frames, rng)
        metrics[name] = m
        log.info("%s evaluated in %.0fs", name, time.time() - t)
    metrics["speed"] = _speed(probes, data.frames[:256])
    return metrics


def _speed(probes: StoryWorldProbes, frames: np.ndarray) -> dict[str, float]:
    """Frames per second of the probes on this process's threads (128x128 frames)."""
    out = {}
    for name, fn in (("locations_fps", probes.location_probs), ("instances_fps", probes.instances)):
        fn(frames[:16])
        t = time.perf_counter()
        fn(frames)
        out[name] = round(len(frames) / (time.perf_counter() - t), 1)
    return out


def format_table(metrics: dict[str, Any]) -> str:
    """A Markdown table: one row per probe metric, one column per condition."""
    conds = [c for c in ("clean", "blurred", "h264") if c in metrics]
    rows: list[tuple[str, list[float]]] = []
    first = metrics[conds[0]]
    for key in ("location", "location_no_fade", "detection_recall", "detection_precision"):
        rows.append((key, [metrics[c][key] for c in conds]))
    for group in ("attributes", "attributes_gt_box", "hidden_gt_box"):
        for k in first[group]:
            rows.append((f"{group}.{k}", [metrics[c][group][k] for c in conds]))
    for key in ("hair_style_no_hat", "reid_top1", "reid_twins_top1", "align_top1", "align_same_story_top1"):
        if key in first:
            rows.append((key, [metrics[c][key] for c in conds]))
    lines = ["| probe | " + " | ".join(conds) + " |", "|---|" + "---|" * len(conds)]
    lines += [f"| {k} | " + " | ".join(f"{100 * v:.1f}" for v in vals) + " |" for k, vals in rows]
    return "\n".join(lines)
