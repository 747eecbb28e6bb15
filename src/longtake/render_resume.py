"""Resumable renders: ``longtake render ... --checkpoint-every N`` and ``--resume``.

An mp4 cannot be appended to after a crash, and a lossy encoder fed in two sessions does not
give the bytes of one session. So a resumable render keeps its work in a folder beside the
output, ``<output>.partial/`` (e.g. ``out.mp4.partial/``)::

    progress.json                 the commit point: what was rendered, with which inputs
    state-000012.safetensors      generator state before chunk 12 (longtake.render_state)
    seg-00000.mkv, seg-00001.mkv  the frames so far, lossless (FFV1, longtake.video.segments)

Every ``N`` chunks the open segment is closed, the generator state saved, and
``progress.json`` rewritten atomically; only then does the old state go. A crash at any
moment leaves a folder whose ``progress.json`` names complete files; frames made after the
last checkpoint are made again. ``resume=True`` checks that the story, seed, generator,
weights and settings are those of the unfinished render, restores the state and continues.
When every chunk is done, the segments are read back in order into the usual H.264 writer
(atomic), the manifest is written and the folder removed. The encoder sees exactly the
frames of an uninterrupted render, so the decoded frames, and in practice the mp4 bytes,
are the same.

Cost: FFV1 at 128x128 is about 1-2 ms per frame to write and to read back, and the final
H.264 encode happens at the end instead of during generation.
"""

from __future__ import annotations

import hashlib
import json
import logging
import shutil
from collections.abc import Callable
from pathlib import Path
from typing import Any

from longtake.atomic import write_text_atomic
from longtake.generate.protocol import Generator
from longtake.pipeline import RenderClock, RenderError, RenderProgress, RenderResult, checked_frames, finish_render
from longtake.plan.timeline import Timeline
from longtake.script.schema import Story

log = logging.getLogger(__name__)

PARTIAL_FORMAT = 1
PROGRESS = "progress.json"


def partial_folder(output: str | Path) -> Path:
    """Where the unfinished render of ``output`` keeps its state and frames."""
    output = Path(output)
    return output.with_name(output.name + ".partial")


def _identity(timeline: Timeline, seed: int, info: Any) -> dict[str, Any]:
    """What must not change between the sessions of one render."""
    settings = json.dumps(info.settings, sort_keys=True, default=str)
    return {
        "story_hash": timeline.story_hash,
        "seed": int(seed),
        "generator": info.name,
        "weights": dict(sorted(info.weights.items())),
        "settings_sha256": hashlib.sha256(settings.encode()).hexdigest(),
        "timeline": {
            "chunks": len(timeline), "frames": timeline.num_frames, "fps": timeline.fps, "width": timeline.width,
            "height": timeline.height, "frames_per_chunk": timeline.frames_per_chunk, "first_chunk_frames": timeline.first_chunk_frames,
        },
    }


def _write_progress(folder: Path, progress: dict[str, Any]) -> None:
    write_text_atomic(folder / PROGRESS, json.dumps(progress, indent=2, sort_keys=True) + "\n", fsync=True)


def _read_progress(folder: Path, output: Path) -> dict[str, Any]:
    path = folder / PROGRESS
    try:
        progress = json.loads(path.read_text(encoding="utf-8"))
    except FileNotFoundError:
        raise RenderError(f"{folder} has no {PROGRESS}; it is not an unfinished render of {output} (delete it to start over)") from None
    except json.JSONDecodeError as err:
        raise RenderError(f"{path}: damaged ({err.msg}); delete {folder} to start over") from None
    if not isinstance(progress, dict) or progress.get("format") != PARTIAL_FORMAT:
        raise RenderError(f"{path}: not a partial render of format {PARTIAL_FORMAT}; delete {folder} to start over")
    missing = [name for name in [*progress["segments"], progress.get("state")] if name and not (folder / name).is_file()]
    if missing:
        raise RenderError(f"{folder}: {', '.join(missing)} missing; delete the folder to start over")
    return progress


def _check_same(progress: dict[str, Any], ident: dict[str, Any], folder: Path) -> None:
    changed = [key for key, value in ident.items() if progress.get(key) != value]
    if changed:
        what = {"story_hash": "the story", "seed": "the seed", "generator": "the model", "weights": "the weights",
                "settings_sha256": "the model settings", "timeline": "the timeline (size, fps or chunking)"}
        raise RenderError(
            f"cannot resume {folder}: {', '.join(what.get(k, k) for k in changed)} differ from the unfinished render; "
            "render with the same inputs, or delete the folder to start over"
        )


