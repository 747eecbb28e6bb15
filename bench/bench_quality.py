"""Quality of the built-in model on held-out StoryWorld stories, judged by the StoryWorld probes.

Per chunk of each held-out story (split "heldout": its looks never appear in training):
  location    the probes' location (majority over 3 frames of the chunk) equals the one
              the script's location is drawn as;
  attributes  for every character the ground-truth renderer shows at the chunk's middle
              frame, the fraction of its captioned attributes (parsed from the script's
              description) found on the best-matching instance the probes detect in the
              model's frame (``longtake.eval.probes.match_attributes``).
The same numbers on the ground-truth frames are the ceiling the probes allow. With
``--long SECONDS`` one longer held-out story is rendered and minute 1 is compared with
minute 9 (collapse check). Probes are trained on ground-truth frames only (docs/probes.md).

    python bench/bench_quality.py --stories 6 --duration 60 --long 600
"""

from __future__ import annotations

import argparse
import json
import sys
import time
from pathlib import Path

import numpy as np


MIN_AREA = 200  # px: a character cut by the frame edge to less than this is not judged


def visible_ids(truth) -> list[str]:
    out = []
    for c in truth.characters:
        if c.visible and c.bbox is not None and (c.bbox[2] - c.bbox[0]) * (c.bbox[3] - c.bbox[1]) >= MIN_AREA:
            out.append(c.id)
    return out


