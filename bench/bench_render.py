"""End-to-end render speed and memory of the built-in model (issue 4 targets).

What is measured: ``longtake render`` in-process minus the CLI: load the model folder (timed
apart), plan, generate every chunk (DiT + KV cache + sampler), VAE decode, H.264 encode and
mp4 finish, manifest. 128x128 at 16 fps whatever the story says. Each measurement runs in a
fresh subprocess, so peak RSS (``getrusage``) belongs to that render alone, with
``OMP_WAIT_POLICY=PASSIVE`` as ``longtake render`` sets it (unless the environment has one).

Columns:
    video s      seconds of video rendered
    wall s       render wall clock (after loading), decode and mp4 writing included
    x real time  video s / wall s (target >= 1.0)
    first s      time from the start of the render to the first chunk's frames (target < 1 s)
    ms/frame     wall s / frames
    steady ms/f  (wall - first chunk) / (frames - first chunk frames): the per-frame cost once
                 the pipeline runs, which is what "within 5%" compares
    CPU ms/f     process CPU time (user + system) of the render / frames: the same comparison,
                 less sensitive to other processes on a shared machine
    load s       loading the weights folder (before the render starts)
    peak RSS MB  peak resident memory of the subprocess
    RSS@10% / 50% / end  resident memory after 10% and 50% of the chunks and at the last chunk
    max between  the most resident memory seen after any chunk (the peak without what is
                 allocated and freed within a chunk or after the last one)
    state MB     the tensors the generator carries from one chunk to the next (its resume
                 state: KV cache with prompt K/V, VAE decoder state, memory bank or entity
                 memory, the figure layer's looks), each storage counted once: the most after
                 any chunk, and at 10% / 50% / the end. What RSS adds on top is the allocator's
    attended     the most cached tokens one attention head read for a chunk (sink + memory
                 + window; KV cache bound, docs/memory.md "Bounded attention")

``--memory MODE ...`` measures each memory mode (docs/memory.md) the same way, one after the
other, in one table (default: ``longtake render``'s default mode). Each mode's short and long renders are
its own processes; modes are compared side by side in one run only.

Targets: >= 1.0x real time, first frames < 1 s, per-frame time of a 10-minute render within
5% of a 10-second one, peak RSS growth < 50 MB.

    python bench/bench_render.py                      # the shipped weights
    python bench/bench_render.py --weights DIR        # another model folder
    python bench/bench_render.py --random-weights     # builtin preset, random weights (speed only)
    python bench/bench_render.py --random-weights --repeats 3 --skip-long
    python bench/bench_render.py --memory sink nam nam+sma entity
"""

from __future__ import annotations

import argparse
import json
import os
import resource
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
LONG_STORY = ROOT / "examples" / "storyworld_10min.yaml"


def _story(path: Path, seconds: float | None):
    """The story at 128x128, 16 fps, cut after ``seconds`` (None: whole)."""
    from longtake.script import load_story
    from longtake.script.schema import Size

    story = load_story(path)
    story = story.model_copy(update={"size": Size(width=128, height=128), "fps": 16})
    if seconds is None:
        return story
    scenes, left = [], seconds
    for scene in story.scenes:
        shots = []
        for shot in scene.shots:
            if left <= 0:
                break
            d = min(shot.duration, left)
            shots.append(shot.model_copy(update={"duration": d}))
            left -= d
        if shots:
            scenes.append(scene.model_copy(update={"shots": shots}))
        if left <= 0:
            break
    return story.model_copy(update={"scenes": scenes})


def make_random_folder(folder: Path, story_path: Path) -> Path:
    """A model folder with the builtin presets and random weights (same cost as trained ones)."""
    import torch

    from longtake.model import CausalWanDiT, get_preset
    from longtake.model.builtin import save_builtin
    from longtake.model.text_builtin import TEXT_PRESETS, BuiltinTextEncoder
    from longtake.model.tokenizer import Tokenizer
    from longtake.model.vae_builtin import VAE_PRESETS, BuiltinVAE
    from longtake.plan import plan
    from longtake.sample.schedules import self_forcing_sigmas

    torch.manual_seed(0)
    story = _story(story_path, None)
    tok = Tokenizer.build(c.prompt for c in plan(story).chunks)
    cfg = TEXT_PRESETS["builtin"]
    words = [f"w{i}" for i in range(cfg.vocab_size - len(tok))]  # pad to the preset's vocabulary size
    tok = Tokenizer([*tok.vocab, *words])
    save_builtin(
        folder,
        CausalWanDiT(get_preset("builtin")).eval(),
        BuiltinVAE(VAE_PRESETS["builtin"]).eval(),
        BuiltinTextEncoder(cfg, tok).eval(),
        sigmas=self_forcing_sigmas(4),
        extra={"note": "random weights made by bench/bench_render.py"},
    )
    return folder


