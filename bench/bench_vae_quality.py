"""What the built-in VAE lets through: the StoryWorld probes on held-out ground-truth frames
before and after an encode/decode round trip.

No DiT is involved. Every chunk of each held-out story is rendered by StoryWorld, encoded
as the training latents are (``longtake.train.data.encode_story``'s rule: a continuation
chunk's groups are encoded on their own) and decoded chunk by chunk with the streaming
decoder, as a render does. The probes then judge both versions the way
``bench_quality.py`` judges a model's frames: location per chunk, and for every character
on screen at the chunk's middle frame the fraction of its captioned attributes found on the
best-matching detected instance. One column per attribute shows where the VAE loses
detail; its "after the VAE" score is the ceiling of any DiT trained on its latents. Also
prints the L1 error on all pixels and on character pixels (label masks) on ``[-1, 1]``.

    python bench/bench_vae_quality.py --vae runs/b4/model/vae.safetensors --vae runs/v2/vae/vae.safetensors --stories 4
"""

from __future__ import annotations

import argparse
import sys
import time
from collections import Counter
from pathlib import Path

import numpy as np
import torch

sys.path.insert(0, str(Path(__file__).resolve().parent))
from bench_quality import judge  # noqa: E402


def round_trip(vae, frames: np.ndarray, first: bool, state):
    """Encode one chunk's frames (N, H, W, 3) uint8 as the training latents are and decode
    them with the streaming decoder ``state``; returns (frames uint8, new state)."""
    from longtake.generate.causal import to_uint8
    from longtake.train.data import encode_chunk

    with torch.no_grad():
        rec, state = vae.decode_chunk(encode_chunk(vae, frames, first=first), state)
    return to_uint8(rec), state


def score(probes, frames: np.ndarray, truths, described: dict, keys: Counter, locs: list, attrs: list) -> None:
    """Judge one chunk as bench_quality does; per attribute, count the best instance's hits."""
    from longtake.eval.probe_data import appearance_attributes
    from longtake.eval.probes import match_attributes

    loc, ids, inst = judge(probes, frames, truths, described)
    locs.append(loc)
    for cid in ids:
        attrs.append(match_attributes(described[cid], inst))
        want = appearance_attributes(described[cid])
        best = max(inst, key=lambda i: sum(i.attributes.get(k) == v for k, v in want.items())) if inst else None
        for k, v in want.items():
            keys[(k, "n")] += 1
            keys[(k, "ok")] += best is not None and best.attributes.get(k) == v


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--vae", action="append", type=Path, default=None,
                    help="a built-in VAE .safetensors (repeatable; default: the shipped model's)")
    ap.add_argument("--stories", type=int, default=4)
    ap.add_argument("--duration", type=float, default=30.0)
    ap.add_argument("--seed", type=int, default=1000)
    ap.add_argument("--threads", type=int, default=1)
    args = ap.parse_args(argv)
    torch.set_num_threads(args.threads)

    from longtake.eval.probes import StoryWorldProbes
    from longtake.model.builtin import load_builtin
    from longtake.model.vae_builtin import BuiltinVAE
    from longtake.plan import plan
    from longtake.world.parse import parse_appearance
    from longtake.world.renderer import WorldRenderer
    from longtake.world.sampler import sample_story

    vaes = {"shipped": load_builtin(None).vae} if not args.vae else {str(p): BuiltinVAE.from_safetensors(p) for p in args.vae}
    probes = StoryWorldProbes.load()
    names = ["ground truth"] + [f"after {k}" for k in vaes]
    keys = {n: Counter() for n in names}
    locs = {n: [] for n in names}
    attrs = {n: [] for n in names}
    l1 = {k: [0.0, 0.0, 0, 0] for k in vaes}  # sum all, sum char, n all, n char
    t0 = time.perf_counter()
    for i in range(args.stories):
        story = sample_story(args.seed + i, args.duration, split="heldout")
        vae0 = next(iter(vaes.values()))
        tl = plan(story, frames_per_chunk=vae0.temporal_factor * 3, first_chunk_frames=1 + vae0.temporal_factor * 2)
        renderer = WorldRenderer(story)
        described = {c.id: parse_appearance(c.description) for c in story.characters}
        states = {k: v.eval().decoder_state() for k, v in vaes.items()}
        for chunk in tl.chunks:
            frames, truths = renderer.render_chunk(chunk, masks=True)
            chars = np.stack([t.mask for t in truths]) > 0  # (N, H, W)
            score(probes, frames, truths, described, keys["ground truth"], locs["ground truth"], attrs["ground truth"])
            for k, vae in vaes.items():
                rec, states[k] = round_trip(vae, frames, chunk.index == 0, states[k])
                err = np.abs(rec.astype(np.float32) - frames.astype(np.float32)) / 127.5
                l1[k][0] += float(err.sum()); l1[k][2] += err.size
                l1[k][1] += float(err[chars].sum()); l1[k][3] += int(chars.sum()) * 3
                score(probes, rec, truths, described, keys[f"after {k}"], locs[f"after {k}"], attrs[f"after {k}"])
        print(f"story {i}: {len(tl.chunks)} chunks ({time.perf_counter() - t0:.0f} s)", file=sys.stderr, flush=True)

    attr_keys = sorted({k for k, _ in keys["ground truth"]})
    head = "| frames | location | attributes (pairs) | " + " | ".join(attr_keys) + " | L1 all / characters |"
    lines = [head, "|" + "---|" * (4 + len(attr_keys))]
    for n in names:
        per = " | ".join(f"{100.0 * keys[n][(k, 'ok')] / max(1, keys[n][(k, 'n')]):.0f}" for k in attr_keys)
        k = n[len("after "):] if n != "ground truth" else None
        err = "-" if k is None else f"{l1[k][0] / l1[k][2]:.4f} / {l1[k][1] / max(1, l1[k][3]):.4f}"
        lines.append(f"| {n} | {100.0 * np.mean(locs[n]):.1f}% | {100.0 * np.mean(attrs[n]):.1f}% ({len(attrs[n])}) | {per} | {err} |")
    print(f"{args.stories} held-out stories of {args.duration:.0f} s (seeds {args.seed}..{args.seed + args.stories - 1}), {len(locs['ground truth'])} chunks")
    print("\n".join(lines))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
