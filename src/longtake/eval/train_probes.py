"""Train the StoryWorld probes on StoryWorld ground truth and score them on held-out stories.

    python -m longtake.eval.train_probes --out src/longtake/assets/probes

Trains, on one CPU thread: :class:`SceneNet` (location, person mask, character centres),
then :class:`BoxNet` (the detector's second stage, which refines its boxes), then
:class:`CropNet` (attributes, hidden details, pose, identity embedding), then
:class:`AlignNet` on the pooled features of the two others. Training frames come from
``sample_story(seed, 30, split="train")`` in two seed variants (twins with the same captions
and different hidden details), with random blur / resampling / noise / colour jitter so the
probes hold on blurry generated video. The held-out report (clean, blurred and H.264 frames)
is written to ``metrics.json`` next to the weights and logged as a table.
"""

from __future__ import annotations

import argparse
import json
import logging
import sys
import time
from collections.abc import Callable
from pathlib import Path

import numpy as np
import torch

from longtake.atomic import write_text_atomic
from longtake.eval.errors import EvalError
from longtake.eval.probe_data import ATTRIBUTES, POSES, ProbeData, build_data
from longtake.eval.probe_models import CropNet, SceneNet
from longtake.eval.probe_training import (CLIP_SEED0, THRESHOLD, detector_boxes, frame_features, train_align, train_crop,
                                          train_refine, train_scene)
from longtake.eval.probes import StoryWorldProbes
from longtake.generate.causal import resolve_autocast

log = logging.getLogger("longtake.eval.train_probes")


# -- main ------------------------------------------------------------------------------------


