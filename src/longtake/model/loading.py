"""Small helpers shared by the model configs and the local-path loaders."""

from __future__ import annotations

import dataclasses
from pathlib import Path
from typing import Any, TypeVar

T = TypeVar("T")


def check_fields(cls: type, names: Any, error: type[Exception]) -> None:
    """Raise ``error`` naming any of ``names`` that is not a field of dataclass ``cls``."""
    known = {f.name for f in dataclasses.fields(cls)}
    unknown = sorted(set(names) - known)
    if unknown:
        raise error(f"unknown {cls.__name__} field(s) {unknown}; known: {sorted(known)}")


def config_from_dict(cls: type[T], data: dict[str, Any], error: type[Exception]) -> T:
    """Build dataclass ``cls`` from ``data``, refusing unknown keys with ``error``."""
    check_fields(cls, data, error)
    return cls(**data)


def require_model_folder(folder: Path, what: str, hint: str, error: type[Exception]) -> Path:
    """``folder`` if it is a folder with a config.json, else a clear ``error``.

    Weights are only ever read from a local path the user gives; nothing is downloaded.
    """
    if not folder.is_dir():
        raise error(f"{what} not found: {folder} is not a folder. {hint}; longtake never downloads weights.")
    if not (folder / "config.json").is_file():
        raise error(f"{what} folder {folder} has no config.json")
    return folder


class ChannelsConfig:
    """to_dict / from_dict for a frozen dataclass config with a ``channels`` tuple (JSON has lists)."""

    def to_dict(self) -> dict:
        d = dataclasses.asdict(self)  # type: ignore[call-overload]
        d["channels"] = list(d["channels"])
        return d

    @classmethod
    def from_dict(cls, data: dict):  # type: ignore[no-untyped-def]
        d = dict(data)
        if "channels" in d:
            d["channels"] = tuple(int(c) for c in d["channels"])
        return cls(**d)


def save_folder_part(folder: str | Path, filename: str, key: str, module: Any, config: dict, *, provenance: dict | None, fmt: str) -> None:
    """Add an optional part to a built-in model folder: ``filename`` (its state dict in float16,
    safetensors) and model.json's ``key`` (``config`` plus ``provenance`` under "train"), each
    written atomically."""
    import json

    import torch
    from safetensors.torch import save_file

    from longtake.atomic import atomic_output, write_text_atomic

    folder = Path(folder)
    meta_path = folder / "model.json"
    meta = json.loads(meta_path.read_text(encoding="utf-8"))
    state = {k: v.detach().cpu().to(torch.float16).contiguous() for k, v in module.state_dict().items()}
    with atomic_output(folder / filename) as tmp:
        save_file(state, str(tmp), metadata={"format": fmt, "stored_dtype": "float16"})
    meta[key] = {**config, "train": dict(provenance or {})}
    write_text_atomic(meta_path, json.dumps(meta, indent=2, sort_keys=True, allow_nan=False) + "\n")


def load_folder_part(folder: str | Path, filename: str, key: str, module: Any, hint: str, device: Any = "cpu") -> Any:
    """Load ``filename`` of a built-in model folder into ``module`` (float32, eval, on
    ``device``). ModelError (one line) when the file is missing (``hint``: what to do) or its
    keys or shapes do not match the settings under model.json's ``key``."""
    from safetensors.torch import load_file

    from longtake.model.errors import ModelError

    path = Path(folder) / filename
    if not path.is_file():
        raise ModelError(f"{path} is missing; model.json names {key!r} ({hint})")
    state = load_file(str(path))
    expected = module.state_dict()
    if set(state) != set(expected) or any(tuple(state[k].shape) != tuple(expected[k].shape) for k in expected):
        raise ModelError(f"{path} does not match the {key!r} settings in model.json")
    module.load_state_dict({k: v.float() for k, v in state.items()})
    return module.to(device).eval()
