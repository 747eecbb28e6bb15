"""Time one streaming chunk of the causal DiT on CPU: denoising steps + the cache write.

Assumptions (state them in any number you quote): 128x128 video at 16 fps, a VAE with 8x
spatial and 4x temporal compression -> 16x16 latents -> patch 2 -> 64 tokens per latent
frame; one chunk = ``frames_per_chunk`` latent frames = 4x as many video frames; the cache
is in its steady state (sink + full window); 4 few-step denoising passes + 1 write pass.
The VAE decode is NOT included: the DiT must leave it room within real time.

    python bench/bench_dit.py                     # builtin, 2 threads
    python bench/bench_dit.py --preset tiny --threads 1 --repeats 3
"""

from __future__ import annotations

import argparse
import statistics
import time

import torch

from longtake.model import CausalWanDiT, get_preset


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--preset", default="builtin")
    ap.add_argument("--threads", type=int, default=2)
    ap.add_argument("--video-size", type=int, default=128, help="square video side in pixels")
    ap.add_argument("--spatial-compression", type=int, default=8)
    ap.add_argument("--temporal-compression", type=int, default=4)
    ap.add_argument("--fps", type=float, default=16.0)
    ap.add_argument("--steps", type=int, default=4, help="denoising passes per chunk")
    ap.add_argument("--text-tokens", type=int, default=32)
    ap.add_argument("--repeats", type=int, default=5)
    ap.add_argument("--dtype", default="float32", choices=["float32", "bfloat16"])
    ap.add_argument("--set", action="append", default=[], metavar="FIELD=INT", help="override a config field, e.g. num_layers=8")
    args = ap.parse_args()

    torch.set_num_threads(args.threads)
    torch.manual_seed(0)
    cfg = get_preset(args.preset)
    if args.set:
        cfg = cfg.replace(**{k: int(v) for k, v in (item.split("=", 1) for item in args.set)})
    dtype = getattr(torch, args.dtype)
    model = CausalWanDiT(cfg).to(dtype).eval()
    params = sum(p.numel() for p in model.parameters())
    side = args.video_size // args.spatial_compression
    tpf = cfg.tokens_per_frame(side, side)
    fpc = cfg.frames_per_chunk

    def chunk() -> torch.Tensor:
        return torch.randn(1, cfg.in_channels, fpc, side, side, dtype=dtype)  # (B, C, F, H, W)

    cache = model.new_cache()
    times_read, times_write, times_chunk = [], [], []
    with torch.inference_mode():
        cache.set_prompt(model.encode_prompt(torch.randn(1, args.text_tokens, cfg.text_dim, dtype=dtype)))
        # Fill the cache to its steady state (sink + full window) and warm up.
        warm = (cfg.cache_frames or 4 * fpc) // fpc + 2
        for _ in range(warm):
            model(chunk(), 0.0, cache=cache, write_cache=True)
        for _ in range(args.repeats):
            x = chunk()
            t0 = time.perf_counter()
            for s in range(args.steps):
                t1 = time.perf_counter()
                model(x, 1.0 - s / args.steps, cache=cache)
                times_read.append(time.perf_counter() - t1)
            t1 = time.perf_counter()
            model(x, 0.0, cache=cache, write_cache=True)
            times_write.append(time.perf_counter() - t1)
            times_chunk.append(time.perf_counter() - t0)

    chunk_s = statistics.median(times_chunk)
    video_s = fpc * args.temporal_compression / args.fps
    rows = [
        ("preset", args.preset + (f" + {', '.join(args.set)}" if args.set else "")),
        ("dtype / threads", f"{args.dtype} / {args.threads}"),
        ("params", f"{params / 1e6:.2f} M"),
        ("width x layers (heads x dim)", f"{cfg.dim} x {cfg.num_layers} ({cfg.num_heads} x {cfg.head_dim})"),
        ("latent frame", f"{cfg.in_channels} x {side} x {side}"),
        ("tokens per latent frame", str(tpf)),
        ("query tokens per chunk", str(fpc * tpf)),
        ("cached tokens attended", str(cache.num_tokens)),
        ("ms per denoise forward", f"{1000 * statistics.median(times_read):.1f}"),
        ("ms per cache-write forward", f"{1000 * statistics.median(times_write):.1f}"),
        (f"ms per chunk ({args.steps} steps + write)", f"{1000 * chunk_s:.1f}"),
        ("chunks / s", f"{1 / chunk_s:.2f}"),
        ("video s per chunk", f"{video_s:.3f}"),
        ("video s per wall s (DiT only)", f"{video_s / chunk_s:.2f}"),
    ]
    width = max(len(k) for k, _ in rows)
    for k, v in rows:
        print(f"{k:<{width}}  {v}")


if __name__ == "__main__":
    main()
