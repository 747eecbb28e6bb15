"""The built-in model's weights folder: format, saver and loader.

One folder holds everything the built-in generator needs; nothing is downloaded::

    <folder>/model.json          {"format": 1, "dit": <DiTConfig fields>, "sampler": "few_step",
                                  "sigmas": [...], "guidance_scale": 1.0,
                                  "plan": {"frames_per_chunk": 12, "first_chunk_frames": 9},
                                  "train": {...free-form provenance...}}
    <folder>/dit.safetensors     the DiT state dict, stored float16 (loaded as float32)
    <folder>/vae.safetensors     BuiltinVAE.save_safetensors (config in its metadata)
    <folder>/text/               BuiltinTextEncoder.save_pretrained (text_encoder.safetensors + vocab.json)
    <folder>/sprites.safetensors optional: the figure layer (model/sprites.py; config under "sprites"
                                 in model.json), added by ``longtake train-sprites --install``

The DiT is stored in float16 so that the three parts together stay under the repository's
40 MB cap (DiT ~7M parameters -> 14 MB); every model still runs in float32 on the CPU.
``model.json``'s ``plan`` is what the generator's parts imply (latent frames per chunk x the
VAE's temporal factor); it is written for people and checked on load, never trusted over the
parts.

The shipped weights live in ``longtake/assets/builtin/`` (package data) and are made by
``longtake train --preset builtin``; :func:`load_builtin` with no folder reads them.
"""

from __future__ import annotations

import dataclasses
import hashlib
import json
import logging
import os
import secrets
import shutil
from dataclasses import dataclass, field
from importlib import resources
from pathlib import Path
from typing import Any

import torch

from longtake.model.config import DiTConfig
from longtake.model.dit import CausalWanDiT
from longtake.model.errors import ModelError
from longtake.model.layout import LayoutPrior
from longtake.model.loading import config_from_dict
from longtake.model.look_reader import LOOK_FILE, LookReader, load_reader
from longtake.model.sprites import SPRITES_FILE, FigureSprites, load_sprites
from longtake.model.text_builtin import VOCAB_NAME, WEIGHTS_NAME, BuiltinTextEncoder
from longtake.model.vae_builtin import BuiltinVAE

log = logging.getLogger(__name__)

BUILTIN_FORMAT = 1
MODEL_JSON = "model.json"
DIT_FILE = "dit.safetensors"
VAE_FILE = "vae.safetensors"
TEXT_DIR = "text"
#: Every file of a complete folder, relative to it (the keys of :attr:`BuiltinModel.weights`).
FILES = (MODEL_JSON, DIT_FILE, VAE_FILE, f"{TEXT_DIR}/{WEIGHTS_NAME}", f"{TEXT_DIR}/{VOCAB_NAME}")
#: What the repository accepts for the shipped folder (issue 4: 40 MB at most in all).
MAX_SHIPPED_BYTES = 40_000_000
_FP16_MAX = 65504.0


class BuiltinWeightsMissing(ModelError):
    """The shipped folder has no weights (they are made by ``longtake train``)."""


@dataclass(frozen=True)
class BuiltinSettings:
    """The sampling settings and provenance stored in ``model.json``."""

    sampler: str = "few_step"
    sigmas: tuple[float, ...] = ()
    guidance_scale: float = 1.0
    guidance_chunks: str = "all"
    # 0 = off; else the coverage above which the figure painter's latents replace the sampled
    # ones (generate/causal.py ``paint_composite``)
    paint_composite: float = 0.0
    frames_per_chunk: int = 12  # output frames of every chunk after the first
    first_chunk_frames: int = 9  # output frames of the first chunk
    # where characters stand when the DiT has a layout input (model/layout.py), None otherwise
    layout_prior: LayoutPrior | None = None
    train: dict[str, Any] = field(default_factory=dict)


@dataclass
class BuiltinModel:
    """A loaded built-in model: the three parts, their settings and the file hashes.

    ``weights`` maps every file of the folder (relative path) to its sha256; the render
    manifest records it, so a video names the exact weights that made it.
    """

    dit: CausalWanDiT
    vae: BuiltinVAE
    text_encoder: BuiltinTextEncoder
    settings: BuiltinSettings
    weights: dict[str, str]
    folder: Path
    # the figure layer (model/sprites.py), None for a folder without ``sprites.safetensors``
    sprites: FigureSprites | None = None
    # reads a look off a reference image (model/look_reader.py), None without ``looks.safetensors``
    look_reader: LookReader | None = None

    @property
    def digest(self) -> str:
        """One sha256 over all files (see :func:`weights_digest`)."""
        return weights_digest(self.weights)


