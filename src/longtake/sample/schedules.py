"""Noise schedules as pure functions returning sigmas (DESIGN.md time convention).

sigma = 1 is pure noise, sigma = 0 is data; ``x_sigma = (1 - sigma) * x0 + sigma * eps``.
Every schedule is a 1-D float32 tensor that starts at the first sigma to denoise from and
ends with 0.0, so ``len(sigmas) - 1`` model evaluations (Euler) take noise to data.
"""

from __future__ import annotations

import torch
from torch import Tensor


def flow_shift(sigmas: Tensor, shift: float) -> Tensor:
    """Shift sigmas towards noise (SD3 / Wan): ``shift * s / (1 + (shift - 1) * s)``.

    Monotone, fixes 0 and 1; shift > 1 spends more steps at high noise. Float32 in and out.
    """
    if shift <= 0:
        raise ValueError(f"shift must be > 0, got {shift}")
    s = torch.as_tensor(sigmas, dtype=torch.float32)
    return shift * s / (1 + (shift - 1) * s)


def linear_sigmas(steps: int, *, shift: float = 1.0) -> Tensor:
    """``steps + 1`` sigmas evenly spaced from 1 to 0 (then flow-shifted): (steps + 1,)."""
    if steps < 1:
        raise ValueError(f"steps must be >= 1, got {steps}")
    s = torch.linspace(1.0, 0.0, steps + 1, dtype=torch.float32)
    return flow_shift(s, shift) if shift != 1.0 else s


def self_forcing_sigmas(steps: int = 4, shift: float = 5.0) -> Tensor:
    """Self-Forcing's few-step schedule: timesteps 1000/750/500/250 warped by shift 5, then 0.

    Self-Forcing picks its denoising timesteps from a 1000-step flow-matching scheduler with
    shift 5 ("warp_denoising_step"): timestep 1000 - 250*i is the shifted sigma of
    ``1 - i/4``. For ``steps=4``: [1.0, 0.9375, 0.8333, 0.625, 0.0]. Shape (steps + 1,).
    """
    if steps < 1:
        raise ValueError(f"steps must be >= 1, got {steps}")
    raw = torch.linspace(1.0, 0.0, steps + 1, dtype=torch.float32)[:-1]  # 1, 0.75, 0.5, 0.25 for 4 steps
    return torch.cat([flow_shift(raw, shift), torch.zeros(1)])


def sampler_sigmas(sampler: str, steps: int, shift: float) -> Tensor:
    """The schedule a sampler takes: Self-Forcing's shifted timesteps for "few_step" (its
    x0-and-renoise steps never land below the last level), evenly spaced shifted sigmas for
    the ODE samplers ("euler", "heun"). Shape (steps + 1,)."""
    if sampler == "few_step":
        return self_forcing_sigmas(steps, shift)
    return linear_sigmas(steps, shift=shift)