def state_mb(obj: object, seen: set[int] | None = None) -> float:
    """MB of the tensors in a nested state (dicts, lists, tuples), each storage once."""
    import torch

    seen = set() if seen is None else seen
    if isinstance(obj, torch.Tensor):
        st = obj.untyped_storage()
        if st.data_ptr() in seen:
            return 0.0
        seen.add(st.data_ptr())
        return st.nbytes() / 2**20
    if isinstance(obj, dict):
        return sum(state_mb(v, seen) for v in obj.values())
    if isinstance(obj, (list, tuple)):
        return sum(state_mb(v, seen) for v in obj)
    return 0.0


def child(args: argparse.Namespace) -> None:
    """One measurement: load, render, print a JSON line."""
    import psutil
    import torch

    from longtake.pipeline import load_generator, plan_for, render_story

    torch.set_num_threads(args.threads)
    proc = psutil.Process()
    story = _story(Path(args.story), args.seconds)
    t0 = time.perf_counter()
    gen = load_generator("builtin", story=story, weights=args.weights, memory=args.memory[0])  # as `longtake render --memory` builds it
    load = time.perf_counter() - t0
    tl = plan_for(story, gen)
    mark = max(1, len(tl) // 10)
    rss: dict[str, float] = {}
    first_chunk = {"frames": tl.chunks[0].num_frames}
    attended = {"max": 0}

    def on_progress(p) -> None:
        attended["max"] = max(attended["max"], int(getattr(gen, "attended_tokens", 0)))
        if p.chunks_done == 1:
            first_chunk["t"] = p.elapsed
        now = proc.memory_info().rss / 2**20
        held = state_mb(gen.state_dict())
        rss["between"] = max(rss.get("between", 0.0), now)
        rss["state"] = max(rss.get("state", 0.0), held)
        if p.chunks_done == mark:
            rss["at10"], rss["state10"] = now, held
        if p.chunks_done == max(1, p.chunks_total // 2):
            rss["at50"], rss["state50"] = now, held
        if p.chunks_done == p.chunks_total:
            rss["end"], rss["state_end"] = now, held

    with tempfile.TemporaryDirectory() as tmp:
        cpu0 = resource.getrusage(resource.RUSAGE_SELF)
        res = render_story(story, tl, gen, Path(tmp) / "bench.mp4", seed=story.seed, on_progress=on_progress)
        cpu1 = resource.getrusage(resource.RUSAGE_SELF)
    cpu = (cpu1.ru_utime - cpu0.ru_utime) + (cpu1.ru_stime - cpu0.ru_stime)
    peak = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024  # KiB on Linux
    frames = res.frames
    steady = (res.wall_seconds - first_chunk["t"]) / max(1, frames - first_chunk["frames"])
    print(json.dumps({
        "video_s": frames / tl.fps, "frames": frames, "chunks": len(tl), "wall_s": res.wall_seconds,
        "rt": res.realtime_factor, "first_s": res.first_frame_latency, "ms_per_frame": 1000 * res.wall_seconds / frames,
        "steady_ms_per_frame": 1000 * steady, "cpu_ms_per_frame": 1000 * cpu / frames, "load_s": load, "peak_rss_mb": peak, "rss10_mb": rss.get("at10"), "rss50_mb": rss.get("at50"),
        "rss_end_mb": rss.get("end"), "rss_between_mb": rss.get("between"), "state_mb": rss.get("state"),
        "state10_mb": rss.get("state10"), "state50_mb": rss.get("state50"), "state_end_mb": rss.get("state_end"),
        "threads": torch.get_num_threads(), "attended": attended["max"], "memory": gen.info().settings["memory"]["mode"],
    }))


def measure(args: argparse.Namespace, weights: Path, seconds: float | None, mode: str) -> dict:
    cmd = [sys.executable, __file__, "--child", "--weights", str(weights), "--story", str(args.story), "--threads", str(args.threads),
           "--memory", mode]
    if seconds is not None:
        cmd += ["--seconds", str(seconds)]
    env = {"OMP_WAIT_POLICY": "PASSIVE", **os.environ, "PYTHONWARNINGS": "ignore"}  # as `longtake render` sets it (cli.py)
    out = subprocess.run(cmd, capture_output=True, text=True, env=env)
    if out.returncode:
        sys.exit(f"bench_render: the {mode} render failed (exit {out.returncode}):\n{out.stderr.strip()[-2000:]}")
    m = json.loads(out.stdout.strip().splitlines()[-1])
    if m["memory"] != mode:
        sys.exit(f"bench_render: asked for memory mode {mode}, the generator ran {m['memory']}")
    return m


def row(name: str, m: dict) -> str:
    return (f"| {m['memory']} | {name} | {m['video_s']:.1f} | {m['wall_s']:.2f} | {m['rt']:.2f}x | {m['first_s']:.3f} | {m['ms_per_frame']:.1f} | "
            f"{m['steady_ms_per_frame']:.1f} | {m['cpu_ms_per_frame']:.1f} | {m['load_s']:.2f} | {m['peak_rss_mb']:.0f} | {m['rss10_mb']:.0f} / {m['rss50_mb']:.0f} / {m['rss_end_mb']:.0f} | {m['rss_between_mb']:.0f} | "
            f"{m['state_mb']:.1f} ({m['state10_mb']:.1f} / {m['state50_mb']:.1f} / {m['state_end_mb']:.1f}) | {m['attended']} |")


def median(ms: list[dict]) -> dict:
    return {k: statistics.median(m[k] for m in ms) if isinstance(ms[0][k], (int, float)) else ms[0][k] for k in ms[0]}


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--weights", type=Path, default=None, help="built-in model folder (default: the shipped one)")
    ap.add_argument("--random-weights", action="store_true", help="random weights of the builtin presets (speed only)")
    ap.add_argument("--story", type=Path, default=LONG_STORY, help="the long story; the short one is its first --short-seconds")
    ap.add_argument("--short-seconds", type=float, default=10.0)
    ap.add_argument("--repeats", type=int, default=3, help="repeats of the short render (median)")
    ap.add_argument("--skip-long", action="store_true", help="only the short render")
    ap.add_argument("--threads", type=int, default=2)
    ap.add_argument("--memory", nargs="+", default=None, metavar="MODE",
                    help="memory modes to measure, one after the other (default: the default mode; docs/memory.md)")
    ap.add_argument("--child", action="store_true", help=argparse.SUPPRESS)
    ap.add_argument("--seconds", type=float, default=None, help=argparse.SUPPRESS)
    args = ap.parse_args()
    from longtake.memory.config import DEFAULT_MODE, MEMORY_MODES

    args.memory = args.memory or [DEFAULT_MODE]
    for mode in args.memory:
        if mode not in MEMORY_MODES:
            ap.error(f"--memory: unknown mode {mode!r}; expected one of {', '.join(MEMORY_MODES)}")
    if args.child:
        child(args)
        return

    from longtake.model.builtin import shipped_folder, weights_present

    with tempfile.TemporaryDirectory() as tmp:
        if args.random_weights:
            weights = make_random_folder(Path(tmp) / "random", args.story)
            source = "random weights, builtin presets"
        else:
            weights = args.weights or shipped_folder()
            if not weights_present(weights):
                sys.exit(f"no built-in weights in {weights}; pass --weights DIR or --random-weights")
            source = str(weights)
        results = []
        for mode in args.memory:
            short = [measure(args, weights, args.short_seconds, mode) for _ in range(args.repeats)]
            long = None if args.skip_long else measure(args, weights, None, mode)
            results.append((short, median(short), long))

    threads = results[0][1]["threads"]
    print(f"built-in model render, 128x128 @ 16 fps, {threads} torch threads, OMP_WAIT_POLICY={os.environ.get('OMP_WAIT_POLICY', 'PASSIVE')}, "
          f"weights: {source}; load average at the end {os.getloadavg()[0]:.1f} on {os.cpu_count()} CPUs")
    print(f"short: first {args.short_seconds:g} s of {args.story.name} (median of {args.repeats}); long: all of it (1 run); "
          f"memory modes one after the other: {', '.join(args.memory)}\n")
    print("| memory | story | video s | wall s | x real time | first s | ms/frame | steady ms/f | CPU ms/f | load s | peak RSS MB | RSS@10% / 50% / end MB | max between MB | state MB (10% / 50% / end) | attended |")
    print("|---|---|---|---|---|---|---|---|---|---|---|---|---|---|---|")
    for short, s, long in results:
        print(row(f"{args.short_seconds:g} s", s))
        if long is not None:
            print(row(f"{long['video_s']:.0f} s", long))
    base = results[0][1]
    for short, s, long in results:
        print(f"\n{s['memory']}:")
        if long is not None:
            print(f"  per-frame time long / short: {long['ms_per_frame'] / s['ms_per_frame']:.3f} (all frames), "
                  f"{long['steady_ms_per_frame'] / s['steady_ms_per_frame']:.3f} (steady), "
                  f"{long['cpu_ms_per_frame'] / s['cpu_ms_per_frame']:.3f} (CPU time)  [target within 5%]")
            print(f"  peak RSS growth long - short: {long['peak_rss_mb'] - s['peak_rss_mb']:+.1f} MB; "
                  f"max between chunks long - short: {long['rss_between_mb'] - s['rss_between_mb']:+.1f} MB  [target < 50 MB]; "
                  f"within the long render, RSS 10% -> 50%: {long['rss50_mb'] - long['rss10_mb']:+.1f} MB, 50% -> end: {long['rss_end_mb'] - long['rss50_mb']:+.1f} MB")
            print(f"  attended tokens per chunk, most: short {s['attended']}, long {long['attended']}  [bounded: equal]; "
                  f"state carried between chunks, most: short {s['state_mb']:.1f} MB, long {long['state_mb']:.1f} MB")
        if s is not base:
            ref = results[0][2] if long is not None else None
            cmp = f"{100 * (s['steady_ms_per_frame'] / base['steady_ms_per_frame'] - 1):+.1f}% steady ms/frame (short)"
            if ref is not None and long is not None:
                cmp += f", {100 * (long['cpu_ms_per_frame'] / ref['cpu_ms_per_frame'] - 1):+.1f}% CPU ms/frame (long)"
            print(f"  against {base['memory']}: {cmp}")
        print(f"  short runs: x real time {[round(m['rt'], 2) for m in short]}, first s {[round(m['first_s'], 3) for m in short]}")

if __name__ == "__main__":
    main()
