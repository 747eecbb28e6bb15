"""Time `longtake plan` on a 10-minute story (target: chunks printed in under 2 s).

Runs the real CLI in a subprocess (interpreter start and imports included), several times,
and prints medians. Uses examples/storyworld_10min.yaml when present, else writes a synthetic
10-minute story of 150 four-second shots.

    .venv/bin/python bench/bench_plan.py [--runs 5] [--story PATH]
"""

from __future__ import annotations

import argparse
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]


def synthetic_story(path: Path, seconds: int = 600, shot: int = 4) -> Path:
    import yaml

    cast = [{"id": f"c{i}", "name": n, "description": f"a person with {h} hair"} for i, (n, h) in enumerate([("Ana", "black"), ("Ben", "red"), ("Cy", "brown"), ("Di", "blond")])]
    places = [{"id": f"l{i}", "name": f"place {i}"} for i in range(8)]
    scenes = []
    for s in range(seconds // (shot * 5)):
        shots = [{"prompt": f"{cast[(s + k) % 4]['name']} waves", "characters": [f"c{(s + k) % 4}"], "duration": shot, "camera": "pan_left" if k % 2 else "static"} for k in range(5)]
        scenes.append({"location": f"l{s % 8}", "shots": shots})
    path.write_text(yaml.safe_dump({"title": "ten minutes", "characters": cast, "locations": places, "scenes": scenes}))
    return path


def timed(cmd: list[str]) -> tuple[float, str]:
    t = time.perf_counter()
    r = subprocess.run(cmd, capture_output=True, text=True, check=True)
    return time.perf_counter() - t, r.stdout


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__)
    ap.add_argument("--runs", type=int, default=5)
    ap.add_argument("--story", type=Path, default=None)
    args = ap.parse_args()
    tmp = Path(tempfile.mkdtemp())
    story = args.story or (ROOT / "examples" / "storyworld_10min.yaml")
    if not story.exists():
        story = synthetic_story(tmp / "ten_minutes.yaml")
    exe = [sys.executable, "-m", "longtake.cli"]

    from longtake import Story, plan

    s = Story.load(story)
    t = time.perf_counter()
    tl = plan(s)
    in_process = time.perf_counter() - t

    rows = []
    for label, extra in (("plan (table)", []), ("plan --json", ["--json"]), ("plan --shots", ["--shots"]), ("--version (startup only)", None)):
        cmd = exe + (["--version"] if extra is None else ["plan", str(story), *extra])
        times = [timed(cmd)[0] for _ in range(args.runs)]
        rows.append((label, statistics.median(times), min(times), max(times)))

    print(f"story: {story.relative_to(ROOT) if story.is_relative_to(ROOT) else story.name}  script {s.duration:.0f} s, {len(s.shots())} shots -> {len(tl)} chunks, {tl.num_frames} frames")
    print(f"in-process plan(): {in_process * 1000:.1f} ms")
    print(f"{'command':<28}{'median s':>10}{'min s':>9}{'max s':>9}   target")
    for label, med, lo, hi in rows:
        target = "< 2 s" if label.startswith("plan") else ""
        ok = "" if not target else ("ok" if med < 2 else "MISSED")
        print(f"{label:<28}{med:>10.3f}{lo:>9.3f}{hi:>9.3f}   {target} {ok}")


if __name__ == "__main__":
    main()
