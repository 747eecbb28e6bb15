"""Benchmark: stream a long video through VideoWriter in constant memory.

Writes ``--minutes`` of 128x128 frames at 16 fps (default 10 min = 9600 frames) whose
content changes every frame, generated chunk by chunk so the frames themselves are never
all in memory; samples the process RSS in a background thread (psutil) and reads
``resource.getrusage`` max RSS; then probes the file and reads every frame back.

Run: ``.venv/bin/python bench/bench_writer.py [--minutes 10] [--chunk 16]``.
Targets: peak RSS < 300 MB, frames read back == frames written, fps exact.
"""

from __future__ import annotations

import argparse
import resource
import sys
import tempfile
import threading
import time
import wave
from pathlib import Path

import numpy as np
import psutil
from rich.console import Console
from rich.table import Table

from longtake.video import VideoWriter, probe, read_frames, tone

RSS_TARGET_MB = 300.0


class PeakRss:
    """Sample this process's RSS every ``interval`` seconds in a daemon thread."""

    def __init__(self, interval: float = 0.02) -> None:
        self._proc = psutil.Process()
        self._interval = interval
        self._stop = threading.Event()
        self.peak = self._proc.memory_info().rss
        self._thread = threading.Thread(target=self._run, daemon=True)

    def _run(self) -> None:
        while not self._stop.is_set():
            self.peak = max(self.peak, self._proc.memory_info().rss)
            self._stop.wait(self._interval)

    def __enter__(self) -> PeakRss:
        self._thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self._stop.set()
        self._thread.join()
        self.peak = max(self.peak, self._proc.memory_info().rss)


def make_chunk(start: int, n: int, size: int) -> np.ndarray:
    """Frames ``start .. start+n``: a moving gradient plus a square that travels, (n, S, S, 3)."""
    y, x = np.mgrid[0:size, 0:size]
    out = np.empty((n, size, size, 3), np.uint8)
    for k in range(n):
        i = start + k
        out[k, ..., 0] = (x + 2 * i) % 256
        out[k, ..., 1] = (y + i) % 256
        out[k, ..., 2] = (x + y + 3 * i) % 256
        cx, cy = (5 * i) % (size - 16), (3 * i) % (size - 16)
        out[k, cy : cy + 16, cx : cx + 16] = 255
    return out


def write_tone_wav(path: Path, *, seconds: float, rate: int = 24_000) -> Path:
    """A 440 Hz tone written one second at a time (the track is never all in memory)."""
    with wave.open(str(path), "wb") as w:
        w.setnchannels(1)
        w.setsampwidth(2)
        w.setframerate(rate)
        second = (tone(1.0, sample_rate=rate) * 32767).astype("<i2").tobytes()  # 440 Hz: whole periods
        for _ in range(int(seconds)):
            w.writeframes(second)
        w.writeframes(second[: 2 * round((seconds % 1) * rate)])
    return path


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--minutes", type=float, default=10.0)
    ap.add_argument("--fps", type=int, default=16)
    ap.add_argument("--size", type=int, default=128)
    ap.add_argument("--chunk", type=int, default=16, help="frames per write() call")
    ap.add_argument("--audio", action="store_true", help="also mux a tone track as long as the video")
    ap.add_argument("--out", type=Path, default=None, help="output mp4 (default: a temp folder)")
    args = ap.parse_args(argv)
    total = round(args.minutes * 60 * args.fps)

    tmp = tempfile.TemporaryDirectory() if args.out is None else None
    out = args.out or Path(tmp.name) / "bench.mp4"  # type: ignore[union-attr]
    audio = None
    if args.audio:
        audio = write_tone_wav(out.with_suffix(".wav"), seconds=total / args.fps)
    rss0 = psutil.Process().memory_info().rss
    with PeakRss() as write_rss:
        t0 = time.perf_counter()
        with VideoWriter(out, fps=args.fps, width=args.size, height=args.size, audio=audio) as w:
            for start in range(0, total, args.chunk):
                w.write(make_chunk(start, min(args.chunk, total - start), args.size))
        write_s = time.perf_counter() - t0
    with PeakRss() as read_rss:
        t0 = time.perf_counter()
        info = probe(out)
        probe_s = time.perf_counter() - t0
        t0 = time.perf_counter()
        decoded = sum(c.shape[0] for c in read_frames(out, chunk=64))
        read_s = time.perf_counter() - t0
    maxrss_mb = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024  # KiB on Linux

    mb = 1024 * 1024
    table = Table(title=f"VideoWriter: {args.minutes:g} min of {args.size}x{args.size} @ {args.fps} fps")
    table.add_column("metric")
    table.add_column("value", justify="right")
    rows = [
        ("frames written", f"{w.frames_written}"),
        ("frames in file (probe)", f"{info.num_frames}"),
        ("frames decoded back", f"{decoded}"),
        ("audio track", f"{info.has_audio}"),
        ("fps read back", f"{info.frame_rate} ({info.fps:g})"),
        ("duration read back s", f"{info.duration:.3f}"),
        ("file size MB", f"{out.stat().st_size / mb:.2f}"),
        ("write wall s", f"{write_s:.1f}"),
        ("write frames/s", f"{total / write_s:.0f}"),
        ("probe wall s", f"{probe_s:.2f}"),
        ("read wall s / frames/s", f"{read_s:.1f} / {decoded / read_s:.0f}"),
        ("RSS before MB", f"{rss0 / mb:.0f}"),
        ("peak RSS writing MB (psutil)", f"{write_rss.peak / mb:.0f}"),
        ("peak RSS reading MB (psutil)", f"{read_rss.peak / mb:.0f}"),
        ("ru_maxrss MB (whole run)", f"{maxrss_mb:.0f}"),
    ]
    for row in rows:
        table.add_row(*row)
    Console().print(table)

    ok = w.frames_written == info.num_frames == decoded == total and info.fps == args.fps
    ok = ok and max(write_rss.peak, read_rss.peak) / mb < RSS_TARGET_MB and maxrss_mb < RSS_TARGET_MB
    Console().print("[green]PASS[/green]" if ok else "[red]FAIL[/red]", f"(target peak RSS < {RSS_TARGET_MB:.0f} MB, counts equal)")
    if tmp is not None:
        tmp.cleanup()
    return 0 if ok else 1


if __name__ == "__main__":
    sys.exit(main())
