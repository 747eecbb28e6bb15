"""The denoiser wrapper: model + guidance + dtype, the one callable samplers see.

Samplers call ``denoiser(x, sigma, **extra)`` and get a float32 velocity. This wrapper is
where the model's dtype (it may run in bf16) meets the sampler's float32, and where
classifier-free guidance lives (DESIGN.md: "Guidance and dtype handling live in one
denoiser wrapper, not in the model"). It holds no per-render state: the KV cache and the
prompt arrive through ``extra`` on each call.
"""

from __future__ import annotations

from typing import Any

import torch
from torch import Tensor, nn

from longtake.model.kv_cache import KVCache, PromptKV


class Denoiser:
    """``Denoiser(model)(x, sigma, text=..., cache=...) -> v`` (float32, x's shape).

    Args:
        model: a :class:`~longtake.model.dit.CausalWanDiT` (or anything with its forward).
        guidance_scale: classifier-free guidance w; ``v = v_u + w * (v_c - v_u)``. 1.0 = off
            (Self-Forcing / LongLive checkpoints are distilled and use none).
        uncond_text: the unconditional prompt (empty-prompt embeddings or its PromptKV), needed
            when guidance_scale != 1.
        dtype: dtype the model runs in; None = the model's parameter dtype.
        autocast: run the model under ``torch.autocast`` with this dtype (e.g. bfloat16:
            matmuls and convs in bf16, norms and softmax in float32, weights untouched).
            None = off. The built-in model trains under bf16 autocast, so this matches it.
    """

    def __init__(
        self,
        model: nn.Module,
        *,
        guidance_scale: float = 1.0,
        uncond_text: Tensor | PromptKV | None = None,
        dtype: torch.dtype | None = None,
        autocast: torch.dtype | None = None,
    ):
        if guidance_scale != 1.0 and uncond_text is None:
            raise ValueError("classifier-free guidance (guidance_scale != 1) needs uncond_text")
        self.model = model
        self.guidance_scale = float(guidance_scale)
        self.uncond_text = uncond_text
        self.dtype = dtype if dtype is not None else next(model.parameters()).dtype
        self.autocast = autocast

    def _model(self, x: Tensor, *args: Any, **kwargs: Any) -> Tensor:
        if self.autocast is None:  # leave any autocast the caller entered (training) as it is
            return self.model(x, *args, **kwargs)
        with torch.autocast(x.device.type, dtype=self.autocast):
            return self.model(x, *args, **kwargs)

    def __call__(
        self,
        x: Tensor,
        sigma: Tensor,
        *,
        text: Tensor | PromptKV | None = None,
        cache: KVCache | None = None,
        frame_offset: int | None = None,
        mode: str = "causal",
        **model_kwargs: Any,
    ) -> Tensor:
        """x (B, C, F, H, W), sigma (B,) or (B, F) -> v (B, C, F, H, W) float32. The cache is only read."""
        xm = x.to(self.dtype)
        kw = dict(cache=cache, frame_offset=frame_offset, mode=mode, write_cache=False, **model_kwargs)
        v = self._model(xm, sigma, text, **kw).float()
        if self.guidance_scale != 1.0:
            v_u = self._model(xm, sigma, self.uncond_text, **kw).float()
            v = v_u + self.guidance_scale * (v - v_u)
        return v

    def write_cache(self, x0: Tensor, cache: KVCache, *, text: Tensor | PromptKV | None = None, **model_kwargs: Any) -> None:
        """One pass of the clean chunk x0 (B, C, F, H, W) at sigma=0 that appends its K/V to the
        cache; ``model_kwargs`` (e.g. the DiT's ``layout``) as in the sampling passes."""
        sigma = torch.zeros(x0.shape[0], dtype=torch.float32, device=x0.device)  # (B,)
        self._model(x0.to(self.dtype), sigma, text, cache=cache, write_cache=True, **model_kwargs)
