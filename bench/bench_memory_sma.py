"""Micro-benchmark of the memory segment and sparse memory activation (SMA) in the causal DiT.

One streaming chunk (``--steps`` denoising passes + the cache write) of a DiT with random
weights, in the cache's steady state (sink + full window), with M memory frames installed:

  sink           no memory (the baseline)
  mem M          M memory frames, all attended (NAM)
  sma k/M        M memory frames, each layer and head attends to its top k (sma_per="head":
                 a selector on the cache, called by attention with the layer's queries)
  chunk k/M      M candidates, the k most relevant to the previous chunk's queries installed
                 once per chunk (sma_per="chunk"), selection time included
  mem k          k memory frames, all attended, no selection at all

Variants run interleaved, repeat after repeat, so that a busy CPU slows them alike; the
median per variant is printed. Numbers in docs/memory.md.

    OMP_WAIT_POLICY=PASSIVE python bench/bench_memory_sma.py                 # builtin, 1 thread
    OMP_WAIT_POLICY=PASSIVE python bench/bench_memory_sma.py --preset tiny --video-size 32
"""

from __future__ import annotations

import argparse
import statistics
import time

import torch

from longtake.memory import MemoryEntry, SparseMemoryActivation, install
from longtake.model import CausalWanDiT, get_preset


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--preset", default="builtin")
    ap.add_argument("--threads", type=int, default=1)
    ap.add_argument("--video-size", type=int, default=128, help="square video side in pixels")
    ap.add_argument("--spatial-compression", type=int, default=4, help="the built-in VAE: 4")
    ap.add_argument("--steps", type=int, default=4)
    ap.add_argument("--text-tokens", type=int, default=32)
    ap.add_argument("--repeats", type=int, default=15)
    ap.add_argument("--memory", type=int, nargs="+", default=[3, 6], help="memory frames M")
    ap.add_argument("--top-k", type=int, nargs="+", default=[2, 3], help="SMA k for each M")
    args = ap.parse_args()
    if len(args.top_k) != len(args.memory):
        ap.error("give one --top-k per --memory")

    torch.set_num_threads(args.threads)
    torch.manual_seed(0)
    cfg = get_preset(args.preset)
    model = CausalWanDiT(cfg).eval()
    side = args.video_size // args.spatial_compression
    tpf = cfg.tokens_per_frame(side, side)
    fpc = cfg.frames_per_chunk

    def chunk() -> torch.Tensor:
        return torch.randn(1, cfg.in_channels, fpc, side, side)  # (B, C, F, H, W)

    with torch.inference_mode():
        cache = model.new_cache()
        cache.set_prompt(model.encode_prompt(torch.randn(1, args.text_tokens, cfg.text_dim)))
        for _ in range((cfg.cache_frames or 4 * fpc) // fpc + 2):
            model(chunk(), 0.0, cache=cache, write_cache=True)
        state = cache.state_dict()
        pool = [
            MemoryEntry(-1 - i, -1, ("room",), "room", "frame",
                        [torch.randn(1, cfg.num_heads, tpf, cfg.head_dim) for _ in range(cfg.num_layers)],
                        [torch.randn(1, cfg.num_heads, tpf, cfg.head_dim) for _ in range(cfg.num_layers)])
            for i in range(max(args.memory))
        ]

        variants: dict[str, tuple[list[MemoryEntry], SparseMemoryActivation | None]] = {"sink": ([], None)}
        for m, k in zip(args.memory, args.top_k, strict=True):
            variants[f"mem {m}"] = (pool[:m], None)
            variants[f"sma {k}/{m}"] = (pool[:m], SparseMemoryActivation(k))
            variants[f"chunk {k}/{m}"] = (pool[:m], SparseMemoryActivation(k, "chunk"))
            variants.setdefault(f"mem {k}", (pool[:k], None))
        times: dict[str, list[float]] = {name: [] for name in variants}
        tokens: dict[str, int] = {}

        def run(entries: list[MemoryEntry], sma: SparseMemoryActivation | None) -> float:
            c = model.new_cache()
            c.load_state_dict(state)
            c.memory_selector = sma
            x = chunk()
            t0 = time.perf_counter()
            if sma is not None:
                entries = sma.choose(entries)  # per chunk: the top k of M; per head: all M
                sma.prepare(entries)
            install(c, entries)
            for s in range(args.steps):
                model(x, 1.0 - s / args.steps, cache=c)
            model(x, 0.0, cache=c, write_cache=True)
            return time.perf_counter() - t0

        for name, (entries, sma) in variants.items():  # warm-up
            run(entries, sma)
            skipped = 0 if sma is None or len(entries) <= sma.top_k else (len(entries) - sma.top_k) * tpf  # per head or per chunk
            tokens[name] = (cfg.cache_frames + len(entries)) * tpf - skipped
        for _ in range(args.repeats):
            for name, (entries, sma) in variants.items():
                times[name].append(run(entries, sma))

    base = statistics.median(times["sink"])
    print(f"preset {args.preset}, {args.threads} thread(s), {tpf} tokens/frame, {fpc * tpf} query tokens, "
          f"{args.steps} steps + write, median of {args.repeats}")
    print(f"{'variant':<10} {'attended':>9} {'ms/chunk':>9} {'vs sink':>8} {'min ms':>8}")
    for name in variants:
        t = statistics.median(times[name])
        print(f"{name:<10} {tokens[name]:>9} {1000 * t:>9.1f} {100 * (t / base - 1):>+7.1f}% {1000 * min(times[name]):>8.1f}")


if __name__ == "__main__":
    main()
