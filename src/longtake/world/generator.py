"""StoryWorldGenerator: the StoryWorld renderer behind the Generator protocol.

``longtake render --model storyworld`` drives it like the learned model, so the ground-truth
video of a script comes out of the same pipeline. Rendering is stateless per chunk, so its
state is only the next chunk index and resuming is exact.
"""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any

from longtake.generate.protocol import FrameChunk, GeneratorInfo
from longtake.plan.timeline import Timeline
from longtake.script.schema import Story
from longtake.world.errors import WorldError
from longtake.world.renderer import WorldRenderer

VERSION = "1"


class StoryWorldGenerator:
    """Procedural generator of ``story``. ``seed`` in :meth:`stream` is the world seed (pass
    ``story.seed`` for the script's own ground truth); the frame size is the timeline's."""

    def __init__(self, story: Story) -> None:
        self.story = story
        self._next = 0
        self._renderer: WorldRenderer | None = None

    def info(self) -> GeneratorInfo:
        return GeneratorInfo(name="storyworld", kind="procedural", version=VERSION, settings={"renderer": "numpy"})

    def stream(self, timeline: Timeline, *, seed: int, start_chunk: int = 0, state: dict[str, Any] | None = None) -> Iterator[FrameChunk]:
        if timeline.story_hash != self.story.content_hash():
            raise WorldError("the timeline was planned from another story than the one StoryWorld was given")
        if state is not None:
            start_chunk = int(state.get("next_chunk", start_chunk))
        r = self._renderer
        if r is None or r.seed != seed or (r.width, r.height) != (timeline.width, timeline.height):
            r = self._renderer = WorldRenderer(self.story, width=timeline.width, height=timeline.height, seed=seed)
        self._next = start_chunk
        for chunk in timeline.chunks[start_chunk:]:
            frames, _ = r.render_chunk(chunk, masks=False)
            self._next = chunk.index + 1
            yield FrameChunk(chunk, frames)

    def state_dict(self) -> dict[str, Any] | None:
        return {"next_chunk": self._next}