def main(argv: list[str] | None = None) -> None:
    ap = argparse.ArgumentParser(prog="python -m longtake.eval.train_probes", description=__doc__.split("\n\n")[0])
    ap.add_argument("--out", required=True, help="folder for probes.safetensors, probes.json and metrics.json")
    ap.add_argument("--train-stories", type=int, default=2400)
    ap.add_argument("--clip-stories", type=int, default=300)
    ap.add_argument("--heldout-stories", type=int, default=80)
    ap.add_argument("--scene-steps", type=int, default=500)
    ap.add_argument("--refine-steps", type=int, default=3000, help="steps of the box refiner (0: no second stage)")
    ap.add_argument("--crop-steps", type=int, default=2700)
    ap.add_argument("--align-steps", type=int, default=2500)
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--threads", type=int, default=1)
    ap.add_argument("--precision", choices=("auto", "float32", "bfloat16"), default="auto",
                    help="bfloat16 autocast in training; auto: where the CPU computes bf16 natively")
    ap.add_argument("--torso", type=int, nargs=2, metavar=("H", "W"), default=None,
                    help="add a magnified torso crop of H x W to the crop net (body shape, collar, pattern)")
    ap.add_argument("--coords", action="store_true", help="crop net reads pixel coordinates too (CoordConv)")
    ap.add_argument("--attr-weight", action="append", default=[], metavar="NAME=W",
                    help="loss weight of one captioned attribute (default 1), e.g. body=2; repeatable")
    ap.add_argument("--pose-weight", action="append", default=[], metavar="POSE=W",
                    help="draw single crop boxes of this pose W times as often (default 1), e.g. walk=2; repeatable")
    ap.add_argument("--watch", type=int, default=0, metavar="N",
                    help="log held-out attribute accuracy (ground-truth boxes, 30 stories disjoint from the report's) every N crop steps")
    ap.add_argument("--skip-eval", action="store_true")
    ap.add_argument("--eval-only", action="store_true", help="only score the probes already in --out (rewrites metrics.json)")
    ap.add_argument("--refine-only", action="store_true",
                    help="train only the box refiner for the probes already in --out (on the training data a full run "
                         "builds), save it with them and score them")
    args = ap.parse_args(argv)
    try:
        attr_weights = _attr_weights(args.attr_weight)
        pose_weights = _weights(args.pose_weight, POSES, "--pose-weight", "POSE")
    except ValueError as e:
        ap.error(str(e))
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(message)s", datefmt="%H:%M:%S")
    torch.set_num_threads(args.threads)
    torch.manual_seed(args.seed)
    gen = torch.Generator().manual_seed(args.seed)
    if args.eval_only and args.refine_only:
        ap.error("--eval-only and --refine-only exclude each other")
    if args.refine_only and args.refine_steps <= 0:
        ap.error("--refine-only needs --refine-steps > 0")
    if args.eval_only or args.refine_only:
        try:
            probes = StoryWorldProbes.load(args.out)
        except EvalError as e:
            ap.error(str(e))
        if args.refine_only:
            _refine_existing(probes, args, argv)
            if args.skip_eval:
                return
        _evaluate(probes, Path(args.out), args.heldout_stories, probes.meta.get("train_wall_s"))
        return
    t0 = time.time()
    data = _crop_data(args)
    # fewer, longer stories with several frames per shot: the (clip, prompt) pairs
    clips = build_data("train", range(CLIP_SEED0, CLIP_SEED0 + args.clip_stories), duration=30.0, variants=1,
                       frames_per_shot=4, rng_seed=args.seed + 1)
    log.info("train data: %d + %d frames, %d boxes, %d identities, %d clips, %.0fs", data.frames.shape[0], clips.frames.shape[0],
             data.box_frame.size, len(data.ident_char), len(clips.clip_prompt), time.time() - t0)
    t = time.time()
    amp = resolve_autocast(args.precision, "cpu") is not None
    scene = train_scene([data, clips], steps=args.scene_steps, batch=32, lr=3e-3, gen=gen, amp=amp)
    t_scene = time.time() - t
    t = time.time()
    det = detector_boxes(scene, data, THRESHOLD)
    log.info("detector found %.1f%% of the training boxes", 100 * np.isfinite(det[:, 0]).mean())
    refine = None
    if args.refine_steps > 0:
        refine = train_refine(data, det, steps=args.refine_steps, batch=128, lr=2e-3, gen=gen, amp=amp)
        det = detector_boxes(scene, data, THRESHOLD, refine)
        log.info("with the refined boxes the detector found %.1f%% of the training boxes", 100 * np.isfinite(det[:, 0]).mean())
    t_refine = time.time() - t
    t = time.time()
    crop_cfg = {"coords": args.coords} | ({"torso_hw": tuple(args.torso)} if args.torso else {})
    crop = train_crop(data, steps=args.crop_steps, stories_per_batch=12, singles=48, lr=3e-3, gen=gen, det_xyxy=det,
                      amp=amp, attr_weights=attr_weights, cfg=crop_cfg, pose_weights=pose_weights,
                      callback=_watcher(args.watch, args.crop_steps, scene) if args.watch else None)
    t_crop = time.time() - t
    t = time.time()
    probes = StoryWorldProbes(scene, crop, threshold=THRESHOLD, refine=refine)
    # pairs from both sets: the one-frame clips of the many short stories add looks, the
    # four-frame clips of the longer ones add time (motion, trend)
    feats = np.concatenate([frame_features(probes, clips, gen), frame_features(probes, data, gen)])
    rows = [*clips.clip_frames, *(c + clips.frames.shape[0] for c in data.clip_frames)]
    stories = [*clips.clip_story.tolist(), *([-1] * len(data.clip_prompt))]
    probes.align, probes.tokenizer = train_align(feats, rows, [*clips.clip_prompt, *data.clip_prompt], stories,
                                                 steps=args.align_steps, batch=128, lr=2e-3, gen=gen)
    t_align = time.time() - t
    wall = time.time() - t0
    log.info("trained in %.0fs (scene %.0fs, refine %.0fs, crop %.0fs, align %.0fs)", wall, t_scene, t_refine, t_crop, t_align)
    meta = {"command": "python -m longtake.eval.train_probes " + " ".join(sys.argv[1:] if argv is None else argv), "args": vars(args),
            "train_wall_s": round(wall, 1), "threads": args.threads,
            "stage_wall_s": {"scene": round(t_scene, 1), "refine": round(t_refine, 1), "crop": round(t_crop, 1), "align": round(t_align, 1)},
            "train_data": {"frames": int(data.frames.shape[0] + clips.frames.shape[0]), "boxes": int(data.box_frame.size),
                           "identities": len(data.ident_char), "clips": len(clips.clip_prompt)}}
    probes.save(args.out, meta=meta)
    del data, clips
    if not args.skip_eval:
        _evaluate(probes, Path(args.out), args.heldout_stories, round(wall, 1))


