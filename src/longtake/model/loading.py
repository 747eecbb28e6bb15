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
