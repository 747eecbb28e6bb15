"""Which part of the probes' detector boxes costs captioned-attribute accuracy.

On held-out StoryWorld ground truth (``sample_story(seed, 30, split="heldout")``, 3 variants,
3 frames per shot, clean frames), every clear character (>= 150 visible pixels, inside the
frame, not overlapping) is matched to its best detection (IoU >= 0.5) of the centre-net
detector *before* the box refiner. The crop net then reads the attributes from:

* the ground-truth box (the ceiling);
* the detector's box, and the same box after the probes' refiner (``BoxNet``) when they have one;
* the detector's box with one edge (left, top, right or bottom) replaced by the true edge, which
  says which edge's error costs what.

Also printed: match rate, median / 10th-percentile IoU and the median error of each edge in
box heights. One thread by default; about 3 minutes for 40 stories.

    python bench/bench_probe_boxes.py --stories 40
    python bench/bench_probe_boxes.py --probes FOLDER
"""

from __future__ import annotations

import argparse
import time

import numpy as np
import torch

from longtake.eval.probe_data import ATTRIBUTES, MIN_CLEAR_AREA, build_data
from longtake.eval.probe_eval import _iou
from longtake.eval.probes import StoryWorldProbes

EDGES = ("left", "top", "right", "bottom")


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--stories", type=int, default=40)
    ap.add_argument("--probes", default=None, help="probe folder (default: the shipped probes)")
    ap.add_argument("--threads", type=int, default=1)
    args = ap.parse_args()
    torch.set_num_threads(args.threads)
    t0 = time.time()
    data = build_data("heldout", range(args.stories), variants=3, frames_per_shot=3, rng_seed=1)
    probes = StoryWorldProbes.load(args.probes)
    refine, probes.refine = probes.refine, None  # the first stage's boxes
    x = torch.cat([probes._tensor(data.frames[s : s + 256])[0] for s in range(0, len(data.frames), 256)])
    index, boxes, _, _ = probes._detect(x, probes._scene(x))

    clear = np.flatnonzero(data.box_clear & (data.box_area >= MIN_CLEAR_AREA))
    match = np.full(clear.size, -1)
    for n, b in enumerate(clear):
        sel = np.flatnonzero(index.numpy() == data.box_frame[b])
        if sel.size:
            iou = _iou(data.box_xyxy[b][None], boxes.numpy()[sel])[0]
            if iou.max() >= 0.5:
                match[n] = sel[iou.argmax()]
    ok = match >= 0
    gt_rows, det = clear[ok], boxes[match[ok]]
    truth = torch.from_numpy(data.box_xyxy[gt_rows])
    frame = torch.from_numpy(data.box_frame[gt_rows])
    want = data.ident_attr[data.box_ident[gt_rows]]

    def accuracy(bx: torch.Tensor) -> list[float]:
        out = probes._crops(x, frame, bx)
        return [100 * float((out[k].argmax(-1).numpy()[want[:, j] >= 0] == want[want[:, j] >= 0, j]).mean())
                for j, k in enumerate(ATTRIBUTES)]

    def iou_of(bx: torch.Tensor) -> np.ndarray:
        return np.array([_iou(truth[i : i + 1].numpy(), bx[i : i + 1].numpy())[0, 0] for i in range(len(bx))])

    variants: dict[str, torch.Tensor] = {"ground truth": truth, "detector": det}
    if refine is not None:
        variants["detector + refiner"] = refine.refine(x, frame, det)
    for j, edge in enumerate(EDGES):
        b = det.clone()
        b[:, j] = truth[:, j]
        variants[f"detector, true {edge} edge"] = b

    height = (truth[:, 3] - truth[:, 1]).numpy()
    print(f"{args.stories} held-out stories x 3 variants, {len(data.frames)} frames, {clear.size} clear characters, "
          f"{100 * ok.mean():.1f}% matched by the first stage")
    print("| boxes | IoU median | IoU p10 | " + " | ".join(f"{e} err" for e in EDGES) + " | " + " | ".join(ATTRIBUTES) + " |")
    print("|---|" + "---:|" * (2 + len(EDGES) + len(ATTRIBUTES)))
    for name, bx in variants.items():
        iou = iou_of(bx)
        err = np.median(np.abs((bx - truth).numpy()) / height[:, None], 0)
        print(f"| {name} | {np.median(iou):.3f} | {np.percentile(iou, 10):.3f} | " + " | ".join(f"{100 * e:.1f}%" for e in err)
              + " | " + " | ".join(f"{a:.1f}" for a in accuracy(bx)) + " |")
    print(f"({time.time() - t0:.0f} s)")


if __name__ == "__main__":
    main()
