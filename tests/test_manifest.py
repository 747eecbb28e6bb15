"""longtake.video.manifest: fields, hashes, provenance, atomic JSON sidecar."""

from __future__ import annotations

import hashlib
import json
from pathlib import Path

import numpy as np
import pytest

import longtake
from longtake.generate.protocol import GeneratorInfo
from longtake.video import (
    PROVENANCE_STATEMENT,
    VideoError,
    VideoWriter,
    build_manifest,
    sha256_file,
    write_manifest,
)


@pytest.fixture()
def video(tmp_path: Path) -> Path:
    path = tmp_path / "render.mp4"
    with VideoWriter(path, fps=8, width=32, height=32) as w:
        w.write(np.full((6, 32, 32, 3), 100, np.uint8))
    return path


def test_sha256_file(tmp_path: Path) -> None:
    p = tmp_path / "b.bin"
    data = bytes(range(256)) * 9000  # spans several read blocks
    p.write_bytes(data)
    assert sha256_file(p) == hashlib.sha256(data).hexdigest()
    with pytest.raises(VideoError):
        sha256_file(tmp_path / "missing")


def test_manifest_fields_and_file(video: Path) -> None:
    gen = GeneratorInfo(name="storyworld", kind="procedural", version="1", weights={"w.safetensors": "ab" * 32})
    manifest = build_manifest(
        video=video,
        story_hash="f" * 64,
        timeline_summary={"chunks": 2, "frames": 6},
        settings={"steps": 4},
        seed=7,
        generator=gen,
        extra={"note": "test"},
    )
    assert manifest["longtake_version"] == longtake.__version__
    assert manifest["script_hash"] == "f" * 64 and manifest["seed"] == 7
    assert manifest["generator"]["weights"] == {"w.safetensors": "ab" * 32}
    assert manifest["video"]["sha256"] == sha256_file(video)
    assert manifest["video"]["num_frames"] == 6 and manifest["video"]["fps"] == 8
    packages = manifest["software"]["packages"]
    assert {"python", "numpy", "av", "pydantic", "torch"} <= set(packages)
    assert manifest["software"]["platform"]
    prov = manifest["provenance"]
    assert prov["ai_generated"] is True and prov["statement"] == PROVENANCE_STATEMENT
    assert prov["generator"]["name"] == "storyworld"
    assert manifest["created"].endswith("+00:00")

    out = write_manifest(video, manifest)
    assert out == video.with_name("render.json")
    assert json.loads(out.read_text()) == manifest
    assert sorted(p.name for p in video.parent.iterdir()) == ["render.json", "render.mp4"]


def test_manifest_accepts_dict_generator_and_rejects_bad(video: Path) -> None:
    kw = dict(video=video, story_hash="0", timeline_summary={}, settings={}, seed=0)
    m = build_manifest(**kw, generator={"name": "dit", "kind": "learned"})
    assert m["generator"]["weights"] == {}
    with pytest.raises(VideoError, match="name"):
        build_manifest(**kw, generator={"kind": "learned"})
    with pytest.raises(VideoError, match="does not exist"):
        build_manifest(**{**kw, "video": video.with_name("gone.mp4")}, generator={"name": "a", "kind": "b"})
    with pytest.raises(VideoError, match="JSON"):
        write_manifest(video, {"bad": object()})
    assert not video.with_name("render.json").exists()
