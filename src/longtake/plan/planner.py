"""Story -> Timeline.

Shots are aligned to whole chunks: a causal chunk model switches prompts and starts shot
sinks at chunk boundaries, so a shot that began mid-chunk would blend two prompts in one
chunk. Each shot's end is rounded to the nearest chunk boundary of the *cumulative* script
time, so rounding errors never accumulate: the video's length stays within half a chunk of
the script's, and every shot gets at least one chunk.
"""

from __future__ import annotations

import logging

from longtake.plan.prompt import expand_prompt
from longtake.plan.timeline import Chunk, DialogueCue, ShotSpan, Timeline
from longtake.script.errors import ScriptError
from longtake.script.schema import Story

log = logging.getLogger(__name__)

#: 3 latent frames x 4x temporal VAE compression, as in Self-Forcing / LongLive / MemFlow.
DEFAULT_FRAMES_PER_CHUNK = 12


class PlanError(ScriptError):
    """The story cannot be planned with the given chunk settings."""


def _frames_for_chunks(n: int, fpc: int, first: int) -> int:
    return 0 if n <= 0 else first + (n - 1) * fpc


def _chunks_for_frames(frames: float, fpc: int, first: int) -> int:
    if frames <= first / 2:
        return 0
    return 1 + max(0, round((frames - first) / fpc))


def plan(story: Story, *, frames_per_chunk: int = DEFAULT_FRAMES_PER_CHUNK, first_chunk_frames: int | None = None) -> Timeline:
    """Cut ``story`` into chunks of ``frames_per_chunk`` output frames.

    ``first_chunk_frames`` allows a shorter first chunk (a causal VAE's first latent frame
    holds one pixel frame, so Wan's first 3-latent chunk decodes to 9 frames, later ones to 12).
    """
    fpc = int(frames_per_chunk)
    first = int(first_chunk_frames or fpc)
    if fpc < 1 or first < 1:
        raise PlanError(f"frames per chunk must be at least 1, got {fpc} (first chunk {first})")
    fps = story.fps
    chunks: list[Chunk] = []
    spans: list[ShotSpan] = []
    elapsed = 0.0
    prev_prompt: str | None = None
    prev_location: str | None = None
    for shot_index, (si, hi, shot) in enumerate(story.shots()):
        scene = story.scenes[si]
        elapsed += shot.duration
        start_chunk = len(chunks)
        end_chunk = max(start_chunk + 1, _chunks_for_frames(elapsed * fps, fpc, first))
        n = end_chunk - start_chunk
        prompt = expand_prompt(story, scene, shot)
        start_frame = _frames_for_chunks(start_chunk, fpc, first)
        shot_frames = _frames_for_chunks(end_chunk, fpc, first) - start_frame
        # dialogue lines share the shot evenly, in order
        cues: list[DialogueCue] = []
        t0 = start_frame / fps
        for j, line in enumerate(shot.dialogue):
            a = t0 + shot_frames / fps * j / len(shot.dialogue)
            b = t0 + shot_frames / fps * (j + 1) / len(shot.dialogue)
            cues.append(DialogueCue(line.speaker, line.text, a, b))
        for k in range(n):
            ci = start_chunk + k
            cf = _frames_for_chunks(ci, fpc, first)
            nf = first if ci == 0 else fpc
            c0, c1 = cf / fps, (cf + nf) / fps
            chunks.append(
                Chunk(
                    index=ci,
                    start_frame=cf,
                    num_frames=nf,
                    scene=si,
                    shot=shot_index,
                    shot_in_scene=hi,
                    prompt=prompt,
                    characters=tuple(shot.characters),
                    location=scene.location,
                    camera=shot.camera,
                    transition=shot.transition,
                    cut=k == 0 and shot_index > 0,
                    switch=prev_prompt is not None and prompt != prev_prompt,
                    shot_span=((cf - start_frame) / shot_frames, (cf + nf - start_frame) / shot_frames),
                    dialogue=tuple(c for c in cues if c0 <= c.start < c1),
                    new_place=k == 0 and prev_location is not None and scene.location != prev_location,
                )
            )
            prev_prompt = prompt
            prev_location = scene.location
        spans.append(ShotSpan(si, hi, start_chunk, n, start_frame, shot_frames, shot.duration))
    timeline = Timeline(
        title=story.title,
        fps=fps,
        width=story.size.width,
        height=story.size.height,
        seed=story.seed,
        frames_per_chunk=fpc,
        first_chunk_frames=first,
        chunks=tuple(chunks),
        shots=tuple(spans),
        story_hash=story.content_hash(),
        characters={c.id: c.name for c in story.characters},
        locations={loc.id: (loc.name or loc.id) for loc in story.locations},
    )
    log.debug("planned %d chunks, %d frames for %.1f s of script", len(chunks), timeline.num_frames, story.duration)
    return timeline
