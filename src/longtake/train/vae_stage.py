"""Stage 2: train the built-in video autoencoder on windows of StoryWorld frames."""

from __future__ import annotations

import dataclasses
import json
import logging
import math
from collections.abc import Callable
from pathlib import Path

import torch

from longtake.atomic import atomic_output, write_text_atomic
from longtake.model.vae_builtin import VAE_PRESETS, BuiltinVAE, BuiltinVAEConfig
from longtake.train.checkpoint import Clock, autocast, load_checkpoint, save_checkpoint, step_rng
from longtake.train.config import TrainConfig, TrainError
from longtake.train.data import FrameWindows
from longtake.train.plots import plot_losses

log = logging.getLogger(__name__)

OnLog = Callable[[str, int, int, dict[str, float]], None]


def vae_config(cfg: TrainConfig) -> BuiltinVAEConfig:
    try:
        base = VAE_PRESETS[cfg.vae_preset]
    except KeyError:
        raise TrainError(f"unknown VAE preset {cfg.vae_preset!r}; known: {', '.join(sorted(VAE_PRESETS))}") from None
    return BuiltinVAEConfig.from_dict({**base.to_dict(), **cfg.vae_changes})


def lr_at(step: int, total: int, base: float, warmup: int) -> float:
    """Linear warm-up, then cosine decay to a tenth of ``base``."""
    if step < warmup:
        return base * (step + 1) / warmup
    p = min(1.0, (step - warmup) / max(1, total - warmup))
    return base * (0.1 + 0.9 * 0.5 * (1 + math.cos(math.pi * p)))


def train_vae(run: Path, cfg: TrainConfig, shards: Path, on_log: OnLog | None = None) -> BuiltinVAE:
    """Train (or resume) the VAE; writes ``run/vae/vae.safetensors`` with a data-derived
    ``latent_scale`` so the DiT sees latents of about unit variance."""
    out = run / "vae"
    final = out / "vae.safetensors"
    if final.is_file():
        return BuiltinVAE.from_safetensors(final)
    torch.manual_seed(cfg.seed)
    vae = BuiltinVAE(vae_config(cfg))
    opt = torch.optim.AdamW(vae.parameters(), lr=cfg.vae_lr, betas=(0.9, 0.99), weight_decay=0.0)
    step, losses = 0, []
    ckpt = load_checkpoint(out / "ckpt.pt")
    if ckpt is not None:
        vae.load_state_dict(ckpt["model"])
        opt.load_state_dict(ckpt["opt"])
        step, losses = int(ckpt["step"]), [tuple(x) for x in ckpt["losses"]]
        log.info("VAE: resumed at step %d", step)
    data = FrameWindows(shards)
    frames = 1 + vae.temporal_factor * (cfg.vae_latent_frames - 1)
    clock = Clock(cfg.checkpoint_seconds)
    vae.train()
    while step < cfg.vae_steps:
        rng, _ = step_rng(cfg.seed, "vae", step)
        weight = None
        if cfg.vae_char_weight > 1.0 or cfg.vae_char_crops > 0:
            x, chars = data.batch(rng, cfg.vae_batch, frames, crop=cfg.vae_crop, masks=True, char_crops=cfg.vae_char_crops)
            weight = 1.0 + (cfg.vae_char_weight - 1.0) * chars  # (B, 1, frames, h, w)
        else:
            x = data.batch(rng, cfg.vae_batch, frames, crop=cfg.vae_crop)  # (B, 3, frames, h, w)
        for group in opt.param_groups:
            group["lr"] = lr_at(step, cfg.vae_steps, cfg.vae_lr, warmup=min(50, cfg.vae_steps))
        with autocast(cfg):
            loss, metrics = vae.loss(x, weight=weight)
        opt.zero_grad(set_to_none=True)
        loss.backward()
        torch.nn.utils.clip_grad_norm_(vae.parameters(), 1.0)
        opt.step()
        step += 1
        losses.append((step, metrics["l1"]))
        if on_log and (step % cfg.log_every == 0 or step == cfg.vae_steps):
            on_log("vae", step, cfg.vae_steps, metrics)
        if clock.due() or step == cfg.vae_steps:
            save_checkpoint(out / "ckpt.pt", {"model": vae.state_dict(), "opt": opt.state_dict(), "step": step, "losses": losses})
    plot_losses(run / "plots" / "vae_loss.png", {"L1 reconstruction": losses}, title="built-in VAE")
    vae.eval()
    with torch.no_grad():  # whole-frame reconstruction error of held windows, for the record
        rng, _ = step_rng(cfg.seed, "vae-eval", 0)
        if data.masks is not None:
            x, chars = data.batch(rng, 8, frames, masks=True)
        else:
            x, chars = data.batch(rng, 8, frames), None
        recon, _ = vae(x)
        err = (recon.clamp(-1, 1) - x).abs()
        l1 = float(err.mean())
        char_l1 = float((err * chars).sum() / (3 * chars.sum()).clamp_min(1)) if chars is not None else None
    log.info("VAE: whole-frame L1 %.4f, on character pixels %s (pixel scale [-1, 1])", l1,
             "n/a" if char_l1 is None else f"{char_l1:.4f}")

    # Latent scale from data: 1 / std of the latents of fresh windows.
    vae.eval()
    with torch.no_grad():
        rng, _ = step_rng(cfg.seed, "vae-scale", 0)
        z = torch.cat([vae.encode(data.batch(rng, 2, frames)) for _ in range(8)])
        std = float(z.float().std())
    scaled = BuiltinVAE(dataclasses.replace(vae.config, latent_scale=1.0 / max(std, 1e-6)))
    scaled.load_state_dict(vae.state_dict())
    scaled.eval()
    out.mkdir(parents=True, exist_ok=True)
    with atomic_output(final, suffix=".safetensors") as tmp:
        scaled.save_safetensors(tmp)
    log.info("VAE: latent std %.3f -> latent_scale %.3f", std, 1.0 / std)
    write_text_atomic(out / "eval.json", json.dumps({"whole_frame_l1": l1, "character_l1": char_l1, "latent_std": std, "steps": step}, indent=1))
    return scaled
