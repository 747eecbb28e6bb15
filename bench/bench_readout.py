"""Does a DiT's middle block know what the prompt says about each character, on stories it never saw?

Reads a training run's checkpoint (``RUN/dit/ckpt.pt``) trained with ``attr_weight > 0``, whose
attribute readout head (``dit_stage.AttributeReadout``) names each character's captioned
attributes from the block's features pooled over the character's latent pixels. Chunks are
noised to sigma (one noise for every prompt) and the head's mean cross-entropy is printed with
the true prompt, with every character description swapped for another story's (another
chunk's with ``--split train``), and with the
empty prompt (the class prior), on

* ``heldout``: chunks of ``sample_story(seed, 12, split="heldout")`` (casts and looks never
  seen in training), rendered and encoded with the run's VAE; or
* ``train``: chunks of the run's own latent shards.

On frames with one character it also pools over the background of the same frames instead of
the figure: a much lower cross-entropy over the figure means the block knows where the figure
is. Lower is better; the gap between true and empty is what the prompt's descriptions add.
A run trained with ``cast_weight > 0`` also gets the text encoder's cast readout scored on the
same prompts (``train.cast_readout``: each character's look read at its name token).

    python bench/bench_readout.py runs/b8 --split heldout
    python bench/bench_readout.py runs/b8 --split train
"""

from __future__ import annotations

import argparse
import json
import sys
import time
from pathlib import Path

import numpy as np
import torch

sys.path.insert(0, str(Path(__file__).resolve().parent))
from bench_text_use import swapped_prompts  # noqa: E402

from longtake.model.tokenizer import Tokenizer  # noqa: E402
from longtake.model.vae_builtin import BuiltinVAE  # noqa: E402
from longtake.train.checkpoint import autocast, load_checkpoint  # noqa: E402
from longtake.train.config import TrainConfig  # noqa: E402
from longtake.train.data import LatentClips, attribute_maps, encode_story, split_maps  # noqa: E402
from longtake.train.dit_stage import AttributeReadout, _block_output, build_models  # noqa: E402


def heldout_chunks(vae: BuiltinVAE, f: int, stories: int, per_story: int, seed: int):
    """(x0 (N, C, F, H, W), attribute maps (N, A, F, H, W) long, prompts, story per chunk)."""
    from longtake.world.sampler import sample_story

    rng = np.random.default_rng(seed)
    xs, maps, prompts, owner = [], [], [], []
    for i in range(stories):
        lat, _, who, meta = encode_story(sample_story(seed + i, 12.0, split="heldout"), vae, latent_frames=f)
        amap = attribute_maps(who, meta, f)  # (F_total, A, H, W)
        for c in rng.choice(len(meta), size=min(per_story, len(meta)), replace=False):
            xs.append(lat[c * f : (c + 1) * f].float().permute(1, 0, 2, 3))
            maps.append(amap[c * f : (c + 1) * f].float().permute(1, 0, 2, 3))
            prompts.append(meta[c]["prompt"])
            owner.append(i)
    return torch.stack(xs), torch.stack(maps).round().long(), prompts, owner


