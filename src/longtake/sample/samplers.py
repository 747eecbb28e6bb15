"""Samplers as pure functions: no state, randomness only from a passed ``torch.Generator``.

A denoiser is any callable ``denoiser(x, sigma, **extra) -> v`` with x (B, ...) and sigma
(B,) float32, returning the velocity v = eps - x0 (DESIGN.md); :class:`~longtake.sample.
denoiser.Denoiser` wraps a model into one. Arithmetic is float32; the result has x's dtype.
Given ``x_sigma = (1 - sigma) x0 + sigma eps``: ``x0 = x - sigma v`` and ``eps = x + (1 - sigma) v``.

``callback(step, sigma, x, x0_pred)`` is called after each step (progress, previews).
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any, Protocol

import torch
from torch import Tensor


class DenoiserFn(Protocol):
    def __call__(self, x: Tensor, sigma: Tensor, **extra: Any) -> Tensor: ...


Callback = Callable[[int, float, Tensor, Tensor], None]


def _check(sigmas: Tensor) -> list[float]:
    s = [float(v) for v in torch.as_tensor(sigmas, dtype=torch.float32).flatten()]
    if len(s) < 2:
        raise ValueError(f"need at least two sigmas (start and end), got {s}")
    if any(b > a for a, b in zip(s, s[1:])):
        raise ValueError(f"sigmas must be non-increasing, got {s}")
    return s


def _velocity(denoiser: DenoiserFn, x: Tensor, sigma: float, extra: dict[str, Any] | None) -> Tensor:
    sig = torch.full((x.shape[0],), sigma, dtype=torch.float32, device=x.device)  # (B,)
    return denoiser(x, sig, **(extra or {})).float()


def sample_euler(
    denoiser: DenoiserFn,
    x: Tensor,
    sigmas: Tensor,
    *,
    extra: dict[str, Any] | None = None,
    callback: Callback | None = None,
) -> Tensor:
    """Flow-matching Euler: ``x <- x + (sigma_next - sigma) * v``. x (B, ...) at sigmas[0] -> x at sigmas[-1]."""
    s = _check(sigmas)
    out_dtype = x.dtype
    x = x.float()
    for i, (cur, nxt) in enumerate(zip(s, s[1:])):
        v = _velocity(denoiser, x, cur, extra)
        if callback is not None:
            callback(i, cur, x, x - cur * v)
        x = x + (nxt - cur) * v
    return x.to(out_dtype)


def sample_heun(
    denoiser: DenoiserFn,
    x: Tensor,
    sigmas: Tensor,
    *,
    extra: dict[str, Any] | None = None,
    callback: Callback | None = None,
) -> Tensor:
    """Heun (2nd order, trapezoid on v); the last step to sigma=0 is plain Euler (EDM)."""
    s = _check(sigmas)
    out_dtype = x.dtype
    x = x.float()
    for i, (cur, nxt) in enumerate(zip(s, s[1:])):
        v = _velocity(denoiser, x, cur, extra)
        if callback is not None:
            callback(i, cur, x, x - cur * v)
        x_euler = x + (nxt - cur) * v
        if nxt == 0.0:
            x = x_euler
        else:
            v2 = _velocity(denoiser, x_euler, nxt, extra)
            x = x + (nxt - cur) * 0.5 * (v + v2)
    return x.to(out_dtype)


def sample_few_step(
    denoiser: DenoiserFn,
    x: Tensor,
    sigmas: Tensor,
    *,
    generator: torch.Generator | None = None,
    extra: dict[str, Any] | None = None,
    callback: Callback | None = None,
) -> Tensor:
    """Few-step consistency-style sampling (Self-Forcing / DMD inference).

    At each sigma predict ``x0 = x - sigma * v``; if the next sigma is > 0, re-noise with
    *fresh* noise: ``x = (1 - sigma_next) * x0 + sigma_next * eps``, eps drawn from
    ``generator`` (on x's device). Returns x at ``sigmas[-1]`` (B, ...) in x's dtype: the
    final x0 prediction when the schedule ends at 0, as it should.
    """
    s = _check(sigmas)
    out_dtype = x.dtype
    x = x.float()
    x0 = x
    for i, (cur, nxt) in enumerate(zip(s, s[1:])):
        v = _velocity(denoiser, x, cur, extra)
        x0 = x - cur * v
        if callback is not None:
            callback(i, cur, x, x0)
        if nxt > 0.0:
            eps = torch.randn(x.shape, generator=generator, device=x.device, dtype=torch.float32)
            x = (1 - nxt) * x0 + nxt * eps
        else:
            x = x0
    return x.to(out_dtype)


SAMPLERS: dict[str, Callable[..., Tensor]] = {"euler": sample_euler, "heun": sample_heun, "few_step": sample_few_step}