# --------------------------------------------------------------------------- locations


def shipped_folder() -> Path:
    """``longtake/assets/builtin/`` of the installed package (may not exist yet)."""
    return Path(str(resources.files("longtake").joinpath("assets", "builtin")))


def weights_present(folder: str | Path | None = None) -> bool:
    """True when ``folder`` (default: the shipped one) holds every file of the format."""
    root = shipped_folder() if folder is None else Path(folder).expanduser()
    return all((root / name).is_file() for name in FILES)


def _sha256(path: Path) -> str:
    with open(path, "rb") as fh:
        return hashlib.file_digest(fh, "sha256").hexdigest()


def weights_hashes(folder: str | Path | None = None) -> dict[str, str]:
    """sha256 of every file of a complete folder: relative path -> hex digest."""
    root = require_folder(folder)
    names = FILES + tuple(f for f in (SPRITES_FILE, LOOK_FILE) if (root / f).is_file())
    return {name: _sha256(root / name) for name in names}


def weights_digest(weights: dict[str, str]) -> str:
    """One sha256 for a set of file hashes: the hash of ``sha256sum``-style lines, sorted by path."""
    lines = "".join(f"{digest}  {name}\n" for name, digest in sorted(weights.items()))
    return hashlib.sha256(lines.encode()).hexdigest()


def require_folder(folder: str | Path | None) -> Path:
    """The folder to read, or a one-line error naming what is missing and what to do."""
    if folder is None:
        root = shipped_folder()
        missing = [name for name in FILES if not (root / name).is_file()]
        if missing:
            raise BuiltinWeightsMissing(
                f"the built-in model's weights are not in this install yet ({root / missing[0]} is missing); "
                "render with --model storyworld, train them with `longtake train --preset builtin`, "
                "or pass --weights DIR"
            )
        return root
    root = Path(folder).expanduser()
    if not root.is_dir():
        raise ModelError(f"built-in model folder not found: {root} is not a folder; expected one written by save_builtin (longtake train)")
    missing = [name for name in FILES if not (root / name).is_file()]
    if missing:
        raise ModelError(f"built-in model folder {root} is incomplete: {', '.join(missing)} missing; expected {', '.join(FILES)}")
    return root


# --------------------------------------------------------------------------- save


def _dit_dict(config: DiTConfig) -> dict[str, Any]:
    data = dataclasses.asdict(config)
    return {k: list(v) if isinstance(v, tuple) else v for k, v in data.items()}


def _plan(dit: CausalWanDiT, vae: BuiltinVAE) -> dict[str, int]:
    f = dit.config.frames_per_chunk
    return {"frames_per_chunk": vae.temporal_factor * f, "first_chunk_frames": vae.frames_for_latents(f)}


def _check_parts(dit: CausalWanDiT, vae: BuiltinVAE, text_encoder: BuiltinTextEncoder, where: str) -> None:
    cfg = dit.config
    problems = []
    if vae.latent_channels != cfg.in_channels or cfg.out_channels != cfg.in_channels:
        problems.append(f"the VAE has {vae.latent_channels} latent channels, the DiT takes {cfg.in_channels} and predicts {cfg.out_channels}")
    if text_encoder.dim != cfg.text_dim:
        problems.append(f"the text encoder gives {text_encoder.dim}-dim embeddings, the DiT expects text_dim={cfg.text_dim}")
    if problems:
        raise ModelError(f"{where}: the parts do not fit together: " + "; ".join(problems))


def _half_state(dit: CausalWanDiT) -> dict[str, torch.Tensor]:
    """The DiT state dict with float tensors in float16 (refusing values float16 cannot hold)."""
    out = {}
    for name, t in dit.state_dict().items():
        t = t.detach().cpu()
        if t.is_floating_point():
            if t.numel() and float(t.abs().max()) > _FP16_MAX:
                raise ModelError(f"DiT parameter {name} holds values beyond float16's range ({float(t.abs().max()):.3g} > {_FP16_MAX}); cannot store it in float16")
            t = t.to(torch.float16)
        out[name] = t.contiguous().clone()
    return out


