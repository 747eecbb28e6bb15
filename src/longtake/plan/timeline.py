"""The Timeline: what the generator makes, chunk by chunk.

A chunk is the unit of streaming generation (a few latent frames of the causal model). Every
chunk belongs to exactly one shot; shots start on chunk boundaries (see ``planner.py``).
Frame indices are output (pixel) frames at the story's fps.
"""

from __future__ import annotations

import json
from dataclasses import asdict, dataclass, field
from typing import Any


@dataclass(frozen=True)
class DialogueCue:
    """A dialogue line placed in time (seconds from the start of the video)."""

    speaker: str
    text: str
    start: float
    end: float


@dataclass(frozen=True)
class Chunk:
    """One generation chunk.

    ``shot_span`` is the part of the shot this chunk covers, as fractions in [0, 1]: camera
    moves and actions are functions of it. ``cut`` marks the first chunk of every shot after
    the first (a new shot sink); ``switch`` marks a chunk whose prompt differs from the
    previous chunk's (LongLive's prompt switch, KV re-cache); ``new_place`` marks a cut to
    another location than the previous chunk's (the generator starts a new sink there rather
    than continue the old place's frames).
    """

    index: int
    start_frame: int
    num_frames: int
    scene: int
    shot: int  # global shot index over the whole story
    shot_in_scene: int
    prompt: str
    characters: tuple[str, ...]
    location: str
    camera: str
    transition: str  # how the shot begins; meaningful when ``cut`` or index 0
    cut: bool
    switch: bool
    shot_span: tuple[float, float]
    dialogue: tuple[DialogueCue, ...] = ()
    new_place: bool = False

    @property
    def end_frame(self) -> int:
        return self.start_frame + self.num_frames

    @property
    def entities(self) -> tuple[str, ...]:
        """Ids of everything on screen: the location first, then the characters."""
        return (self.location, *self.characters)


@dataclass(frozen=True)
class ShotSpan:
    """Where a script shot landed on the timeline after chunk alignment."""

    scene: int
    shot_in_scene: int
    first_chunk: int
    num_chunks: int
    start_frame: int
    num_frames: int
    requested_seconds: float


@dataclass(frozen=True)
class Timeline:
    """Story -> chunks. Built by :func:`longtake.plan`; never calls a model."""

    title: str
    fps: int
    width: int
    height: int
    seed: int
    frames_per_chunk: int
    first_chunk_frames: int
    chunks: tuple[Chunk, ...]
    shots: tuple[ShotSpan, ...]
    story_hash: str
    characters: dict[str, str] = field(default_factory=dict)  # id -> name
    locations: dict[str, str] = field(default_factory=dict)

    @property
    def num_frames(self) -> int:
        return self.chunks[-1].end_frame if self.chunks else 0

    @property
    def duration(self) -> float:
        return self.num_frames / self.fps

    def __len__(self) -> int:
        return len(self.chunks)

    def to_dict(self) -> dict[str, Any]:
        out = asdict(self)
        out["num_frames"] = self.num_frames
        out["duration"] = self.duration
        return out

    def to_json(self, indent: int | None = 2) -> str:
        return json.dumps(self.to_dict(), indent=indent, ensure_ascii=False)

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> "Timeline":
        chunks = tuple(
            Chunk(**{**c, "characters": tuple(c["characters"]), "shot_span": tuple(c["shot_span"]), "dialogue": tuple(DialogueCue(**d) for d in c["dialogue"])})
            for c in data["chunks"]
        )
        shots = tuple(ShotSpan(**s) for s in data["shots"])
        keep = {k: v for k, v in data.items() if k in cls.__dataclass_fields__ and k not in ("chunks", "shots")}
        return cls(chunks=chunks, shots=shots, **keep)
