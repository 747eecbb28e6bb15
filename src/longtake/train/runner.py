"""``longtake train``: run the stages of config.py into one run folder, resumably.

Run folder layout::

    train.json           the settings (a resumed run must use the same ones)
    timing.json          wall seconds of every stage (summed over resumed runs)
    data/vae_shards/     frame shards for the VAE (world/shards.py)
    data/latents/        latent shards for the DiT (train/data.py)
    vae/                 VAE checkpoint, then vae.safetensors
    dit/                 tokenizer vocabulary, DiT + text checkpoint
    plots/               vae_loss.png, dit_loss.png
    model/               the exported model folder (model/builtin.py format)

Kill it at any point and run the same command again: every stage continues from its last
checkpoint (at most ``checkpoint_seconds`` of work is lost) and finished stages are skipped.
"""

from __future__ import annotations

import json
import logging
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

import torch

from longtake.atomic import write_text_atomic
from longtake.train.config import TrainConfig, TrainError

log = logging.getLogger(__name__)


@dataclass(frozen=True)
class TrainEvent:
    """Progress of a run: a stage's step (or item) count and its latest metrics."""

    stage: str
    done: int
    total: int
    metrics: dict[str, float]


#: Settings that only go into model.json at export: a finished run may be exported again
#: with other values (e.g. a guidance scale chosen after measuring) without retraining.
EXPORT_ONLY = ("guidance_scale", "guidance_chunks", "paint_composite")
#: Settings that change how a run goes, not what it computes: a resume may change them.
HOUSEKEEPING = ("threads", "checkpoint_seconds", "log_every", "device", "workers")


def _check_run(run: Path, cfg: TrainConfig) -> None:
    path = run / "train.json"
    if path.is_file():
        old = json.loads(path.read_text(encoding="utf-8"))
        new = cfg.to_dict()
        defaults = TrainConfig().to_dict()
        # a setting added to longtake after this run started, left at its default (which
        # keeps the old behaviour), is not a change
        changed = sorted(k for k in set(old) | set(new) if old.get(k) != new.get(k) and not (k not in old and new.get(k) == defaults.get(k)))
        if any(k not in EXPORT_ONLY + HOUSEKEEPING for k in changed):
            raise TrainError(f"{run} holds a run with other settings (differs in: {', '.join(changed)}); use a new --out folder")
        if changed:
            write_text_atomic(path, json.dumps(new, indent=1))
    else:
        run.mkdir(parents=True, exist_ok=True)
        write_text_atomic(path, json.dumps(cfg.to_dict(), indent=1))


class _Timing:
    def __init__(self, run: Path) -> None:
        self.path = run / "timing.json"
        self.data = json.loads(self.path.read_text(encoding="utf-8")) if self.path.is_file() else {}

    def add(self, stage: str, seconds: float) -> None:
        self.data[stage] = round(self.data.get(stage, 0.0) + seconds, 2)
        self.data["total"] = round(sum(v for k, v in self.data.items() if k != "total"), 2)
        write_text_atomic(self.path, json.dumps(self.data, indent=1))


def train(run: str | Path, cfg: TrainConfig, *, on_event: Callable[[TrainEvent], None] | None = None,
          stop_after: str | None = None, command: str | None = None) -> Path:
    """Run (or resume) every stage into ``run``; returns the exported model folder."""
    from longtake.model.builtin import save_builtin
    from longtake.train.data import LatentClips, layout_prior, write_latent_shards
    from longtake.train.dit_stage import inference_sigmas, train_dit
    from longtake.train.vae_stage import train_vae
    from longtake.world.shards import write_shards

    if stop_after is not None and stop_after not in ("vae_data", "vae", "latents"):
        raise TrainError(f"--stop-after must be one of vae_data, vae, latents; got {stop_after!r}")
    run = Path(run)
    _check_run(run, cfg)
    if cfg.threads:
        torch.set_num_threads(cfg.threads)
    timing = _Timing(run)

    def emit(stage: str, done: int, total: int, metrics: dict[str, float] | None = None) -> None:
        if on_event:
            on_event(TrainEvent(stage, done, total, metrics or {}))

    def timed(stage: str, fn):
        t0 = time.monotonic()
        result = fn()
        timing.add(stage, time.monotonic() - t0)
        return result

    def stop(stage: str) -> bool:
        return stop_after == stage

    if cfg.init_from is not None:
        from longtake.train.finetune import copy_init_vae

        copy_init_vae(run, Path(cfg.init_from))
    shards = run / "data" / "vae_shards"
    vae_done = (run / "vae" / "vae.safetensors").is_file()  # the frame shards only feed the VAE
    if not vae_done and not (shards / "index.json").is_file():
        timed("vae_data", lambda: write_shards(
            shards, num_stories=cfg.vae_stories, seed=cfg.seed, duration_range=cfg.vae_duration,
            size=(cfg.size, cfg.size), fps=cfg.fps, stories_per_shard=8,
            on_progress=lambda p: emit("vae_data", p.stories_done, p.stories_total)))
    if stop("vae_data"):
        return run
    vae = timed("vae", lambda: train_vae(run, cfg, shards, on_log=lambda s, d, t, m: emit(s, d, t, m)))
    vae.eval()
    if stop("vae"):
        return run
    latents = run / "data" / "latents"
    from longtake.model.config import get_preset

    dcfg = get_preset(cfg.dit_preset).replace(**cfg.dit_changes)
    if not (latents / "index.json").is_file():
        timed("latents", lambda: write_latent_shards(latents, cfg, vae, latent_frames=dcfg.frames_per_chunk,
                                                     on_story=lambda d, t: emit("latents", d, t)))
    if stop("latents"):
        return run
    clips = LatentClips(latents, latent_frames=dcfg.frames_per_chunk, with_chars=cfg.char_weight > 0, with_attrs=cfg.attr_weight > 0,
                        with_slots=dcfg.layout_channels > 0)
    model_dir = run / "model"
    if (model_dir / "model.json").is_file():
        meta = json.loads((model_dir / "model.json").read_text(encoding="utf-8"))
        if all(meta.get(k, None) == getattr(cfg, k) for k in EXPORT_ONLY):
            return model_dir  # exported with these settings; other export-only settings export again
    dit, text = timed("dit", lambda: train_dit(run, cfg, clips, vae.latent_channels, on_log=lambda s, d, t, m: emit(s, d, t, m)))
    extra = {"command": command, "config": cfg.to_dict(), "timing": timing.data,
             "torch": torch.__version__, "threads": torch.get_num_threads()}
    prior = layout_prior(clips, dcfg.layout_slots) if dcfg.layout_channels else None
    save_builtin(model_dir, dit, vae, text, sigmas=inference_sigmas(cfg).tolist(), sampler=cfg.sampler, guidance_scale=cfg.guidance_scale,
                 guidance_chunks=cfg.guidance_chunks, layout_prior=prior, paint_composite=cfg.paint_composite, extra=extra)
    emit("export", 1, 1)
    return model_dir
