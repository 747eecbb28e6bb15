"""The render loop: Timeline -> Generator -> streaming mp4 writer -> manifest.

This is the one place where generation meets files (``generate/`` writes none, ``video/``
knows no models). The CLI, the server and the Python API all call :func:`render_story`.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from longtake.errors import LongtakeError
from longtake.generate.protocol import Generator
from longtake.plan.timeline import Timeline
from longtake.script.schema import Story

log = logging.getLogger(__name__)


class RenderError(LongtakeError):
    """A render could not start or a generator broke its contract."""


@dataclass(frozen=True)
class RenderProgress:
    """Emitted after every chunk is written."""

    chunks_done: int
    chunks_total: int
    frames_done: int
    frames_total: int
    elapsed: float  # seconds since the render started
    first_frame_latency: float | None  # seconds until the first chunk was out


@dataclass(frozen=True)
class RenderResult:
    video: Path
    manifest: Path
    frames: int
    wall_seconds: float
    first_frame_latency: float
    fps: int

    @property
    def realtime_factor(self) -> float:
        """Seconds of video per second of wall clock."""
        return self.frames / self.fps / self.wall_seconds if self.wall_seconds > 0 else float("inf")


# --- generator registry ----------------------------------------------------------------


def _storyworld(story: Story, **_: Any) -> Generator:
    from longtake.world.generator import StoryWorldGenerator

    return StoryWorldGenerator(story)


_REGISTRY: dict[str, tuple[str, str, Callable[..., Generator]]] = {
    "storyworld": (
        "procedural",
        "StoryWorld's procedural renderer: the exact ground-truth video of a script in its vocabulary (not a learned model).",
        _storyworld,
    ),
}
DEFAULT_GENERATOR = "builtin"


def register_generator(name: str, kind: str, description: str, factory: Callable[..., Generator]) -> None:
    """Make ``factory(story, **options)`` available as ``longtake render --model name``."""
    _REGISTRY[name] = (kind, description, factory)


def available_generators() -> dict[str, tuple[str, str]]:
    return {name: (kind, desc) for name, (kind, desc, _) in _REGISTRY.items()}


def load_generator(name: str = "default", *, story: Story, **options: Any) -> Generator:
    """The generator registered under ``name`` ("default" is the built-in model) for ``story``.

    Generators get the story because the cast sheet (descriptions, reference images) is
    theirs to use; the timeline carries only ids.
    """
    return _REGISTRY[resolve_generator_name(name)][2](story, **options)


def resolve_generator_name(name: str) -> str:
    """``name`` with "default" resolved; a RenderError listing the choices when unknown."""
    if name == "default":
        name = DEFAULT_GENERATOR
    if name not in _REGISTRY:
        known = ", ".join(sorted(_REGISTRY))
        hint = ""
        if name == "builtin":
            hint = " The built-in model's weights are not part of this version yet; use --model storyworld for the procedural reference renderer."
        raise RenderError(f"unknown model '{name}'; available: {known}.{hint}")
    return name


# --- the loop --------------------------------------------------------------------------


def render_story(
    story: Story,
    timeline: Timeline,
    generator: Generator,
    output: str | Path,
    *,
    seed: int | None = None,
    audio: str | Path | None = None,
    settings: dict[str, Any] | None = None,
    on_progress: Callable[[RenderProgress], None] | None = None,
) -> RenderResult:
    """Generate every chunk of ``timeline`` and stream it into ``output`` (an .mp4).

    The video is written to a temporary file and renamed when complete; the manifest
    (``<stem>.json``: hashes, settings, versions, provenance) is written next to it.
    """
    from longtake.video import VideoWriter, build_manifest, write_manifest

    output = Path(output)
    if output.suffix.lower() != ".mp4":
        raise RenderError(f"{output}: output must end in .mp4")
    try:
        output.parent.mkdir(parents=True, exist_ok=True)
    except OSError as exc:
        raise RenderError(f"{output}: cannot create folder {output.parent}: {exc.strerror}") from None
    seed = story.seed if seed is None else int(seed)
    info = generator.info()
    shape = (timeline.height, timeline.width, 3)
    start = time.perf_counter()
    first: float | None = None
    frames = 0
    metadata = {"title": timeline.title}
    with VideoWriter(output, fps=timeline.fps, width=timeline.width, height=timeline.height, audio=audio, metadata=metadata) as writer:
        for done, fc in enumerate(generator.stream(timeline, seed=seed), start=1):
            got = np.asarray(fc.frames)
            if got.dtype != np.uint8 or got.shape != (fc.chunk.num_frames, *shape):
                raise RenderError(
                    f"generator '{info.name}' yielded frames {got.shape} {got.dtype} for chunk {fc.chunk.index}; expected {(fc.chunk.num_frames, *shape)} uint8"
                )
            writer.write(got)
            frames += got.shape[0]
            now = time.perf_counter() - start
            if first is None:
                first = now
            if on_progress is not None:
                on_progress(RenderProgress(done, len(timeline), frames, timeline.num_frames, now, first))
    wall = time.perf_counter() - start
    if frames != timeline.num_frames:
        raise RenderError(f"generator '{info.name}' produced {frames} frames; the timeline has {timeline.num_frames}")
    manifest = build_manifest(
        video=output,
        story_hash=timeline.story_hash,
        timeline_summary={"chunks": len(timeline), "frames": timeline.num_frames, "fps": timeline.fps, "width": timeline.width, "height": timeline.height, "frames_per_chunk": timeline.frames_per_chunk},
        settings={"audio": str(audio) if audio else None, **(settings or {})},
        seed=seed,
        generator={"name": info.name, "kind": info.kind, "version": info.version, "weights": info.weights, "settings": info.settings},
        extra={"render": {"wall_seconds": round(wall, 3), "first_frame_latency": round(first or 0.0, 3), "realtime_factor": round(frames / timeline.fps / wall, 3) if wall else None}},
    )
    manifest_path = write_manifest(output, manifest)
    log.info("rendered %d frames in %.2f s", frames, wall)
    return RenderResult(output, manifest_path, frames, wall, first or 0.0, timeline.fps)


# --- diffusers-style API ---------------------------------------------------------------

#: In-memory output is for short clips; longer renders should stream to a file.
MAX_IN_MEMORY_FRAMES = 4096


@dataclass(frozen=True)
class PipelineOutput:
    """What :class:`Pipeline` returns: the timeline, and frames or a written video."""

    timeline: Timeline
    frames: np.ndarray | None  # (F, H, W, 3) uint8 when no output path was given
    result: RenderResult | None  # when an output path was given


class Pipeline:
    """``Pipeline.from_pretrained(name)(story, seed=...)``, as users of diffusers expect.

    ``name`` is a registered generator (``longtake models``); the story may be a
    :class:`Story` or a path to a script in any supported format.
    """

    def __init__(self, name: str, **options: Any):
        self.name = name
        self.options = options

    @classmethod
    def from_pretrained(cls, name: str = "default", **options: Any) -> "Pipeline":
        return cls(resolve_generator_name(name), **options)

    def __call__(
        self,
        story: Story | str | Path,
        *,
        seed: int | None = None,
        output: str | Path | None = None,
        on_progress: Callable[[RenderProgress], None] | None = None,
    ) -> PipelineOutput:
        from longtake.plan import DEFAULT_FRAMES_PER_CHUNK, plan

        if not isinstance(story, Story):
            story = Story.load(story)
        generator = load_generator(self.name, story=story, **self.options)
        timeline = plan(story, frames_per_chunk=getattr(generator, "frames_per_chunk", DEFAULT_FRAMES_PER_CHUNK))
        if output is not None:
            return PipelineOutput(timeline, None, render_story(story, timeline, generator, output, seed=seed, on_progress=on_progress))
        if timeline.num_frames > MAX_IN_MEMORY_FRAMES:
            raise RenderError(f"{timeline.num_frames} frames is too long to return in memory (limit {MAX_IN_MEMORY_FRAMES}); pass output='video.mp4' to stream to a file")
        chunks = [np.asarray(fc.frames) for fc in generator.stream(timeline, seed=story.seed if seed is None else seed)]
        return PipelineOutput(timeline, np.concatenate(chunks) if chunks else np.zeros((0, timeline.height, timeline.width, 3), np.uint8), None)
