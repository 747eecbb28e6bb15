"""Render a script to files with exact ground truth: ``<stem>.mp4``, ``<stem>.truth.jsonl``,
``<stem>.masks.npz`` and the manifest ``<stem>.json`` (``longtake world render``)."""

from __future__ import annotations

import os
from collections.abc import Callable
from pathlib import Path
from typing import Any

from longtake.world.errors import WorldError


def truth_base(video: Path) -> Path:
    """The TruthWriter base of ``video``: ``<stem>.truth.jsonl`` and ``<stem>.masks.npz`` next to it."""
    return video.with_name(video.stem)


def render_to_files(
    story_path: Path,
    output: Path,
    *,
    width: int | None = None,
    height: int | None = None,
    fps: int | None = None,
    frames_per_chunk: int = 12,
    on_chunk: Callable[[int, int, int, int], None] | None = None,
) -> dict[str, Any]:
    """Render ``story_path`` with WorldRenderer into ``output`` (.mp4) plus truth and manifest.

    Frames stream from the renderer into :class:`longtake.video.VideoWriter` and the truth
    into :class:`longtake.world.truth.TruthWriter` chunk by chunk (constant memory).
    ``on_chunk(chunks_done, chunks_total, frames_done, frames_total)`` reports progress.
    """
    from longtake.plan import plan
    from longtake.script.load import load_story
    from longtake.script.schema import Size
    from longtake.video import VideoWriter
    from longtake.world.renderer import WorldRenderer
    from longtake.world.truth import TruthWriter
    from longtake.world.vocab import check_story

    output = Path(output)
    if output.suffix.lower() != ".mp4":
        raise WorldError(f"{output}: output must end in .mp4")
    story = load_story(story_path)
    try:
        check_story(story)
    except WorldError as exc:  # name the file on every line, like script errors do
        raise WorldError("\n".join(f"{story_path}: {line}" for line in exc.lines())) from None
    w, h, f = width or story.size.width, height or story.size.height, fps or story.fps
    if w % 8 or h % 8 or not (16 <= w <= 4096 and 16 <= h <= 4096):
        raise WorldError(f"size {w}x{h} invalid; expected sides from 16 to 4096, multiples of 8")
    if not 1 <= f <= 60:
        raise WorldError(f"fps {f} invalid; expected 1 to 60")
    story = story.model_copy(update={"size": Size(width=w, height=h), "fps": f})
    timeline = plan(story, frames_per_chunk=frames_per_chunk)
    output.parent.mkdir(parents=True, exist_ok=True)
    base = truth_base(output)
    # truth goes to hidden partial names first and is renamed with the video: never half a set
    partial = output.with_name(f".{output.stem}.partial")
    suffixes = (".truth.jsonl", ".masks.npz")
    renderer = WorldRenderer(story, width=w, height=h)
    frames = 0
    meta = {"title": story.title, "width": w, "height": h, "fps": f, "seed": story.seed, "story_hash": timeline.story_hash, "video": output.name}
    try:
        with TruthWriter(partial, meta=meta) as truth_writer:
            with VideoWriter(output, fps=f, width=w, height=h, metadata={"title": story.title}) as writer:
                for done, chunk in enumerate(timeline.chunks, start=1):
                    chunk_frames, truths = renderer.render_chunk(chunk)
                    writer.write(chunk_frames)
                    truth_writer.write(list(truths))
                    frames += len(chunk_frames)
                    if on_chunk is not None:
                        on_chunk(done, len(timeline), frames, timeline.num_frames)
        for suffix in suffixes:
            os.replace(partial.with_name(partial.name + suffix), base.with_name(base.name + suffix))
    finally:
        for suffix in suffixes:
            partial.with_name(partial.name + suffix).unlink(missing_ok=True)
    result: dict[str, Any] = {"video": output, "frames": frames, "seconds": frames / f, "width": w, "height": h, "fps": f,
                              "truth": base.with_name(base.name + ".truth.jsonl"), "manifest": None}
    try:
        from longtake.video import build_manifest, write_manifest
    except ImportError:  # pragma: no cover - video/ without manifests
        return result
    from longtake import __version__

    manifest = build_manifest(
        video=output,
        story_hash=timeline.story_hash,
        timeline_summary={"chunks": len(timeline), "frames": timeline.num_frames, "fps": f, "width": w, "height": h, "frames_per_chunk": frames_per_chunk},
        settings={"width": w, "height": h, "fps": f, "frames_per_chunk": frames_per_chunk},
        seed=story.seed,
        generator={"name": "storyworld", "kind": "procedural", "version": __version__},
        extra={"truth": [f"{base.name}.truth.jsonl", f"{base.name}.masks.npz"], "script": str(story_path)},
    )
    result["manifest"] = write_manifest(output, manifest)
    return result
