"""Speed of ``longtake eval``'s weight-free metrics: frames per second, each metric alone and all together.

The frames are a StoryWorld render of ``examples/office_day.yaml`` (camera moves, cuts,
fades) at the chosen size, held in memory; "all (stream)" is the whole streaming pass of
:class:`~longtake.eval.metrics_stream.MetricStream` plus the summaries, and "all + decode"
is :func:`~longtake.eval.run.evaluate_video` on the same frames written as H.264 (decode
included, no script, no probes). Each number is the median of ``--repeats`` runs. The target
(issue 6) is at least 60 frames/s at 128x128 on a 2-core machine.

    python bench/bench_eval.py                      # 128x128, 5 repeats
    python bench/bench_eval.py --size 256 --repeats 3 --threads 1
"""

from __future__ import annotations

import argparse
import statistics
import tempfile
import time
from collections.abc import Callable
from pathlib import Path

import cv2
import numpy as np

from longtake.eval import metrics as M
from longtake.eval.metrics_stream import MetricStream
from longtake.eval.report import summarise
from longtake.eval.shots import CutDetector, shots_from_cuts


def frames_of(story_path: str, size: int, limit: int) -> tuple[np.ndarray, int]:
    from longtake.plan import plan
    from longtake.script import load_story
    from longtake.world.renderer import WorldRenderer

    story = load_story(story_path)
    renderer = WorldRenderer(story, width=size, height=size)
    chunks = []
    for chunk in plan(story).chunks:
        chunks.append(renderer.render_chunk(chunk, masks=False)[0])
        if sum(len(c) for c in chunks) >= limit:
            break
    return np.concatenate(chunks)[:limit], story.fps


def per_metric(frames: np.ndarray, fps: int) -> dict[str, Callable[[], None]]:
    """Each metric alone, with the per-frame features it needs (on working-size frames)."""
    size = M.working_size(frames.shape[2], frames.shape[1])
    warper = M.Warper(*size)

    def work() -> list[np.ndarray]:
        return [M.working_frame(f, size) for f in frames]

    def flicker() -> None:
        w = work()
        for a, b in zip(w, w[1:]):
            M.flicker_score(a, b)

    def warp_error() -> None:
        g = [M.to_grey(f) for f in work()]
        for a, b in zip(g, g[1:]):
            M.warp_error(a, b, M.flow(b, a), warper)

    def smoothness() -> None:
        g = [M.to_grey(f) for f in work()]
        for a, b, c in zip(g, g[1:], g[2:]):
            M.interpolation_score(a, b, c, M.flow(a, c), warper)

    def background() -> None:
        feats = [M.frame_features(f) for f in work()]
        for a, b in zip(feats, feats[1:]):
            M.appearance_similarity(feats[0], b)
            M.appearance_similarity(a, b)

    def colour_drift() -> None:
        for f in work():
            M.mean_lab(f)

    def sharpness() -> None:
        for f in work():
            M.sharpness(M.to_grey(f))

    def cuts() -> None:
        w = work()
        feats = [M.frame_features(f) for f in w]
        det = CutDetector(fps)
        for t in range(1, len(w)):
            det.update(t, feats[t - 1], feats[t], M.mean_abs_diff(w[t - 1], w[t]))

    def stream() -> None:
        s = MetricStream(fps=fps)
        for i in range(0, len(frames), 64):
            s.update(frames[i : i + 64])
        r = s.finish()
        summarise(r, shots_from_cuts(r.detected_cuts, r.num_frames))

    return {"flicker": flicker, "motion smoothness": smoothness, "flow warping error": warp_error, "background consistency": background,
            "colour drift": colour_drift, "sharpness": sharpness, "shot cuts": cuts, "all (stream)": stream}


def timed(fn: Callable[[], None], repeats: int) -> float:
    fn()  # warm-up
    times = []
    for _ in range(repeats):
        t = time.perf_counter()
        fn()
        times.append(time.perf_counter() - t)
    return statistics.median(times)


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--story", default="examples/office_day.yaml")
    ap.add_argument("--size", type=int, default=128, help="square frame side in pixels")
    ap.add_argument("--frames", type=int, default=320)
    ap.add_argument("--repeats", type=int, default=5)
    ap.add_argument("--threads", type=int, default=0, help="OpenCV threads (0: OpenCV's default)")
    args = ap.parse_args()
    if args.threads:
        cv2.setNumThreads(args.threads)
    frames, fps = frames_of(args.story, args.size, args.frames)
    n = len(frames)
    rows = [(name, n / timed(fn, args.repeats)) for name, fn in per_metric(frames, fps).items()]
    from longtake.eval.run import evaluate_video
    from longtake.video import VideoWriter

    with tempfile.TemporaryDirectory() as tmp:
        path = Path(tmp) / "bench.mp4"
        with VideoWriter(path, fps=fps, width=args.size, height=args.size) as w:
            w.write(frames)
        rows.append(("all + decode (evaluate_video)", n / timed(lambda: evaluate_video(path), args.repeats)))
    print(f"longtake eval weight-free metrics: {n} frames at {args.size}x{args.size}, median of {args.repeats} runs, "
          f"OpenCV {cv2.__version__}, {cv2.getNumThreads()} OpenCV threads")
    print("| metric | frames/s |")
    print("|---|---:|")
    for name, fps_ in rows:
        print(f"| {name} | {fps_:.0f} |")


if __name__ == "__main__":
    main()