def judge(probes, frames, truths, described: dict) -> tuple[bool, list[str], list]:
    """One chunk's frames (N, H, W, 3): is the location the probes read (majority over 3
    frames) the script's; the characters to judge at the middle frame (visible, described);
    and the instances the probes detect there (none are looked for without characters)."""
    n = len(frames)
    mid = n // 2
    locs = probes.locations(frames[[n // 4, mid, (3 * n) // 4]])
    ids = [cid for cid in visible_ids(truths[mid]) if cid in described]
    inst = probes.instances(frames[mid : mid + 1])[0] if ids else []
    return max(set(locs), key=locs.count) == truths[mid].location_kind, ids, inst


def run_story(story, generator, probes, seed: int, *, decoys: list | None = None) -> dict:
    """Render ``story`` with ``generator`` and score each chunk. ``decoys``: parsed captions of
    characters of *another* held-out story; matching the model's frames against them gives the
    chance level of the attribute score (same attribute distribution, wrong characters)."""
    from longtake.eval.probes import match_attributes
    from longtake.plan import plan
    from longtake.world.parse import parse_appearance
    from longtake.world.renderer import WorldRenderer

    timeline = plan(story, frames_per_chunk=generator.frames_per_chunk, first_chunk_frames=generator.first_chunk_frames)
    renderer = WorldRenderer(story)
    described = {c.id: parse_appearance(c.description) for c in story.characters}
    rows = []
    t0 = time.perf_counter()
    for fc in generator.stream(timeline, seed=seed):
        chunk = fc.chunk
        gt, truths = renderer.render_chunk(chunk, masks=False)
        row = {"chunk": chunk.index, "t": chunk.start_frame / timeline.fps}
        for name, frames in (("model", fc.frames), ("truth", gt)):
            row[f"{name}_loc"], ids, inst = judge(probes, frames, truths, described)
            if ids:
                row[f"{name}_attr"] = [match_attributes(described[cid], inst) for cid in ids]
                if decoys:
                    row[f"{name}_chance_attr"] = [match_attributes(decoys[k % len(decoys)], inst) for k in range(len(ids))]
            else:
                row[f"{name}_attr"] = []
            row.setdefault(f"{name}_chance_attr", [])
        rows.append(row)
    wall = time.perf_counter() - t0
    return {"title": story.title, "chunks": len(rows), "wall_s": wall, "video_s": timeline.num_frames / timeline.fps, "rows": rows}


def summarise(rows: list[dict], who: str) -> tuple[float, float, int]:
    locs = [r[f"{who}_loc"] for r in rows if f"{who}_loc" in r]
    loc = 100.0 * float(np.mean(locs)) if locs else float("nan")
    attrs = [a for r in rows for a in r[f"{who}_attr"]]
    return loc, (100.0 * float(np.mean(attrs)) if attrs else float("nan")), len(attrs)


def story_interval(results: list[dict], who: str, *, resamples: int = 2000, seed: int = 0) -> tuple[tuple[float, float] | None, tuple[float, float] | None]:
    """95% percentile-bootstrap intervals (in %) of the location and attribute scores of
    ``who``, resampling whole stories (chunks and characters of one story are not independent
    cases: one story that loses its place moves 40 chunks). None with fewer than 2 stories."""
    if len(results) < 2:
        return None, None
    rng = np.random.default_rng(seed)
    per = []
    for res in results:
        locs = [r[f"{who}_loc"] for r in res["rows"] if f"{who}_loc" in r]
        attrs = [a for r in res["rows"] for a in r[f"{who}_attr"]]
        per.append((float(np.sum(locs)), len(locs), float(np.sum(attrs)), len(attrs)))
    arr = np.asarray(per)  # (stories, 4)
    picks = arr[rng.integers(0, len(arr), size=(resamples, len(arr)))].sum(axis=1)  # (resamples, 4)
    out = []
    for num, den in ((0, 1), (2, 3)):
        ok = picks[:, den] > 0
        if not ok.any():
            out.append(None)
            continue
        lo, hi = np.percentile(100.0 * picks[ok, num] / picks[ok, den], [2.5, 97.5])
        out.append((float(lo), float(hi)))
    return out[0], out[1]


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--weights", default=None, help="built-in model folder (default: the shipped weights)")
    ap.add_argument("--stories", type=int, default=6)
    ap.add_argument("--duration", type=float, default=60.0)
    ap.add_argument("--long", type=float, default=0.0, help="also render one held-out story this long (s) for minute 1 vs 9")
    ap.add_argument("--seed", type=int, default=1000)
    ap.add_argument("--steps", type=int, default=None, help="denoising steps (default: the model's)")
    ap.add_argument("--shift", type=float, default=None, help="flow shift of the schedule (default: the model's sigmas)")
    ap.add_argument("--sampler", default=None, help="few_step, euler or heun (default: the model's)")
    ap.add_argument("--precision", default="auto", help="auto, float32 or bfloat16")
    ap.add_argument("--guidance", type=float, default=None, help="guidance scale on shot starts (default: the model's)")
    ap.add_argument("--memory", default=None, help="memory mode (docs/memory.md; default: longtake render's, entity since session 18)")
    ap.add_argument("--no-scene-sink", action="store_true", help="keep the cache at a cut to another place (the behaviour before session 9)")
    ap.add_argument("--no-layout", action="store_true",
                    help="a layout model rendered without placing anyone (an empty layout prior): what the layout input adds")
    ap.add_argument("--no-sprites", action="store_true", help="render without the folder's figure layer (model/sprites.py): the DiT's own figures")
    ap.add_argument("--json", type=Path, default=None)
    args = ap.parse_args(argv)

    from longtake.eval.probes import StoryWorldProbes
    from longtake.generate.builtin import builtin_generator
    from longtake.world.sampler import sample_story

    probes = StoryWorldProbes.load()
    from longtake.memory import MemoryConfig
    from longtake.memory.config import DEFAULT_MODE, MEMORY_MODES

    if args.memory is not None and args.memory not in MEMORY_MODES:
        ap.error(f"--memory: unknown mode {args.memory!r}; expected one of {', '.join(MEMORY_MODES)}")
    memory = MemoryConfig(mode=args.memory or DEFAULT_MODE, scene_sink=False if args.no_scene_sink else None)
    gen = builtin_generator(args.weights, steps=args.steps, shift=args.shift, sampler=args.sampler, precision=args.precision,
                            guidance=args.guidance, memory=memory, sprites=not args.no_sprites)
    if args.no_layout:
        from longtake.model.layout import LayoutPrior

        if gen.layout_prior is None:
            ap.error("--no-layout: this model has no layout input")
        gen.layout_prior = LayoutPrior({})  # every box empty: the layout map is zero
    from longtake.world.parse import parse_appearance

    results = []
    for i in range(args.stories):
        story = sample_story(args.seed + i, args.duration, split="heldout")
        other = sample_story(args.seed + 500 + i, 10.0, split="heldout")
        decoys = [parse_appearance(c.description) for c in other.characters]
        res = run_story(story, gen, probes, seed=i, decoys=decoys)
        results.append(res)
        m = summarise(res["rows"], "model")
        print(f"story {i}: {res['chunks']} chunks, location {m[0]:.1f}%, attributes {m[1]:.1f}% ({res['wall_s']:.0f} s)", file=sys.stderr, flush=True)
    rows = [r for res in results for r in res["rows"]]
    table = [("| video | stories | chunks | location right [95%] | attributes right (pairs) [95%] |"), "|---|---|---|---|---|"]
    band = lambda ci: "" if ci is None else f" [{ci[0]:.1f}-{ci[1]:.1f}]"  # noqa: E731
    for who, label in (("model", "built-in model"), ("truth", "ground truth (probe ceiling)"),
                       ("model_chance", "model frames vs another story's captions (chance)")):
        loc, attr, pairs = summarise(rows, who)
        loc_ci, attr_ci = story_interval(results, who)
        loc_s = "n/a" if loc != loc else f"{loc:.1f}%{band(loc_ci)}"
        table.append(f"| {label} | {len(results)} | {len(rows)} | {loc_s} | {attr:.1f}% ({pairs}){band(attr_ci)} |")
    table.append("")
    table.append("[95%]: percentile bootstrap over stories (2 000 resamples, seed 0); chunks of one story are not independent.")
    out = {"stories": args.stories, "duration": args.duration, "summary": table}
    if args.long > 0:
        story = sample_story(args.seed + 999, args.long, split="heldout")
        res = run_story(story, gen, probes, seed=999)
        table += ["", "| long story | window | chunks | location right | attributes right (pairs) |", "|---|---|---|---|---|"]
        for lo, hi in ((0, 60), (480, 540)):
            sel = [r for r in res["rows"] if lo <= r["t"] < hi]
            for who in ("model", "truth"):
                loc, attr, pairs = summarise(sel, who)
                table.append(f"| {who} ({args.long:.0f} s) | minute {lo // 60 + 1} | {len(sel)} | {loc:.1f}% | {attr:.1f}% ({pairs}) |")
        out["long"] = {"video_s": res["video_s"], "wall_s": res["wall_s"]}
    print("\n".join(table))
    if args.json:
        args.json.write_text(json.dumps(out | {"results": results}, indent=1, default=str))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
