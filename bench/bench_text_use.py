"""Does the built-in model read the prompt? Character descriptions vs setting, side by side.

Held-out StoryWorld chunks are rendered, encoded with the model's own VAE and noised to a
level sigma (the same noise for every prompt). The DiT predicts x0 from each of four
prompts:
  true       the chunk's prompt as the planner writes it;
  cast swap  the same prompt with every character description "(...)" replaced by a
             description of a character of another held-out story;
  place swap the same prompt with its "Setting: ..." sentence taken from another story;
  empty      the empty prompt (the unconditional one).
Squared error of the x0 prediction is split into character pixels (latent pixels that are
at least a quarter character, from the renderer's exact label images) and background
(no character pixel). A model that draws the characters the text describes must get worse
on character pixels when the descriptions are swapped; one that ignores them does not.
Text-only chunks are made at sigma 1, so that column is what a render's first chunk sees.

    python bench/bench_text_use.py --weights runs/b7/model src/longtake/assets/builtin
"""

from __future__ import annotations

import argparse
import re
import sys
import time
from pathlib import Path

import numpy as np

DESC = re.compile(r"\(([^)]*)\)")
SETTING = re.compile(r"Setting: [^.]*\.")


def held_out_chunks(model, stories: int, per_story: int, seed: int):
    """(x0 (N, C, F, H, W), character maps (N, F, H, W) in 0..1, prompts, story index per chunk)."""
    import torch

    from longtake.train.data import encode_story
    from longtake.world.sampler import sample_story

    f = model.dit.config.frames_per_chunk
    rng = np.random.default_rng(seed)
    xs, cs, prompts, owner = [], [], [], []
    for i in range(stories):
        story = sample_story(seed + i, 12.0, split="heldout")
        lat, chars, _, meta = encode_story(story, model.vae, latent_frames=f)
        for c in rng.choice(len(meta), size=min(per_story, len(meta)), replace=False):
            xs.append(lat[c * f : (c + 1) * f].float().permute(1, 0, 2, 3))
            cs.append(chars[c * f : (c + 1) * f].float() / 255)
            prompts.append(meta[c]["prompt"])
            owner.append(i)
    return torch.stack(xs), torch.stack(cs), prompts, owner


def swapped_prompts(prompts: list[str], owner: list[int], seed: int) -> tuple[list[str], list[str]]:
    """Prompts with other stories' character descriptions, and with other stories' settings."""
    rng = np.random.default_rng(seed + 7)
    descs = [(o, d) for p, o in zip(prompts, owner) for d in DESC.findall(p)]
    places = [(o, s) for p, o in zip(prompts, owner) for s in SETTING.findall(p)]
    cast, place = [], []
    for p, o in zip(prompts, owner):
        pool = [d for oo, d in descs if oo != o]
        cast.append(DESC.sub(lambda _m: "(" + pool[int(rng.integers(len(pool)))] + ")", p))
        own = SETTING.findall(p)
        others = [s for oo, s in places if oo != o and s not in own]
        place.append(SETTING.sub(lambda _m: others[int(rng.integers(len(others)))], p) if others else p)
    return cast, place


def measure(model, x0, chars, prompts: dict[str, list[str]], sigmas: list[float], seed: int, batch: int = 16) -> dict:
    """{(sigma, prompt set): (character MSE, background MSE)}."""
    import torch

    from longtake.sample.denoiser import Denoiser

    den = Denoiser(model.dit)
    noise = torch.randn(x0.shape, generator=torch.Generator().manual_seed(seed))
    char_px, back_px = chars >= 0.25, chars == 0
    out = {}
    for sig in sigmas:
        xt = (1 - sig) * x0 + sig * noise
        for name, ps in prompts.items():
            preds = []
            for s in range(0, len(ps), batch):
                with torch.no_grad(), torch.autocast("cpu", dtype=torch.bfloat16):
                    emb, _ = model.text_encoder.encode(ps[s : s + batch])
                    cache = model.dit.new_cache()
                    cache.set_prompt(model.dit.encode_prompt(emb))
                    v = den(xt[s : s + batch], torch.full((len(ps[s : s + batch]),), sig), cache=cache)
                preds.append(xt[s : s + batch] - sig * v.float())
            err = (torch.cat(preds) - x0).square().mean(1)  # (N, F, H, W)
            out[(sig, name)] = (float(err[char_px].mean()), float(err[back_px].mean()))
    return out


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--weights", nargs="+", default=[None], help="built-in model folders (default: the shipped weights)")
    ap.add_argument("--stories", type=int, default=12)
    ap.add_argument("--per-story", type=int, default=4, help="chunks per story")
    ap.add_argument("--sigmas", type=float, nargs="+", default=[0.6, 0.9, 1.0])
    ap.add_argument("--seed", type=int, default=3000, help="first held-out story seed (not bench_quality's 1000-1999)")
    ap.add_argument("--threads", type=int, default=None)
    args = ap.parse_args(argv)

    import torch

    from longtake.model.builtin import load_builtin

    if args.threads:
        torch.set_num_threads(args.threads)
    rows = ["| model | sigma | character px: true | cast swap | place swap | empty | background: true | cast swap | place swap | empty |",
            "|---|---|---|---|---|---|---|---|---|---|"]
    for weights in args.weights:
        t0 = time.perf_counter()
        model = load_builtin(weights)
        x0, chars, prompts, owner = held_out_chunks(model, args.stories, args.per_story, args.seed)
        cast, place = swapped_prompts(prompts, owner, args.seed)
        sets = {"true": prompts, "cast swap": cast, "place swap": place, "empty": [""] * len(prompts)}
        res = measure(model, x0, chars, sets, args.sigmas, args.seed)
        label = weights or "shipped"
        for sig in args.sigmas:
            c = [res[(sig, k)][0] for k in sets]
            b = [res[(sig, k)][1] for k in sets]
            rows.append(f"| {label} | {sig:g} | " + " | ".join(f"{v:.3f}" for v in c) + " | " + " | ".join(f"{v:.3f}" for v in b) + " |")
        print(f"{label}: {len(prompts)} chunks, {int((chars >= 0.25).sum())} character latent pixels, "
              f"{time.perf_counter() - t0:.0f} s", file=sys.stderr)
    print("\n".join(rows))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
