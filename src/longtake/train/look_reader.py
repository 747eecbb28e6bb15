"""Train the look reader (model/look_reader.py) on figure crops of StoryWorld's training split.

    longtake train-look-reader --crops runs/sprites/crops.pt --set stories=3000 \
        --model src/longtake/assets/builtin --out runs/look_reader --install

The crops are the figure layer's (train/sprites.py ``collect_crops``): windows around whole,
unoverlapped figures of training-split stories, each with every attribute as drawn and its
true look. ``--crops`` takes the ``crops.pt`` of ``longtake train-sprites`` runs (repeat it);
``--set stories=N`` renders N more stories (sampler seed ``render_seed``, a crop every
``every`` frames) into the --out folder, reused when the same command runs again. More
characters matter more than more crops of each: with the 1 200 stories of train-sprites
alone the reader learnt those characters, not looks (session 22, docs/memory.md).

Each crop's window is cut again as a reference image is (model/look_reader.py
``normal_window``) from the true figure box; training moves, scales and relights it a little
(``augment``), as a box GrabCut finds may be off. Loss: cross-entropy for each classed part
(a part the figure does not have, as a bag's colour without a bag, is ignored) plus the
squared error of the continuous parts. Every ``holdout``-th story of each crops file is held
out and scored at the end: the share read right per part, against always answering the
training split's most common class. ``--install`` writes ``looks.safetensors`` and
model.json's "look_reader" (with those numbers) into the model folder. It is not
checkpointed (minutes to tens of minutes on a CPU; run it again).
"""

from __future__ import annotations

import dataclasses
import json
import logging
import math
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch
import torch.nn.functional as F

from longtake.atomic import write_text_atomic
from longtake.model.look_reader import HEADS, SCALES, LookReader, LookReaderConfig, augment, normal_window, save_reader, targets, to_input

logger = logging.getLogger(__name__)


@dataclass(frozen=True)
class LookReaderTrainConfig:
    steps: int = 3000
    batch: int = 128
    lr: float = 2e-3
    warmup: int = 100
    holdout: int = 10  # every holdout-th story of the crops is held out
    scale_weight: float = 1.0
    weight_decay: float = 0.05
    seed: int = 0
    log_every: int = 250
    stories: int = 0  # more training-split stories to render crops of (in the --out folder, reused), besides --crops
    render_seed: int = 1  # their sampler seed (train-sprites renders seed 0)
    every: int = 12  # frames between the crops taken of those stories

    def __post_init__(self) -> None:
        from longtake.train.config import TrainError

        if self.steps < 1 or self.batch < 1 or self.holdout < 2 or self.warmup < 0 or self.stories < 0 or self.every < 1:
            raise TrainError(f"steps, batch and every must be >= 1, holdout >= 2, warmup and stories >= 0; got "
                             f"{self.steps}, {self.batch}, {self.every}, {self.holdout}, {self.warmup}, {self.stories}")


def windows_from_crops(crops: dict) -> np.ndarray:
    """The figure layer's crops (N, 64, 40, 4) RGBA -> reader windows (N, 64, 40, 3) uint8,
    each cut around its figure's true box (the alpha's)."""
    x = crops["x"].numpy()
    out = np.empty((len(x), 64, 40, 3), np.uint8)
    for i, crop in enumerate(x):
        rows, cols = np.nonzero(crop[:, :, 3])
        box = (cols.min(), rows.min(), cols.max() + 1, rows.max() + 1) if rows.size else (0, 0, crop.shape[1], crop.shape[0])
        out[i] = normal_window(crop[:, :, :3], box)
    return out


def _loss(out: dict[str, torch.Tensor], cls: torch.Tensor, scales: torch.Tensor, cfg: LookReaderTrainConfig) -> torch.Tensor:
    total = sum(F.cross_entropy(out[h].float(), cls[:, j], ignore_index=-1) if bool((cls[:, j] >= 0).any()) else out[h].sum() * 0
                for j, h in enumerate(HEADS))
    return total / len(HEADS) + cfg.scale_weight * F.mse_loss(out["scales"].float(), scales)


@torch.no_grad()
def score(reader: LookReader, x: torch.Tensor, cls: torch.Tensor, scales: torch.Tensor, train_cls: torch.Tensor) -> dict:
    """Share read right per part on ``x`` (where the part exists), the share of always
    answering the training split's most common class, and the continuous parts' mean
    absolute error (in their half ranges)."""
    reader.eval()
    outs = [reader(x[i : i + 512]) for i in range(0, len(x), 512)]
    res: dict = {"parts": {}, "scales_mae": {}}
    for j, h in enumerate(HEADS):
        pred = torch.cat([o[h].argmax(1) for o in outs])
        keep = cls[:, j] >= 0
        seen = train_cls[:, j][train_cls[:, j] >= 0]
        common = int(torch.bincount(seen).argmax()) if seen.numel() else 0
        if bool(keep.any()):
            res["parts"][h] = {"right": float((pred[keep] == cls[keep, j]).float().mean()),
                               "most_common": float((cls[keep, j] == common).float().mean()), "n": int(keep.sum())}
    sc = torch.cat([o["scales"] for o in outs]).float()
    for k, name in enumerate(SCALES):
        res["scales_mae"][name] = float((sc[:, k].clamp(-1, 1) - scales[:, k]).abs().mean())
    return res