def _weights(items: list[str], names, option: str, what: str) -> dict[str, float]:
    """``["a=2", ...]`` -> {"a": 2.0}; ValueError for a name not in ``names`` or a bad number."""
    out = {}
    for item in items:
        name, _, value = item.partition("=")
        try:
            w = float(value)
        except ValueError:
            w = -1.0
        if name not in names or w < 0:
            raise ValueError(f"{option} {item!r}: expected {what}=W with {what} one of {', '.join(names)} and W >= 0")
        out[name] = w
    return out


def _crop_data(args: argparse.Namespace) -> ProbeData:
    """The training frames of the scene, refine and crop stages: many short stories, so
    thousands of distinct looks the crop probe cannot memorise."""
    return build_data("train", range(args.train_stories), duration=16.0, variants=2, frames_per_shot=1,
                      rng_seed=args.seed, num_characters=(2, 4))


def _refine_existing(probes: StoryWorldProbes, args: argparse.Namespace, argv: list[str] | None) -> None:
    """``--refine-only``: a box refiner for trained probes, on the data a full run would use."""
    gen = torch.Generator().manual_seed(args.seed + 2)
    t0 = time.time()
    data = _crop_data(args)
    det = detector_boxes(probes.scene, data, probes.threshold)
    amp = resolve_autocast(args.precision, "cpu") is not None
    probes.refine = train_refine(data, det, steps=args.refine_steps, batch=128, lr=2e-3, gen=gen, amp=amp)
    wall = round(time.time() - t0, 1)
    log.info("refiner trained in %.0fs", wall)
    command = "python -m longtake.eval.train_probes " + " ".join(sys.argv[1:] if argv is None else argv)
    probes.save(args.out, meta={"refine": {"command": command, "train_wall_s": wall, "threads": args.threads}})


def _attr_weights(items: list[str]) -> dict[str, float]:
    """``["body=2", ...]`` -> {"body": 2.0}; ValueError for an unknown attribute or a bad number."""
    return _weights(items, tuple(ATTRIBUTES), "--attr-weight", "NAME")


def _watcher(every: int, steps: int, scene: SceneNet) -> Callable[[int, CropNet], None]:
    """A train_crop callback logging the held-out attribute accuracy on ground-truth boxes
    (clean frames of held-out seeds 500-529, not those of the report) every ``every`` steps,
    scored as the report scores its ground-truth-box rows (``probe_eval._gt_box_heads``)."""
    from longtake.eval.probe_eval import _gt_box_heads

    held = build_data("heldout", range(500, 530), variants=1, frames_per_shot=3, rng_seed=7)
    clear = np.flatnonzero(held.box_clear)

    @torch.no_grad()
    def watch(step: int, net: CropNet) -> None:
        if (step + 1) % every and step != steps - 1:
            return
        acc = _gt_box_heads(StoryWorldProbes(scene, net), held, held.frames, clear)["attributes"]  # puts net in eval mode
        net.train()
        log.info("watch %d/%d held-out attributes (gt boxes, %d): %s", step + 1, steps, clear.size,
                 " ".join(f"{k}={100 * v:.1f}" for k, v in acc.items()))

    return watch


def _evaluate(probes: StoryWorldProbes, out: Path, stories: int, train_wall_s: float | None) -> None:
    from longtake.eval.probe_eval import evaluate, format_table

    metrics = evaluate(probes, stories=stories)
    metrics["train_wall_s"] = train_wall_s
    write_text_atomic(out / "metrics.json", json.dumps(metrics, indent=1) + "\n")
    log.info("held-out accuracy\n%s", format_table(metrics))


if __name__ == "__main__":
    main()
