"""Where does the built-in model lose the characters' looks? Probe-judged, one step at a time.

Held-out StoryWorld first chunks (the chunk a render starts from, decoded exactly by the
causal VAE) are encoded with the model's own VAE, noised to a level sigma and denoised in
one step; the x0 estimate is decoded and the StoryWorld probes judge, for every character
the chunk's prompt introduces, the fraction of its captioned attributes they find on the
best-matching detected figure of the middle frame (``eval.probes.match_attributes``, as
bench_quality.py). Columns:
  VAE         the encoded ground truth decoded again (the ceiling the VAE allows);
  sigma s     the one-step x0 estimate from the ground truth noised to s; a layout model gets
              the true boxes (from the renderer's label images, as in training);
  sampled     a whole chunk sampled from noise with the model's sampler and schedule, with
              the true boxes and with the layout prior's boxes (what a render uses); a
              model without a layout input has only the second (no boxes at all);
  chance      the sampled frames (prior boxes) judged against another story's descriptions.
A model that cannot draw a described figure at sigma 1 given where it stands has to rely on
later steps, which see mostly the figure it guessed first.

    python bench/bench_onestep_attrs.py --weights runs/b17/model runs/b16/model --stories 24
"""

from __future__ import annotations

import argparse
import sys
import time

import numpy as np


def first_chunks(model, stories: int, seed: int):
    """(x0 (N, C, F, H, W), slot maps (N, F, H, W), prompts) of held-out first chunks."""
    import torch

    from longtake.train.data import encode_story, slot_map
    from longtake.world.sampler import sample_story

    f = model.dit.config.frames_per_chunk
    xs, slots, prompts = [], [], []
    for i in range(stories):
        story = sample_story(seed + i, 6.0, split="heldout")
        lat, _, who, meta = encode_story(story, model.vae, latent_frames=f)
        xs.append(lat[:f].float().permute(1, 0, 2, 3))
        slots.append(slot_map(who[:f], meta[:1], f))
        prompts.append(meta[0]["prompt"])
    return torch.stack(xs), torch.stack(slots), prompts