def figure_and_background(a: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor, int]:
    """Attribute maps restricted to frames with exactly one character: over the figure, and the
    same targets over every other pixel of those frames; and the number of such frames."""
    fig, bg = torch.full_like(a, -1), torch.full_like(a, -1)
    frames = 0
    for b in range(a.shape[0]):
        for t in range(a.shape[2]):
            lab = a[b, :, t]  # (A, H, W)
            on = (lab >= 0).any(0)
            if not bool(on.any()):
                continue
            vecs = torch.unique(lab[:, on].T, dim=0)
            if vecs.shape[0] == 1:
                frames += 1
                fig[b, :, t] = lab
                bg[b, :, t][:, ~on] = vecs[0][:, None]
    return fig, bg, frames


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("run", type=Path, help="training run folder with dit/ckpt.pt (attr_weight > 0)")
    ap.add_argument("--split", choices=("heldout", "train"), default="heldout")
    ap.add_argument("--stories", type=int, default=12, help="held-out stories (4 chunks each)")
    ap.add_argument("--chunks", type=int, default=48, help="training chunks (--split train)")
    ap.add_argument("--sigmas", type=float, nargs="+", default=[0.6, 0.9, 1.0])
    ap.add_argument("--seed", type=int, default=3000)
    ap.add_argument("--threads", type=int, default=2)
    args = ap.parse_args()
    torch.set_num_threads(args.threads)
    t0 = time.time()
    cfg = TrainConfig.from_dict(json.loads((args.run / "train.json").read_text()))
    ck = load_checkpoint(args.run / "dit" / "ckpt.pt")
    if "readout" not in ck:
        sys.exit(f"bench_readout: {args.run}/dit/ckpt.pt has no attribute readout head; train with --set attr_weight=1")
    dit, text = build_models(cfg, Tokenizer.load(args.run / "dit" / "vocab.json"), 16)
    dit.load_state_dict(ck["dit"])
    text.load_state_dict(ck["text"])
    dit.eval()
    text.eval()
    head = AttributeReadout(dit.config.dim, dit.config.patch_size, layer=dit.config.num_layers // 2)
    head.load_state_dict(ck["readout"])
    head.eval()
    f = dit.config.frames_per_chunk
    if args.split == "heldout":
        vae = BuiltinVAE.from_safetensors(args.run / "vae" / "vae.safetensors").eval()
        x0, a, prompts, owner = heldout_chunks(vae, f, args.stories, 4, args.seed)
    else:
        clips = LatentClips(args.run / "data" / "latents", latent_frames=f, with_chars=True, with_attrs=True)
        xb, prompts = clips.solo(np.random.default_rng(args.seed), args.chunks)
        x0, _, a = split_maps(xb, True, True)
        a = a.round().long()
        owner = list(range(len(prompts)))  # a chunk's own descriptions are never its swap
    swapped, _ = swapped_prompts(prompts, owner, args.seed)
    fig, bg, frames = figure_and_background(a)
    every = torch.ones(a.shape[0], a.shape[2], dtype=torch.bool)
    noise = torch.randn(x0.shape, generator=torch.Generator().manual_seed(1))

    def features(ps: list[str], sig: float) -> torch.Tensor:
        with torch.no_grad(), autocast(cfg), _block_output(dit, head.layer) as store:
            emb, _ = text.encode(ps)
            dit((1 - sig) * x0 + sig * noise, torch.full((len(ps), f), sig), emb[:, None], mode="causal_window")
        return store[-1].float()

    def ce(h: torch.Tensor, maps: torch.Tensor) -> float:
        with torch.no_grad():
            total, count = head.error(h, maps, every)
        return float(total / count)

    print(f"{args.run} (step {ck['step']}), {args.split}: {len(prompts)} chunks, {frames} one-character frames")
    print("| sigma | true prompt | descriptions swapped | empty prompt | one character: over the figure | over the background |")
    print("|---|---:|---:|---:|---:|---:|")
    for sig in args.sigmas:
        h = features(prompts, sig)
        print(f"| {sig:g} | {ce(h, a):.3f} | {ce(features(swapped, sig), a):.3f} | {ce(features([''] * len(prompts), sig), a):.3f} "
              f"| {ce(h, fig):.3f} | {ce(h, bg):.3f} |", flush=True)
    if "cast" in ck:  # the text encoder's cast readout (train.cast_readout), on the same prompts
        from longtake.train.cast_readout import CastReadout

        cast = CastReadout(text)
        cast.load_state_dict(ck["cast"])
        with torch.no_grad(), autocast(cfg):
            total, count, right = cast.error(text.encode(prompts)[0], prompts)
        print(f"cast readout at the name tokens: cross-entropy {float(total / count):.3f}, "
              f"{100 * float(right / count):.1f}% of {int(count)} (character, attribute) pairs right")
    print(f"({time.time() - t0:.0f} s)")


if __name__ == "__main__":
    main()