def _remove_strays(folder: Path, progress: dict[str, Any]) -> None:
    """Delete what the last session wrote after its last checkpoint (segments, states)."""
    keep = {PROGRESS, *progress["segments"], progress.get("state")}
    for path in folder.iterdir():
        if path.name not in keep:
            if path.is_dir():
                shutil.rmtree(path)
            else:
                path.unlink()


def render_resumable(
    story: Story,
    timeline: Timeline,
    generator: Generator,
    output: Path,
    *,
    seed: int,
    audio: str | Path | None = None,
    settings: dict[str, Any] | None = None,
    on_progress: Callable[[RenderProgress], None] | None = None,
    checkpoint_every: int | None = None,
    resume: bool = False,
) -> RenderResult:
    """:func:`longtake.pipeline.render_story` with checkpoints; see the module docstring."""
    from longtake.render_state import load_state, save_state
    from longtake.video import VideoWriter
    from longtake.video.segments import SEGMENT_SUFFIX, SegmentWriter, read_segment

    if checkpoint_every is not None and checkpoint_every < 1:
        raise RenderError(f"checkpoint_every must be at least 1 chunk, got {checkpoint_every}")
    info = generator.info()
    ident = _identity(timeline, seed, info)
    folder = partial_folder(output)
    if folder.exists():
        if not resume:
            raise RenderError(f"{folder} holds an unfinished render of {output}; pass --resume to continue it, or delete the folder to start over")
        progress = _read_progress(folder, output)
        _check_same(progress, ident, folder)
        _remove_strays(folder, progress)
        every = checkpoint_every or progress.get("checkpoint_every") or 1
        log.info("resuming %s at chunk %d of %d", output, progress["next_chunk"], len(timeline))
    else:
        if resume:
            log.info("no unfinished render at %s; starting from the beginning", folder)
        every = checkpoint_every or 1
        folder.mkdir()
        progress = {"format": PARTIAL_FORMAT, **ident, "checkpoint_every": every, "next_chunk": 0, "frames": 0, "segments": [], "state": None}
        _write_progress(folder, progress)
    start = progress["next_chunk"]
    resumed_from = start
    clock = RenderClock(timeline, on_progress, chunks_done=start, frames_done=progress["frames"])
    size = {"fps": timeline.fps, "width": timeline.width, "height": timeline.height}
    writer: SegmentWriter | None = None

    def close_segment() -> None:
        nonlocal writer
        if writer is not None:
            writer.close()
            progress["segments"].append(writer.path.name)
            writer = None

    try:
        if start < len(timeline):
            state = load_state(folder / progress["state"]) if progress["state"] else None
            for fc in generator.stream(timeline, seed=seed, start_chunk=start, state=state):
                got = checked_frames(info.name, fc, timeline)
                if writer is None:
                    writer = SegmentWriter(folder / f"seg-{len(progress['segments']):05d}{SEGMENT_SUFFIX}", **size)
                writer.write(got)
                clock.chunk_done(got.shape[0])
                done = fc.chunk.index + 1
                if done % every == 0 and done < len(timeline):
                    gen_state = generator.state_dict()
                    if gen_state is None:
                        raise RenderError(f"model '{info.name}' cannot save its state, so its renders cannot be resumed; render without --checkpoint-every")
                    close_segment()
                    name = f"state-{done:06d}.safetensors"
                    save_state(gen_state, folder / name)
                    old = progress["state"]
                    progress.update(next_chunk=done, frames=clock.frames, state=name)
                    _write_progress(folder, progress)
                    if old and old != name:
                        (folder / old).unlink(missing_ok=True)
            close_segment()
            old = progress["state"]
            progress.update(next_chunk=len(timeline), frames=clock.frames, state=None)
            _write_progress(folder, progress)  # all frames are in segments: a resume only re-encodes
            if old:
                (folder / old).unlink(missing_ok=True)
    except BaseException:
        if writer is not None:
            writer.abort()
        raise
    if progress["frames"] != timeline.num_frames:
        raise RenderError(f"generator '{info.name}' produced {progress['frames']} frames; the timeline has {timeline.num_frames}")
    with VideoWriter(output, audio=audio, metadata={"title": timeline.title}, **size) as video:
        for name in progress["segments"]:
            for frames in read_segment(folder / name):
                video.write(frames)
    extra = {"checkpoint_every": every, "resumed_from_chunk": resumed_from}
    result = finish_render(output, timeline, info, seed=seed, audio=audio, settings=settings, clock=clock, extra=extra)
    shutil.rmtree(folder, ignore_errors=True)
    return result