def frames_of(model, latents) -> np.ndarray:
    """Latents (N, C, F, H, W) -> decoded middle frames (N, H, W, 3) uint8."""
    import torch

    with torch.no_grad():
        video = model.vae.decode(latents)  # (N, 3, T, H, W)
    mid = video[:, :, video.shape[2] // 2].clamp(-1, 1)
    return ((mid + 1) * 127.5).round().to(torch.uint8).permute(0, 2, 3, 1).numpy()


def attribute_score(probes, frames: np.ndarray, descriptions: list[list[str]]) -> tuple[float, int]:
    """Mean attribute match over every (frame, described character) pair, and the pair count."""
    from longtake.eval.probes import match_attributes
    from longtake.world.parse import parse_appearance

    scores = []
    for frame, descs in zip(frames, descriptions):
        found = probes.instances(frame[None])[0]
        scores += [match_attributes(parse_appearance(d), found) for d in descs]
    return (100.0 * float(np.mean(scores)) if scores else float("nan")), len(scores)


def measure(model, probes, x0, slots, prompts: list[str], sigmas: list[float], seed: int, batch: int = 8) -> dict[str, float]:
    import torch

    from longtake.model.layout import boxes_from_slots, introduced, name_embeddings
    from longtake.sample.denoiser import Denoiser
    from longtake.sample.samplers import SAMPLERS

    dit, text, settings = model.dit, model.text_encoder, model.settings
    tokens, limit = text.tokenizer.tokens, text.max_tokens
    descs = [[d for _, _, d in introduced(p, tokens, limit)] for p in prompts]
    rng = np.random.default_rng(seed + 11)
    other = [descs[(i + 1 + int(rng.integers(len(descs) - 1))) % len(descs)] for i in range(len(descs))]
    noise = torch.randn(x0.shape, generator=torch.Generator().manual_seed(seed))
    den = Denoiser(dit)
    e = dit.config.layout_slots

    def layouts(sl: slice, which: str) -> dict:
        if not dit.config.layout_channels:
            return {}
        with torch.no_grad():
            emb, _ = text.encode(prompts[sl])
        names = name_embeddings(emb, prompts[sl], tokens, limit, e)  # (B, E, D)
        if which == "true":
            boxes = boxes_from_slots(slots[sl], e)
        else:
            f, h, w = x0.shape[2:]
            boxes = torch.stack([settings.layout_prior.masks(len(introduced(p, tokens, limit)), e, f, h, w) for p in prompts[sl]])
        return {"layout": dit.layout_map(boxes, names)}

    def run(step) -> torch.Tensor:
        out = []
        for s in range(0, len(prompts), batch):
            sl = slice(s, s + batch)
            with torch.no_grad():
                emb, _ = text.encode(prompts[sl])
                cache = dit.new_cache()
                cache.set_prompt(dit.encode_prompt(emb))
                out.append(step(sl, cache))
        return torch.cat(out)

    res = {}
    res["VAE"] = attribute_score(probes, frames_of(model, x0), descs)
    for sig in sigmas:
        xt = (1 - sig) * x0 + sig * noise

        def one(sl, cache, xt=xt, sig=sig):
            v = den(xt[sl], torch.full((xt[sl].shape[0],), sig), cache=cache, **layouts(sl, "true"))
            return xt[sl] - max(sig, dit.config.sample_sigma_min) * v
        res[f"sigma {sig:g}"] = attribute_score(probes, frames_of(model, run(one)), descs)
    sampler = SAMPLERS[settings.sampler]
    sigmas_t = torch.tensor(settings.sigmas)
    if not dit.config.layout_channels:
        res["sampled, true boxes"] = (float("nan"), 0)  # nothing to place without a layout input
    for which in ("true", "prior") if dit.config.layout_channels else ("prior",):
        gen = torch.Generator().manual_seed(seed + 1)

        def sample(sl, cache, which=which, gen=gen):
            extra = {"cache": cache, **layouts(sl, which)}
            kw = {"generator": gen} if settings.sampler == "few_step" else {}
            return sampler(den, noise[sl].clone(), sigmas_t, extra=extra, **kw)
        frames = frames_of(model, run(sample))
        res[f"sampled, {which} boxes"] = attribute_score(probes, frames, descs)
    res["chance"] = attribute_score(probes, frames, other)
    return res


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--weights", nargs="+", default=[None], help="built-in model folders (default: the shipped weights)")
    ap.add_argument("--stories", type=int, default=24, help="held-out stories (one first chunk each)")
    ap.add_argument("--sigmas", type=float, nargs="+", default=[0.25, 0.5, 0.75, 1.0])
    ap.add_argument("--seed", type=int, default=3000, help="first held-out story seed (not bench_quality's 1000-1999)")
    ap.add_argument("--threads", type=int, default=None)
    args = ap.parse_args(argv)
    if args.stories < 2:
        ap.error("--stories must be at least 2 (the chance column borrows another story's cast)")

    import torch

    from longtake.eval.probes import StoryWorldProbes
    from longtake.model.builtin import load_builtin

    if args.threads:
        torch.set_num_threads(args.threads)
    probes = StoryWorldProbes.load()
    table: list[str] = []
    for weights in args.weights:
        t0 = time.perf_counter()
        model = load_builtin(weights)
        x0, slots, prompts = first_chunks(model, args.stories, args.seed)
        res = measure(model, probes, x0, slots, prompts, args.sigmas, args.seed)
        if not table:
            table = ["| model | pairs | " + " | ".join(res) + " |", "|---|---|" + "---|" * len(res)]
        pairs = next(iter(res.values()))[1]
        table.append(f"| {weights or 'shipped'} | {pairs} | " + " | ".join("n/a" if v != v else f"{v:.1f}%" for v, _ in res.values()) + " |")
        print(f"{weights or 'shipped'}: {len(prompts)} first chunks, {time.perf_counter() - t0:.0f} s", file=sys.stderr)
    print("attributes right (probe-judged) of the described characters, middle frame of held-out first chunks")
    print("\n".join(table))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
