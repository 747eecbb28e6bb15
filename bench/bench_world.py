"""StoryWorld speed: render a 60 s story at 128x128 with and without ground-truth masks.

Usage: python bench/bench_world.py [--seconds 60] [--size 128]
Target: at least 500 frames/s at 128x128 on a 2-core CPU.
"""

from __future__ import annotations

import argparse
import tempfile
import time
from pathlib import Path

from longtake.plan.planner import plan
from longtake.script.schema import Story
from longtake.world.renderer import WorldRenderer
from longtake.world.truth import TruthWriter
from longtake.world.vocab import LOCATIONS

PROMPTS = ["Mia walks in from the left and sits down", "Leo walks in from the right and waves at Mia", "Mia stands and talks",
           "Leo jumps then drinks coffee", "Mia and Leo walk", "Ana waves then walks out to the right"]
CAMERAS = ["static", "pan_left", "zoom_in", "handheld", "truck_right", "orbit_left"]


def make_story(seconds: float, size: int) -> Story:
    chars = [{"id": "mia", "name": "Mia", "description": "a woman with short black hair, a red striped shirt and blue trousers"},
             {"id": "leo", "name": "Leo", "description": "a man with curly brown hair, a green checked jacket, black trousers and glasses"},
             {"id": "ana", "name": "Ana", "description": "a girl with blond hair in a ponytail, a yellow dotted dress and a cap"}]
    shots, scenes, n = [], [], int(seconds // 4)
    for i in range(n):
        shots.append({"prompt": PROMPTS[i % len(PROMPTS)], "characters": ["mia", "leo", "ana"], "duration": 4, "camera": CAMERAS[i % len(CAMERAS)],
                      "transition": "fade" if i % 3 == 0 else "cut"})
    locs = list(LOCATIONS)
    for j in range(0, n, 3):
        scenes.append({"location": locs[(j // 3) % len(locs)], "shots": shots[j:j + 3]})
    return Story.model_validate({"title": "bench", "seed": 1, "size": {"width": size, "height": size}, "characters": chars,
                                 "locations": [{"id": k} for k in locs], "scenes": scenes})


def run(story: Story, *, masks: bool, write: bool) -> tuple[int, float]:
    tl = plan(story)
    t = time.perf_counter()
    r = WorldRenderer(story)
    n = 0
    with tempfile.TemporaryDirectory() as tmp:
        w = TruthWriter(Path(tmp) / "truth", meta=r.meta(), masks=masks) if write else None
        for _chunk, frames, truths in r.render(tl, masks=masks):
            n += len(frames)
            if w:
                w.write(truths)
        if w:
            w.close()
    return n, time.perf_counter() - t


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--seconds", type=float, default=60)
    ap.add_argument("--size", type=int, default=128)
    args = ap.parse_args()
    story = make_story(args.seconds, args.size)
    rows = [("frames only (no masks kept)", dict(masks=False, write=False)),
            ("frames + masks in memory", dict(masks=True, write=False)),
            ("frames + truth files (jsonl + masks.npz)", dict(masks=True, write=True))]
    print(f"StoryWorld, {args.seconds:.0f} s story, {args.size}x{args.size}, 16 fps, 3 characters, cold caches per run")
    print(f"| {'mode':42s} | frames | wall s | frames/s |")
    print(f"|{'-' * 44}|--------|--------|----------|")
    for name, kw in rows:
        n, dt = run(story, **kw)
        print(f"| {name:42s} | {n:6d} | {dt:6.2f} | {n / dt:8.0f} |")


if __name__ == "__main__":
    main()
