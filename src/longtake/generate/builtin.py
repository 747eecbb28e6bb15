"""The built-in generator: a :class:`MemoryGenerator` (a CausalGenerator with a memory mode) over a built-in model folder.

``longtake render`` (no ``--model``) and ``Pipeline.from_pretrained("builtin")`` come here
through the generator registry in :mod:`longtake.pipeline`.
"""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path

import torch

from longtake.generate.causal import GenerateError, Precision, resolve_autocast
from longtake.generate.memory import MemoryGenerator
from longtake.memory.cast import CastMember
from longtake.memory.config import DEFAULT_MODE, MemoryConfig, MemoryMode
from longtake.model.builtin import load_builtin
from longtake.sample.schedules import sampler_sigmas


def builtin_autocast(precision: str, device: str | torch.device) -> torch.dtype | None:
    """:func:`resolve_autocast` for the built-in model, except that "auto" on a CUDA device is
    plain float32: the model is too small for bf16 to pay there. Measured on an H200 (session
    14, docs/models.md "Speed"): 2 minutes of video at 12.96x real time in float32 (61 ms per
    chunk) against 7.33x under bf16 autocast (104 ms), second of two runs each; the casts cost
    more than the matrix products save. On a CPU with native bf16, autocast halves a chunk."""
    if precision == "auto" and torch.device(device).type == "cuda":
        return resolve_autocast("float32", device)
    return resolve_autocast(precision, device)


def builtin_generator(
    weights: str | Path | None = None,
    *,
    device: str | torch.device = "cpu",
    sampler: str | None = None,
    steps: int | None = None,
    shift: float | None = None,
    precision: Precision = "auto",
    memory: MemoryMode | MemoryConfig = DEFAULT_MODE,
    cast: Sequence[CastMember] = (),
    guidance: float | None = None,
    sprites: bool = True,
) -> MemoryGenerator:
    """The built-in model as a generator.

    Args:
        weights: a built-in model folder (:mod:`longtake.model.builtin`); None reads the
            weights shipped with the package.
        device: where the model runs ("cpu", "cuda", ...); the model loads in float32.
        sampler: override the sampler stored in ``model.json`` ("few_step", "euler", "heun").
        steps: override the number of denoising steps: ``steps`` sigmas of the schedule
            ``sampler`` uses (Self-Forcing's timesteps for "few_step", evenly spaced sigmas for
            "euler"/"heun"), shifted by ``shift``, instead of the stored sigmas.
        shift: the flow shift of that schedule (default 5, Self-Forcing's; 1 = unshifted);
            with ``shift`` alone, the stored number of steps is kept.
        precision: "auto" (on a CPU: bfloat16 autocast where the hardware has native bf16,
            as the model was trained, else float32; on a GPU: float32, see
            :func:`builtin_autocast`), "float32" or "bfloat16".
        memory: the memory mode (docs/memory.md) or a full MemoryConfig; default
            :data:`~longtake.memory.config.DEFAULT_MODE` ("entity").
        cast: characters and locations with reference images, for the entity memory.
        guidance: override the classifier-free guidance scale stored in ``model.json``
            (1.0 = off); the chunks it applies to stay as stored (``guidance_chunks``).
        sprites: draw the characters with the folder's figure layer when it has one
            (:mod:`longtake.model.sprites`; ``sprites.safetensors``); False renders the
            DiT's own figures only.
    """
    autocast = builtin_autocast(precision, device)
    model = load_builtin(weights, device=device)
    sigmas: torch.Tensor | tuple[float, ...] = model.settings.sigmas
    kind = sampler or model.settings.sampler
    if steps is not None or shift is not None:
        n = len(sigmas) - 1 if steps is None else int(steps)
        if n < 1:
            raise GenerateError(f"steps must be at least 1, got {steps}")
        if shift is not None and not shift > 0:
            raise GenerateError(f"shift must be > 0, got {shift}")
        sh = 5.0 if shift is None else float(shift)
        sigmas = sampler_sigmas(kind, n, sh)
    return MemoryGenerator(
        model.dit,
        model.vae,
        model.text_encoder,
        sigmas=torch.as_tensor(sigmas, dtype=torch.float32),
        sampler=kind,  # type: ignore[arg-type]
        guidance_scale=model.settings.guidance_scale if guidance is None else float(guidance),
        guidance_chunks=model.settings.guidance_chunks,
        autocast=autocast,
        name="builtin",
        weights=model.weights,
        layout_prior=model.settings.layout_prior,
        paint_composite=model.settings.paint_composite,
        sprites=model.sprites if sprites else None,
        look_reader=model.look_reader if sprites else None,
        memory=memory,
        cast=cast,
    )
