"""Training checkpoints: atomic, pickle-free to load, resumable.

A checkpoint is a dict of tensors, numbers, strings and lists (``torch.load(...,
weights_only=True)`` reads it; no pickled objects). Random numbers in training are drawn
from generators seeded by ``(seed, stage, step)``, so a resumed run draws exactly what an
uninterrupted one would have drawn without saving any RNG state.
"""

from __future__ import annotations

import logging
import time
from pathlib import Path
from typing import Any

import numpy as np
import torch

from longtake.atomic import atomic_output
from longtake.world.vocab import stable_seed

log = logging.getLogger(__name__)


def save_checkpoint(path: Path, state: dict[str, Any]) -> None:
    """Write ``state`` to ``path`` atomically (temporary file, then rename)."""
    path.parent.mkdir(parents=True, exist_ok=True)
    with atomic_output(path) as tmp:
        torch.save(state, tmp)
    log.info("checkpoint %s (step %s)", path, state.get("step"))


def load_checkpoint(path: Path) -> dict[str, Any] | None:
    """The checkpoint at ``path`` or None when there is none."""
    if not path.is_file():
        return None
    return torch.load(path, map_location="cpu", weights_only=True)


def step_rng(seed: int, stage: str, step: int) -> tuple[np.random.Generator, torch.Generator]:
    """numpy and torch generators for one step of one stage (resume-exact, no saved state)."""
    s = stable_seed("longtake-train", seed, stage, step)
    return np.random.default_rng(s), torch.Generator().manual_seed(s & (2**63 - 1))


class Clock:
    """Says when ``every`` seconds have passed since the last checkpoint (0: every step)."""

    def __init__(self, every: float) -> None:
        self.every = every
        self.last = time.monotonic()

    def due(self) -> bool:
        if time.monotonic() - self.last >= self.every:
            self.last = time.monotonic()
            return True
        return False


class EMA:
    """Exponential moving average of a module's floating-point parameters (kept in float32).

    The decay warms up as ``min(decay, (1 + n) / (10 + n))`` after ``n`` updates, so the
    average forgets the random initialisation within the first few hundred steps. (A fixed
    0.995 kept a third of the random init after 220 steps, and the exported model rendered
    pure noise while the raw weights already drew scenes; docs/training.md.)
    """

    def __init__(self, module: torch.nn.Module, decay: float) -> None:
        self.decay = decay
        self.shadow = {k: v.detach().float().clone() for k, v in module.state_dict().items() if v.is_floating_point()}

    def decay_at(self, updates: int) -> float:
        """The decay used for update number ``updates`` (0-based)."""
        return min(self.decay, (1.0 + updates) / (10.0 + updates))

    @torch.no_grad()
    def update(self, module: torch.nn.Module, updates: int) -> None:
        """Fold the module's weights in; ``updates`` = how many updates came before this one."""
        d = self.decay_at(updates)
        for k, v in module.state_dict().items():
            if k in self.shadow:
                self.shadow[k].lerp_(v.detach().float(), 1.0 - d)

    def copy_to(self, module: torch.nn.Module) -> None:
        state = module.state_dict()
        module.load_state_dict({k: self.shadow.get(k, v).to(v.dtype) for k, v in state.items()})


def autocast(cfg: Any, device: torch.device | str = "cpu") -> torch.autocast:
    """bfloat16 autocast on ``device``'s type for a training forward pass when ``cfg.bf16``
    (parameters, gradients, optimiser state and EMA stay float32)."""
    return torch.autocast(torch.device(device).type, dtype=torch.bfloat16, enabled=bool(cfg.bf16))
