"""The render manifest: a JSON sidecar that says exactly what made a video.

A render is a function of (script, model weights, settings, seed) (DESIGN.md,
"Determinism"); the manifest records all four, the software that ran, and the video's own
hash, so anyone can check the file is the one rendered and reproduce it. It also carries the
provenance block: the video is AI-generated, by which generator.

Written as ``<video stem>.json`` next to the video, atomically (temp file + rename).
"""

from __future__ import annotations

import dataclasses
import hashlib
import json
import platform
import sys
from collections.abc import Mapping
from datetime import datetime, timezone
from importlib import metadata as importlib_metadata
from pathlib import Path
from typing import Any

from longtake.atomic import write_text_atomic
from longtake.video.errors import VideoError
from longtake.video.provenance import PROVENANCE_STATEMENT
from longtake.video.reader import probe

#: Bumped when a field changes meaning or disappears; adding fields keeps the version.
MANIFEST_FORMAT = 1

_PACKAGES = ("numpy", "av", "pydantic", "torch", "einops", "safetensors")
_HASH_BLOCK = 1 << 20  # 1 MiB reads: constant memory for files of any size


def sha256_file(path: str | Path) -> str:
    """Hex sha256 of a file, read in 1 MiB blocks."""
    digest = hashlib.sha256()
    try:
        with open(path, "rb") as fh:
            while block := fh.read(_HASH_BLOCK):
                digest.update(block)
    except OSError as err:
        raise VideoError(f"cannot hash {path}: {err.strerror or err}") from None
    return digest.hexdigest()


def package_versions() -> dict[str, str | None]:
    """Versions of Python and the packages that shape the output (None: not installed)."""
    versions: dict[str, str | None] = {"python": platform.python_version()}
    for name in _PACKAGES:
        try:
            versions[name] = importlib_metadata.version(name)
        except importlib_metadata.PackageNotFoundError:
            versions[name] = None
    return versions


def _generator_dict(generator: Any) -> dict[str, Any]:
    """A GeneratorInfo (any dataclass) or mapping as a plain dict with name/kind/weights."""
    if dataclasses.is_dataclass(generator) and not isinstance(generator, type):
        data = dataclasses.asdict(generator)
    elif isinstance(generator, Mapping):
        data = dict(generator)
    else:
        raise VideoError(f"generator must be a GeneratorInfo or a dict, got {type(generator).__name__}")
    missing = [k for k in ("name", "kind") if not data.get(k)]
    if missing:
        raise VideoError(f"generator info lacks {', '.join(missing)}: got keys {sorted(data)}")
    data.setdefault("version", "")
    data["weights"] = dict(data.get("weights") or {})  # file name -> sha256
    return data


def build_manifest(
    *,
    video: str | Path,
    story_hash: str,
    timeline_summary: dict[str, Any],
    settings: dict[str, Any],
    seed: int,
    generator: Any,
    extra: dict[str, Any] | None = None,
) -> dict[str, Any]:
    """Assemble the manifest of a finished video (probed and hashed here).

    Args:
        video: the finished mp4.
        story_hash: :meth:`longtake.Story.content_hash` of the script.
        timeline_summary: a small summary of the timeline (chunks, shots, frames...).
        settings: the render settings that affect the frames.
        seed: the render seed.
        generator: a :class:`longtake.generate.protocol.GeneratorInfo` or an equivalent dict
            with ``name``, ``kind``, optional ``version`` and ``weights`` (file -> sha256).
        extra: anything else worth keeping, stored under ``"extra"``.
    """
    from longtake import __version__  # late: longtake/__init__ imports the whole package

    video = Path(video)
    info = probe(video)
    gen = _generator_dict(generator)
    return {
        "format": MANIFEST_FORMAT,
        "longtake_version": __version__,
        "created": datetime.now(timezone.utc).isoformat(timespec="seconds"),
        "script_hash": story_hash,
        "timeline": dict(timeline_summary),
        "settings": dict(settings),
        "seed": int(seed),
        "generator": gen,
        "software": {
            "packages": package_versions(),
            "platform": platform.platform(),
            "implementation": sys.implementation.name,
        },
        "video": {
            "file": video.name,
            "sha256": sha256_file(video),
            "bytes": video.stat().st_size,
            "num_frames": info.num_frames,
            "fps": info.fps,
            "frame_rate": str(info.frame_rate),
            "width": info.width,
            "height": info.height,
            "duration": info.duration,
            "has_audio": info.has_audio,
            "codec": info.codec,
        },
        "provenance": {
            "ai_generated": True,
            "statement": PROVENANCE_STATEMENT,
            "generator": {k: gen[k] for k in ("name", "kind", "version")},
        },
        "extra": dict(extra or {}),
    }


def manifest_path(video_path: str | Path) -> Path:
    """Where the manifest of ``video_path`` lives: ``<stem>.json`` in the same folder."""
    video_path = Path(video_path)
    return video_path.with_name(video_path.stem + ".json")


def write_manifest(video_path: str | Path, manifest: dict[str, Any]) -> Path:
    """Write ``manifest`` as ``<video stem>.json`` next to the video, atomically. Returns its path."""
    target = manifest_path(video_path)
    if not target.parent.is_dir():
        raise VideoError(f"cannot write {target}: folder {target.parent} does not exist")
    try:
        text = json.dumps(manifest, indent=2, sort_keys=True, allow_nan=False) + "\n"
    except (TypeError, ValueError) as err:
        raise VideoError(f"manifest is not JSON-serialisable: {err}") from None
    write_text_atomic(target, text, fsync=True)
    return target
