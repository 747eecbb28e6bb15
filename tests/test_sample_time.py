"""The time convention, pinned: sigma=1 noise, sigma=0 data, x = (1-s) x0 + s eps, v = eps - x0."""

from __future__ import annotations

import pytest
import torch

from longtake.sample import (
    Denoiser,
    flow_shift,
    linear_sigmas,
    sample_euler,
    sample_few_step,
    sample_heun,
    self_forcing_sigmas,
)


class ExactVelocity:
    """An analytic model: knows x0, returns v = (x - x0) / sigma = eps - x0 exactly."""

    def __init__(self, x0: torch.Tensor):
        self.x0 = x0
        self.sigmas: list[float] = []

    def __call__(self, x, sigma, **extra):
        assert sigma.shape == (x.shape[0],) and sigma.dtype == torch.float32
        self.sigmas.append(float(sigma[0]))
        s = sigma.view(-1, *([1] * (x.ndim - 1)))
        return (x - self.x0) / s


SCHEDULES = {
    "linear1": linear_sigmas(1),
    "linear7": linear_sigmas(7),
    "shift3": linear_sigmas(10, shift=3.0),
    "self_forcing": self_forcing_sigmas(),
    "uneven": torch.tensor([1.0, 0.99, 0.3, 0.29, 0.01, 0.0]),
}


@pytest.mark.parametrize("name", sorted(SCHEDULES))
@pytest.mark.parametrize("sampler", [sample_euler, sample_heun, sample_few_step])
def test_exact_velocity_lands_on_x0(name, sampler):
    torch.manual_seed(0)
    x0 = torch.randn(2, 3, 4, 5)
    eps = torch.randn_like(x0)
    model = ExactVelocity(x0)
    kwargs = {"generator": torch.Generator().manual_seed(1)} if sampler is sample_few_step else {}
    out = sampler(model, eps, SCHEDULES[name], **kwargs)  # start at sigma=1: x = eps
    torch.testing.assert_close(out, x0, atol=1e-5, rtol=1e-5)
    assert model.sigmas[0] == 1.0 and 0.0 not in model.sigmas


def test_convention_one_step():
    """From x_s = (1-s) x0 + s eps, one Euler step to 0 with v = eps - x0 gives x0."""
    x0, eps, s = torch.tensor([2.0]), torch.tensor([-1.0]), 0.4
    x = (1 - s) * x0 + s * eps
    out = sample_euler(lambda x, sigma: eps - x0, x, torch.tensor([s, 0.0]))
    torch.testing.assert_close(out, x0)


def test_schedule_endpoints():
    for sig in [linear_sigmas(1), linear_sigmas(4), linear_sigmas(8, shift=5.0), self_forcing_sigmas(), self_forcing_sigmas(2)]:
        assert sig[0].item() == 1.0 and sig[-1].item() == 0.0
        assert sig.dtype == torch.float32
        assert torch.all(sig[1:] < sig[:-1])
    assert len(linear_sigmas(4)) == 5 and len(self_forcing_sigmas(4)) == 5


def test_self_forcing_values():
    # Timesteps 1000/750/500/250 warped by shift 5: 5s / (1 + 4s) for s = 1, .75, .5, .25.
    torch.testing.assert_close(self_forcing_sigmas(4, 5.0), torch.tensor([1.0, 0.9375, 2.5 / 3, 0.625, 0.0]))


def test_flow_shift_monotone_and_fixes_endpoints():
    s = torch.linspace(0, 1, 101)
    for shift in (0.5, 1.0, 3.0, 5.0, 12.0):
        out = flow_shift(s, shift)
        assert torch.all(out[1:] > out[:-1])
        assert out[0].item() == 0.0 and out[-1].item() == pytest.approx(1.0)
    torch.testing.assert_close(flow_shift(s, 1.0), s)
    assert torch.all(flow_shift(s, 5.0) >= flow_shift(s, 3.0))  # more shift, more noise
    with pytest.raises(ValueError):
        flow_shift(s, 0.0)


def test_few_step_uses_the_generator():
    x0 = torch.zeros(1, 4)
    model = ExactVelocity(x0 + 1.0)  # predicts x0 = 1 regardless of the noise
    sig = torch.tensor([1.0, 0.5, 0.0])
    calls = []
    out = sample_few_step(model, torch.randn(1, 4), sig, generator=torch.Generator().manual_seed(3),
                          callback=lambda i, s, x, x0p: calls.append((i, s)))
    torch.testing.assert_close(out, torch.ones(1, 4))
    assert calls == [(0, 1.0), (1, 0.5)]
    # Same generator seed, same intermediate noise: deterministic.
    xs = []
    for _ in range(2):
        seen = []
        sample_few_step(model, torch.ones(1, 4), sig, generator=torch.Generator().manual_seed(3),
                        callback=lambda i, s, x, x0p: seen.append(x.clone()))
        xs.append(seen[1])
    torch.testing.assert_close(xs[0], xs[1], rtol=0, atol=0)


def test_bad_sigmas_raise():
    with pytest.raises(ValueError):
        sample_euler(lambda x, s: x, torch.zeros(1), torch.tensor([0.0, 1.0]))
    with pytest.raises(ValueError):
        sample_euler(lambda x, s: x, torch.zeros(1), torch.tensor([1.0]))


def test_sampler_keeps_input_dtype():
    x0 = torch.zeros(1, 4)
    out = sample_euler(ExactVelocity(x0), torch.randn(1, 4).to(torch.bfloat16), linear_sigmas(2))
    assert out.dtype == torch.bfloat16


class _Lin(torch.nn.Module):
    """A stand-in model: v = x * w + (text mean)."""

    def __init__(self):
        super().__init__()
        self.w = torch.nn.Parameter(torch.tensor(2.0))

    def forward(self, x, sigma, text, **kw):
        return x * self.w + text.mean()


def test_denoiser_guidance_and_dtype():
    model = _Lin().to(torch.bfloat16)
    cond, uncond = torch.ones(1, 2), torch.zeros(1, 2)
    x = torch.ones(1, 3)
    plain = Denoiser(model)
    assert plain.dtype == torch.bfloat16
    v = plain(x, torch.ones(1), text=cond)
    assert v.dtype == torch.float32
    torch.testing.assert_close(v, torch.full((1, 3), 3.0))
    guided = Denoiser(model, guidance_scale=4.0, uncond_text=uncond)
    torch.testing.assert_close(guided(x, torch.ones(1), text=cond), torch.full((1, 3), 2.0 + 4.0 * 1.0))
    with pytest.raises(ValueError):
        Denoiser(model, guidance_scale=2.0)
