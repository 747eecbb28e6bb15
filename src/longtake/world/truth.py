"""Per-frame ground truth and its streaming file format.

On disk, a truth file set ``<path>`` is two files:

* ``<path>.truth.jsonl``: one JSON object per line. ``{"type": "meta", ...}`` first (size,
  fps, seed, title), ``{"type": "cast", "id", "label", "described", "appearance", "hidden"}``
  the first time a character appears, then ``{"type": "frame", ...}`` per frame with the
  camera, the fade and per on-screen character its label, bbox, visibility, action, phase.
* ``<path>.masks.npz``: a zip of ``.npy`` arrays, one per written chunk, named
  ``frames_<first frame, 8 digits>``, each (N, H, W) uint8: 0 background, k the k-th
  character of the cast (story order) + 1. It loads with ``np.load``.

Both are appended chunk by chunk, so writing uses constant memory whatever the length.
"""

from __future__ import annotations

import json
import zipfile
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from longtake.world.vocab import Appearance, HiddenDetails


@dataclass(frozen=True)
class CharacterTruth:
    """One on-screen character in one frame. ``bbox`` is (x0, y0, x1, y1) in frame pixels,
    exclusive ends, of its visible mask pixels; None when not visible."""

    id: str
    label: int
    bbox: tuple[int, int, int, int] | None
    visible: bool
    action: str
    phase: float
    appearance: Appearance
    hidden: HiddenDetails
    described: Appearance = field(default_factory=Appearance)  # what the script says (None = unspecified)


@dataclass
class FrameTruth:
    """Ground truth of one frame. ``mask`` is (H, W) uint8 labels, or None when not kept."""

    frame: int
    chunk: int
    scene: int
    shot: int
    location: str  # the script's location id
    location_kind: str  # the StoryWorld location it is drawn as
    camera: dict[str, Any]  # move, dx, dy (view offset in frame sizes), zoom
    fade: float  # brightness factor of the frame, 1 = no fade
    characters: list[CharacterTruth]
    mask: np.ndarray | None = None

    def to_record(self) -> dict[str, Any]:
        """The JSON form of a frame line (cast details are in the cast lines)."""
        return {
            "type": "frame", "frame": self.frame, "chunk": self.chunk, "scene": self.scene, "shot": self.shot,
            "location": self.location, "location_kind": self.location_kind, "camera": self.camera, "fade": self.fade,
            "characters": [
                {"id": c.id, "label": c.label, "bbox": list(c.bbox) if c.bbox else None, "visible": c.visible, "action": c.action, "phase": round(c.phase, 4)}
                for c in self.characters
            ],
        }


class TruthWriter:
    """Append ground truth chunk by chunk to ``<path>.truth.jsonl`` and ``<path>.masks.npz``."""

    def __init__(self, path: str | Path, *, meta: dict[str, Any] | None = None, masks: bool = True) -> None:
        self.path = Path(path)
        self.path.parent.mkdir(parents=True, exist_ok=True)
        self._json = open(self.path.with_name(self.path.name + ".truth.jsonl"), "w", encoding="utf-8")
        self._zip = zipfile.ZipFile(self.path.with_name(self.path.name + ".masks.npz"), "w", zipfile.ZIP_DEFLATED, compresslevel=6) if masks else None
        self._seen: set[str] = set()
        self._json.write(json.dumps({"type": "meta", "format": "storyworld-truth", "version": 1, **(meta or {})}) + "\n")

    def write(self, truths: list[FrameTruth]) -> None:
        """Append the frames of one chunk (their masks, when present, as one array)."""
        for t in truths:
            for c in t.characters:
                if c.id not in self._seen:
                    self._seen.add(c.id)
                    rec = {"type": "cast", "id": c.id, "label": c.label, "described": asdict(c.described), "appearance": asdict(c.appearance), "hidden": asdict(c.hidden)}
                    self._json.write(json.dumps(rec) + "\n")
            self._json.write(json.dumps(t.to_record()) + "\n")
        masks = [t.mask for t in truths if t.mask is not None]
        if self._zip is not None and truths and len(masks) == len(truths):
            with self._zip.open(f"frames_{truths[0].frame:08d}.npy", "w", force_zip64=True) as fh:
                np.lib.format.write_array(fh, np.stack(masks), allow_pickle=False)

    def close(self) -> None:
        self._json.close()
        if self._zip is not None:
            self._zip.close()

    def __enter__(self) -> "TruthWriter":
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()


@dataclass
class Truth:
    """A loaded truth file set: ``meta``, ``frames`` (with masks when they were written)."""

    meta: dict[str, Any]
    frames: list[FrameTruth]


def load_truth(path: str | Path, *, masks: bool = True) -> Truth:
    """Read what :class:`TruthWriter` wrote at ``path`` (without suffix)."""
    path = Path(path)
    meta: dict[str, Any] = {}
    cast: dict[str, dict[str, Any]] = {}
    frames: list[FrameTruth] = []
    with open(path.with_name(path.name + ".truth.jsonl"), encoding="utf-8") as fh:
        for line in fh:
            rec = json.loads(line)
            kind = rec.pop("type")
            if kind == "meta":
                meta = rec
            elif kind == "cast":
                cast[rec["id"]] = {"appearance": Appearance(**rec["appearance"]), "hidden": HiddenDetails(**rec["hidden"]), "described": Appearance(**rec["described"])}
            else:
                chars = [
                    CharacterTruth(c["id"], c["label"], tuple(c["bbox"]) if c["bbox"] else None, c["visible"], c["action"], c["phase"], **cast[c["id"]])
                    for c in rec.pop("characters")
                ]
                frames.append(FrameTruth(characters=chars, **rec))
    mask_file = path.with_name(path.name + ".masks.npz")
    if masks and mask_file.exists():
        by_frame = {f.frame: f for f in frames}
        with np.load(mask_file) as npz:
            for name in npz.files:
                first = int(name.split("_")[1])
                for i, m in enumerate(npz[name]):
                    if first + i in by_frame:
                        by_frame[first + i].mask = m
    return Truth(meta, frames)