def train(crops: dict, cfg: LookReaderTrainConfig, log: Callable[[str], None]) -> tuple[LookReader, dict]:
    wins = to_input(windows_from_crops(crops))
    cls, scales, _ = targets(crops["full"], crops["looks"])
    held = (crops["story"] % cfg.holdout) == 0
    tr, va = torch.nonzero(~held).flatten(), torch.nonzero(held).flatten()
    torch.manual_seed(cfg.seed)
    reader = LookReader(LookReaderConfig())
    opt = torch.optim.AdamW(reader.parameters(), lr=cfg.lr, weight_decay=cfg.weight_decay)
    gen = torch.Generator().manual_seed(cfg.seed)
    t0 = time.monotonic()
    for step in range(cfg.steps):
        lr = cfg.lr * min(1.0, (step + 1) / max(1, cfg.warmup)) * 0.5 * (1 + math.cos(math.pi * step / cfg.steps))
        for g in opt.param_groups:
            g["lr"] = lr
        idx = tr[torch.randint(len(tr), (cfg.batch,), generator=gen)]
        reader.train()
        loss = _loss(reader(augment(wins[idx], gen)), cls[idx], scales[idx], cfg)
        opt.zero_grad(set_to_none=True)
        loss.backward()
        opt.step()
        if cfg.log_every and (step + 1) % cfg.log_every == 0:
            log(f"look reader step {step + 1}/{cfg.steps}: loss {loss.item():.3f} ({time.monotonic() - t0:.0f} s)")
    metrics = score(reader, wins[va], cls[va], scales[va], cls[tr])
    metrics |= {"train_crops": len(tr), "held_crops": len(va), "seconds": round(time.monotonic() - t0, 1), "steps": cfg.steps}
    return reader.eval(), metrics


def _merge(parts: list[dict]) -> dict:
    """Crops files -> one (story ids kept apart per file)."""
    out: dict = {k: [] for k in ("x", "full", "looks", "story")}
    offset = 0
    for part in parts:
        for k in ("x", "full", "looks"):
            out[k].append(part[k])
        out["story"].append(part["story"] + offset)
        offset += int(part["story"].max()) + 1 if len(part["story"]) else 0
    return {k: torch.cat(v) for k, v in out.items()}


def rendered_crops(cfg: LookReaderTrainConfig, out: Path, log: Callable[[str], None]) -> dict:
    """Crops of ``cfg.stories`` training-split stories of sampler seed ``cfg.render_seed``
    (train/sprites.py ``collect_crops``), cached in ``out``."""
    from longtake.atomic import atomic_output
    from longtake.model.sprites import SpriteConfig
    from longtake.train.sprites import SpriteTrainConfig, collect_crops

    path = out / f"crops_seed{cfg.render_seed}_{cfg.stories}_every{cfg.every}.pt"
    if path.is_file():
        return torch.load(path, weights_only=False)
    t0 = time.monotonic()
    crops = collect_crops(SpriteTrainConfig(stories=cfg.stories, every=cfg.every, seed=cfg.render_seed), SpriteConfig())
    crops = {k: crops[k] for k in ("x", "full", "looks", "story")}
    with atomic_output(path) as tmp:
        torch.save(crops, tmp)
    log(f"crops: {len(crops['x'])} figures from {cfg.stories} stories in {time.monotonic() - t0:.0f} s ({path})")
    return crops


def run(crops_paths: list[Path], out: Path, cfg: LookReaderTrainConfig, *, model: Path | None = None, install: bool = False,
        log: Callable[[str], None] | None = None, command: str | None = None) -> dict:
    """Train on the crops files ``crops_paths`` and ``cfg.stories`` more rendered stories, write
    ``out/metrics.json``, and with ``install`` the reader into ``model``."""
    from longtake.train.config import TrainError

    log = log or logger.info
    if not crops_paths and cfg.stories == 0:
        raise TrainError("nothing to train on: give --crops (crops.pt of a `longtake train-sprites` run) or --set stories=N")
    for path in crops_paths:
        if not path.is_file():
            raise TrainError(f"crops not found: {path} (longtake train-sprites writes crops.pt into its --out folder)")
    if install and (model is None or not (Path(model) / "model.json").is_file()):
        raise TrainError(f"--install needs --model, a built-in model folder with a model.json; got {model}")
    parts = []
    for path in crops_paths:
        part = torch.load(path, weights_only=False)
        if not isinstance(part, dict) or not {"x", "full", "looks", "story"} <= set(part):
            raise TrainError(f"{path} is not a figure layer's crops file (expected x, full, looks, story)")
        parts.append(part)
    out.mkdir(parents=True, exist_ok=True)
    if cfg.stories:
        parts.append(rendered_crops(cfg, out, log))
    crops = _merge(parts)
    reader, metrics = train(crops, cfg, log)
    record = {"command": command or "longtake train-look-reader", "config": dataclasses.asdict(cfg),
              "crops": [str(p) for p in crops_paths], "metrics": metrics}
    write_text_atomic(out / "metrics.json", json.dumps(record, indent=1) + "\n")
    for h, m in metrics["parts"].items():
        log(f"held out: {h:22s} {m['right']:.3f} right (most common class {m['most_common']:.3f}, n={m['n']})")
    if install:
        save_reader(model, reader, provenance=record)
        log(f"installed into {model}")
    return metrics