def save_builtin(
    folder: str | Path,
    dit: CausalWanDiT,
    vae: BuiltinVAE,
    text_encoder: BuiltinTextEncoder,
    *,
    sigmas: Any,
    sampler: str = "few_step",
    guidance_scale: float = 1.0,
    guidance_chunks: str = "all",
    layout_prior: LayoutPrior | None = None,
    paint_composite: float = 0.0,
    extra: dict[str, Any] | None = None,
) -> Path:
    """Write a built-in model folder atomically (a hidden temp folder, then a rename).

    ``extra`` is free-form provenance (training command, steps, data, losses) stored under
    ``"train"`` in ``model.json``. ``layout_prior`` (required for a DiT with a layout input)
    is where the generator places characters (``"layout_prior"`` in ``model.json``). Replaces ``folder`` if it exists. Returns ``folder``.
    """
    from safetensors.torch import save_file

    folder = Path(folder).expanduser()
    _check_parts(dit, vae, text_encoder, str(folder))
    s = [float(x) for x in torch.as_tensor(sigmas, dtype=torch.float32).flatten().tolist()]
    if len(s) < 2 or s[-1] != 0.0:
        raise ModelError(f"sigmas must hold at least 2 values and end at 0, got {s}")
    if dit.config.layout_channels and layout_prior is None:
        raise ModelError(f"{folder}: a DiT with a layout input needs a layout_prior (where characters stand)")
    meta = {
        "format": BUILTIN_FORMAT,
        "dit": _dit_dict(dit.config),
        "sampler": str(sampler),
        "sigmas": s,
        "guidance_scale": float(guidance_scale),
        "guidance_chunks": str(guidance_chunks),
        "paint_composite": float(paint_composite),
        "plan": _plan(dit, vae),
        "train": dict(extra or {}),
    }
    if layout_prior is not None:
        meta["layout_prior"] = layout_prior.to_dict()
    text = json.dumps(meta, indent=2, sort_keys=True, allow_nan=False) + "\n"
    folder.parent.mkdir(parents=True, exist_ok=True)
    tmp = folder.with_name(f".{folder.name}.{secrets.token_hex(4)}.tmp")
    old = folder.with_name(f".{folder.name}.{secrets.token_hex(4)}.old")
    try:
        tmp.mkdir()
        save_file(_half_state(dit), str(tmp / DIT_FILE), metadata={"format": "longtake-builtin-dit", "stored_dtype": "float16"})
        vae.save_safetensors(tmp / VAE_FILE)
        text_encoder.save_pretrained(tmp / TEXT_DIR)
        (tmp / MODEL_JSON).write_text(text, encoding="utf-8")
        if folder.exists():
            os.replace(folder, old)
        os.replace(tmp, folder)
    finally:
        shutil.rmtree(tmp, ignore_errors=True)
        shutil.rmtree(old, ignore_errors=True)
    size = sum((folder / name).stat().st_size for name in FILES)
    if size > MAX_SHIPPED_BYTES:
        log.warning("built-in model folder %s is %.1f MB, over the %.0f MB the repository ships", folder, size / 1e6, MAX_SHIPPED_BYTES / 1e6)
    log.info("saved built-in model to %s (%.1f MB)", folder, size / 1e6)
    return folder


# --------------------------------------------------------------------------- load


def _read_meta(path: Path) -> dict[str, Any]:
    try:
        meta = json.loads(path.read_text(encoding="utf-8"))
    except json.JSONDecodeError as err:
        raise ModelError(f"{path}: not valid JSON ({err.msg} at line {err.lineno})") from None
    if not isinstance(meta, dict) or meta.get("format") != BUILTIN_FORMAT:
        got = meta.get("format") if isinstance(meta, dict) else type(meta).__name__
        raise ModelError(f"{path}: format {got!r}; this longtake reads built-in model format {BUILTIN_FORMAT}")
    for key, kind in (("dit", dict), ("sigmas", list), ("sampler", str)):
        if not isinstance(meta.get(key), kind):
            raise ModelError(f"{path}: '{key}' must be a {kind.__name__}, got {type(meta.get(key)).__name__}")
    return meta


