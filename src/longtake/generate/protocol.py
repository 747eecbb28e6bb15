"""The Generator protocol: anything that turns a Timeline into frames, chunk by chunk.

The render loop (``longtake.pipeline``) drives a Generator and streams what it yields into
the mp4 writer; the generator itself never writes files. The learned causal model and the
procedural StoryWorld renderer both implement this protocol, so the CLI, the server and the
benchmarks drive them the same way.

Chunk sizes: a generator that makes chunks of fixed sizes says so with the attributes
``frames_per_chunk`` and ``first_chunk_frames`` (the causal model: 12 and 9 frames at 16 fps);
:func:`longtake.pipeline.plan_for` plans the story with them. Generators without them (the
procedural renderer) accept the planner's default.

Resuming: a generator that supports it returns its complete state (KV cache, memory, RNG,
position) from :meth:`Generator.state_dict` after any chunk; ``stream(..., start_chunk=k,
state=s)`` continues from there and must yield the same frames as an uninterrupted run.
The state is plain data (tensors, numbers, strings, None, lists, dicts) so that
:func:`longtake.render_state.save_state` can write it without pickle.
"""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import dataclass, field
from typing import Any, Literal, Protocol, runtime_checkable

import numpy as np

from longtake.plan.timeline import Chunk, Timeline


@dataclass(frozen=True)
class GeneratorInfo:
    """What made the frames; recorded in the render manifest."""

    name: str
    kind: Literal["learned", "procedural"]
    version: str = ""
    weights: dict[str, str] = field(default_factory=dict)  # file name -> sha256
    settings: dict[str, Any] = field(default_factory=dict)


@dataclass(frozen=True)
class FrameChunk:
    """Frames of one chunk: ``frames`` is (N, H, W, 3) uint8 RGB, N == chunk.num_frames."""

    chunk: Chunk
    frames: np.ndarray


@runtime_checkable
class Generator(Protocol):
    def info(self) -> GeneratorInfo: ...

    def stream(self, timeline: Timeline, *, seed: int, start_chunk: int = 0, state: dict[str, Any] | None = None) -> Iterator[FrameChunk]:
        """Yield one FrameChunk per chunk of ``timeline`` from ``start_chunk`` on, in order."""
        ...

    def state_dict(self) -> dict[str, Any] | None:
        """State after the last yielded chunk, or None when resuming is not supported."""
        ...
