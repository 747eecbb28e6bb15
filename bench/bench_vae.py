"""Benchmark: built-in VAE speed on CPU at StoryWorld size (128x128, 16 fps).

For each preset, decodes the latents of 16 pixel frames (streaming, from a warm decoder
state, as the generator does after its first chunk) and encodes 17 frames (1 + 4k rule),
``--runs`` times each after a warm-up, with ``torch.set_num_threads(--threads)``; prints
median ms and the parameter counts. Weights are random: speed does not depend on them.

Run: ``.venv/bin/python bench/bench_vae.py [--threads 2] [--runs 7]``.
Columns: wall ms (median, min) and median process CPU ms (all threads); on a busy shared
machine judge by CPU ms / threads. Target: decode of 16 frames well under 300 ms (one second of video at 16 fps must leave
most of the second to the DiT).
"""

from __future__ import annotations

import argparse
import statistics
import time

import torch
from rich.console import Console
from rich.table import Table

from longtake.model.vae_builtin import VAE_PRESETS, BuiltinVAE

DECODE_TARGET_MS = 300.0
FRAMES = 16
SIZE = 128


def _timed_ms(fn, runs: int) -> tuple[float, float, float]:
    """(median wall, min wall, median process CPU) ms of ``runs`` calls after one warm-up
    (allocator, oneDNN kernels). On a machine shared with other jobs the wall time swells;
    CPU ms / threads is what the call would take on idle cores."""
    fn()
    walls, cpus = [], []
    for _ in range(runs):
        start, cpu = time.perf_counter(), time.process_time()
        fn()
        walls.append(time.perf_counter() - start)
        cpus.append(time.process_time() - cpu)
    return 1000.0 * statistics.median(walls), 1000.0 * min(walls), 1000.0 * statistics.median(cpus)


def bench_preset(name: str, runs: int) -> dict[str, float | str]:
    torch.manual_seed(0)
    vae = BuiltinVAE(VAE_PRESETS[name]).eval()
    s, t = vae.spatial_factor, vae.temporal_factor
    n_lat = FRAMES // t  # a mid-stream chunk: t * n_lat pixel frames
    latent = torch.randn(1, vae.latent_channels, n_lat, SIZE // s, SIZE // s)  # (1, C, F, H, W)
    video = torch.rand(1, 3, 1 + FRAMES, SIZE, SIZE) * 2 - 1  # (1, 3, 17, 128, 128)
    with torch.inference_mode():
        _, warm = vae.decode_chunk(latent[:, :, :1], vae.decoder_state())
        frames, _ = vae.decode_chunk(latent, warm)
        assert frames.shape[2] == FRAMES, frames.shape
        dec, dec_min, dec_cpu = _timed_ms(lambda: vae.decode_chunk(latent, warm), runs)
        enc, enc_min, enc_cpu = _timed_ms(lambda: vae.encode(video), runs)
    enc_params = sum(p.numel() for n, p in vae.named_parameters() if n.startswith("enc_"))
    dec_params = sum(p.numel() for n, p in vae.named_parameters() if n.startswith("dec_"))
    return {"preset": name, "t": t, "latent": f"{vae.latent_channels}x{n_lat}x{SIZE // s}x{SIZE // s}",
            "decode": dec, "decode_min": dec_min, "decode_cpu": dec_cpu,
            "encode": enc, "encode_min": enc_min, "encode_cpu": enc_cpu, "enc_params": enc_params, "dec_params": dec_params}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--threads", type=int, default=2)
    parser.add_argument("--runs", type=int, default=7)
    parser.add_argument("--presets", nargs="*", default=sorted(VAE_PRESETS))
    args = parser.parse_args()
    torch.set_num_threads(args.threads)

    table = Table(title=f"built-in VAE, {FRAMES} frames {SIZE}x{SIZE}, torch threads {args.threads}, median of {args.runs}")
    for col in ("preset", "t", "latent CxFxHxW", f"decode ms/{FRAMES}fr (min)", "decode CPU ms",
                f"encode ms/{FRAMES + 1}fr (min)", "encode CPU ms", "decode x realtime", "enc params", "dec params"):
        table.add_column(col, justify="right")
    for name in args.presets:
        row = bench_preset(name, args.runs)
        realtime = (1000.0 * FRAMES / 16.0) / row["decode"]
        table.add_row(str(row["preset"]), str(row["t"]), str(row["latent"]), f"{row['decode']:.1f} ({row['decode_min']:.1f})",
                      f"{row['decode_cpu']:.0f}", f"{row['encode']:.1f} ({row['encode_min']:.1f})",
                      f"{row['encode_cpu']:.0f}", f"{realtime:.1f}x", f"{row['enc_params']:,}", f"{row['dec_params']:,}")
        flag = "OK" if row["decode"] < DECODE_TARGET_MS else "OVER TARGET"
        table.caption = (table.caption or "") + f"{row['preset']}: decode {flag} (< {DECODE_TARGET_MS:.0f} ms)  "
    Console(width=160).print(table)


if __name__ == "__main__":
    main()
