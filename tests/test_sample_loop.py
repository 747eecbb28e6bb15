"""The Self-Forcing streaming loop end to end on the tiny model: sampler + denoiser + cache."""

from __future__ import annotations

import torch

from longtake.model import CausalWanDiT, get_preset
from longtake.sample import Denoiser, sample_euler, sample_few_step, self_forcing_sigmas


def _render(model: CausalWanDiT, chunks: int, seed: int, state: dict | None = None, start: int = 0):
    cfg = model.config
    den = Denoiser(model)
    cache = model.new_cache()
    gen = torch.Generator().manual_seed(seed)
    cache.set_prompt(model.encode_prompt(torch.randn(1, 3, cfg.text_dim, generator=torch.Generator().manual_seed(99))))
    if state is not None:
        cache.load_state_dict(state["cache"])
        gen.set_state(state["rng"])
    out, saved = [], None
    with torch.no_grad():
        for c in range(start, chunks):
            noise = torch.randn(1, cfg.in_channels, cfg.frames_per_chunk, 4, 4, generator=gen)
            x0 = sample_few_step(den, noise, self_forcing_sigmas(), generator=gen, extra={"cache": cache})
            den.write_cache(x0, cache)
            out.append(x0)
            if c == 1:
                saved = {"cache": cache.state_dict(), "rng": gen.get_state()}
    return out, saved, cache


def test_streaming_loop_is_finite_bounded_and_resumable():
    torch.manual_seed(0)
    model = CausalWanDiT(get_preset("tiny")).eval()
    full, saved, cache = _render(model, 6, seed=5)
    assert all(torch.isfinite(x).all() for x in full)
    assert cache.next_frame == 6 * model.config.frames_per_chunk
    assert cache.num_frames == model.config.cache_frames
    resumed, _, _ = _render(model, 6, seed=5, state=saved, start=2)
    for a, b in zip(full[2:], resumed):
        torch.testing.assert_close(a, b, rtol=0, atol=0)


def test_euler_on_model_runs_in_bf16():
    torch.manual_seed(0)
    model = CausalWanDiT(get_preset("tiny")).to(torch.bfloat16).eval()
    den = Denoiser(model)
    x = torch.randn(1, 4, 2, 4, 4)
    with torch.no_grad():
        out = sample_euler(den, x, torch.tensor([1.0, 0.5, 0.0]), extra={"text": torch.randn(1, 3, 32)})
    assert out.dtype == torch.float32 and torch.isfinite(out).all()
