"""longtake.sample: noise schedules and samplers as pure functions, plus the denoiser wrapper."""

from longtake.sample.denoiser import Denoiser
from longtake.sample.samplers import SAMPLERS, sample_euler, sample_few_step, sample_heun
from longtake.sample.schedules import flow_shift, linear_sigmas, self_forcing_sigmas

__all__ = [
    "SAMPLERS",
    "Denoiser",
    "flow_shift",
    "linear_sigmas",
    "sample_euler",
    "sample_few_step",
    "sample_heun",
    "self_forcing_sigmas",
]