def _load_dit(path: Path, config: DiTConfig, device: str | torch.device) -> CausalWanDiT:
    from safetensors import safe_open

    model = CausalWanDiT(config)
    expected = model.state_dict()
    with safe_open(str(path), framework="pt", device="cpu") as fh:
        keys = set(fh.keys())
        missing = sorted(set(expected) - keys)
        unexpected = sorted(keys - set(expected))
        if missing or unexpected:
            raise ModelError(
                f"{path} does not match the DiT described in model.json: "
                f"{len(missing)} missing keys {missing[:3]}, {len(unexpected)} unexpected keys {unexpected[:3]}"
            )
        state = {}
        for name in expected:
            shape = tuple(fh.get_slice(name).get_shape())
            want = tuple(expected[name].shape)
            if shape != want:
                raise ModelError(f"{path}: {name} has shape {shape}, the DiT config in model.json expects {want}")
            state[name] = fh.get_tensor(name).to(expected[name].dtype)
    model.load_state_dict(state, strict=True)
    return model.to(device).eval()


def load_builtin(folder: str | Path | None = None, *, device: str | torch.device = "cpu", sprites: bool = True) -> BuiltinModel:
    """Load a built-in model folder (default: the shipped weights) in float32 on ``device``;
    ``sprites=False`` leaves its figure layer out (``longtake train-sprites`` replaces it).

    Raises :class:`ModelError` (one line: what, where, what was expected) for a missing
    folder or file, a bad ``model.json``, or weights whose keys or shapes do not match;
    :class:`BuiltinWeightsMissing` when the shipped folder has no weights yet.
    """
    root = require_folder(folder)
    meta = _read_meta(root / MODEL_JSON)
    config = config_from_dict(DiTConfig, meta["dit"], ModelError)
    dit = _load_dit(root / DIT_FILE, config, device)
    vae = BuiltinVAE.from_safetensors(root / VAE_FILE, device=device).eval()
    text = BuiltinTextEncoder.from_pretrained(root / TEXT_DIR, device=device).eval()
    _check_parts(dit, vae, text, str(root))
    derived = _plan(dit, vae)
    if meta.get("plan", derived) != derived:
        raise ModelError(f"{root / MODEL_JSON}: plan {meta['plan']} does not match the parts, which make {derived}")
    prior = None
    if config.layout_channels:
        if not isinstance(meta.get("layout_prior"), dict) or not meta["layout_prior"]:
            raise ModelError(f"{root / MODEL_JSON}: the DiT has a layout input but 'layout_prior' is missing or empty")
        try:
            prior = LayoutPrior.from_dict(meta["layout_prior"])
        except (TypeError, ValueError) as err:
            raise ModelError(f"{root / MODEL_JSON}: 'layout_prior' must map a character count to boxes [y0, x0, y1, x1] ({err})") from None
    pc = meta.get("paint_composite", 0.0)
    if isinstance(pc, bool) or not isinstance(pc, (int, float)) or not (pc == 0 or (config.paint_hidden and 0 < pc < 1)):
        raise ModelError(f"{root / MODEL_JSON}: 'paint_composite' must be 0 or, for a DiT with a figure painter, a coverage threshold in (0, 1); "
                         f"got {pc!r} (paint_hidden={config.paint_hidden})")
    settings = BuiltinSettings(
        sampler=meta["sampler"],
        sigmas=tuple(float(x) for x in meta["sigmas"]),
        guidance_scale=float(meta.get("guidance_scale", 1.0)),
        guidance_chunks=str(meta.get("guidance_chunks", "all")),
        paint_composite=float(meta.get("paint_composite", 0.0)),
        frames_per_chunk=derived["frames_per_chunk"],
        first_chunk_frames=derived["first_chunk_frames"],
        layout_prior=prior,
        train=dict(meta.get("train") or {}),
    )
    layer = load_sprites(root, meta, text.dim, device) if sprites else None
    if layer is not None and prior is None:
        raise ModelError(f"{root / MODEL_JSON}: sprites stand in the layout prior's boxes, but the DiT has no layout input")
    reader = load_reader(root, meta, device) if layer is not None else None
    weights = weights_hashes(root)
    log.info("loaded built-in model from %s (weights %s)", root, weights_digest(weights)[:12])
    return BuiltinModel(dit, vae, text, settings, weights, root, layer, reader)
