"""Evaluate one video: one streaming pass feeding every metric, then the report's numbers.

:func:`evaluate_video` reads the video once, chunk by chunk, and hands each chunk to the
weight-free :class:`~longtake.eval.metrics_stream.MetricStream`, to the StoryWorld probes
(with a script) and to the real-world models the caller asked for. Memory is bounded by one
chunk of frames plus one shot of probe samples.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Callable, Iterable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from longtake.eval.errors import EvalError
from longtake.eval.metrics import DEFAULT_MAX_SIDE
from longtake.eval.metrics_stream import MetricStream, StreamResult
from longtake.eval.report import FADE_SECONDS, REPORT_VERSION, summarise
from longtake.eval.shots import ShotPlan, shots_from_cuts, shots_from_story

log = logging.getLogger(__name__)

#: Frames decoded per chunk.
READ_CHUNK = 64


@dataclass
class EvalOptions:
    """What to measure. ``probes``: a folder of StoryWorld probes (None: the shipped ones);
    ``use_probes=False`` skips them. ``plan_chunk_frames``: (frames per chunk, first chunk
    frames) the video was planned with, when known."""

    script: Path | None = None
    plan_chunk_frames: tuple[int, int] | None = None
    segment_seconds: float = 10.0
    max_side: int = DEFAULT_MAX_SIDE
    use_probes: bool = True
    probes: Path | None = None
    identity_threshold: float | None = None
    probe_fps: float | None = None
    dino: Path | None = None
    clip: Path | None = None
    dlib: Path | None = None
    model_fps: float = 4.0


@dataclass
class EvalResult:
    """The report (plain data, written as report.json) plus what the HTML page draws."""

    report: dict[str, Any]
    plan: ShotPlan
    keyframes: dict[int, np.ndarray] = field(default_factory=dict)


ProgressFn = Callable[[int, int], None]


def load_script(path: Path) -> Any:
    from longtake.script import load_story

    return load_story(path)


def evaluate_video(path: str | Path, options: EvalOptions | None = None, *, story: Any = None, on_progress: ProgressFn | None = None) -> EvalResult:
    """Measure the video at ``path``; raises a LongtakeError (one line) for bad input.

    ``story``: an already loaded script (otherwise ``options.script`` is loaded).
    ``on_progress(frames_done, frames_total)`` is called after every chunk.
    """
    from longtake.video.reader import probe, read_frames

    opts = options or EvalOptions()
    path = Path(path)
    info = probe(path)
    if info.num_frames < 1:
        raise EvalError(f"{path}: the video has no frames")
    if story is None and opts.script is not None:
        story = load_script(opts.script)
    plan = shots_from_story(story, info.num_frames, info.fps, plan_chunk_frames=opts.plan_chunk_frames) if story is not None else None
    keyframes = None
    fades = {s.start: round(FADE_SECONDS * info.fps) for s in plan.shots if s.transition == "fade"} if plan else None
    if plan is not None:
        # first (after any fade-in), middle and last frame of every shot
        keyframes = {k for s in plan.shots for k in (min(s.start + (fades or {}).get(s.start, 0), s.end - 1), (s.start + s.end - 1) // 2, s.end - 1)}
    stream = MetricStream(fps=info.fps, max_side=opts.max_side, shot_starts=set(plan.cuts) if plan else None, keyframes=keyframes, fades=fades)
    probes_section, probes_note = _probes(opts, story, plan, info)
    models = _models(opts, info.fps, plan)
    t0 = time.perf_counter()
    done = 0
    for frames in read_frames(path, chunk=READ_CHUNK):
        stream.update(frames)
        starts = set(stream.cuts) | set(plan.cuts if plan else ())
        if probes_section is not None:
            probes_section.update(done, frames)
        for m in models:
            m.update(done, frames, starts)
        done += frames.shape[0]
        if on_progress is not None:
            on_progress(done, info.num_frames)
    result = stream.finish()
    wall = time.perf_counter() - t0
    if result.num_frames == 0:
        raise EvalError(f"{path}: no frame could be decoded")
    if plan is not None and plan.shots[-1].end != result.num_frames:
        log.warning("%s: %d frames decoded, %d in the header; shots re-derived from the decoded count", path, result.num_frames, info.num_frames)
        plan = shots_from_story(story, result.num_frames, info.fps, plan_chunk_frames=opts.plan_chunk_frames)
    final_plan = plan if plan is not None else shots_from_cuts(result.detected_cuts, result.num_frames)
    report: dict[str, Any] = {
        "longtake_eval": REPORT_VERSION,
        "video": {"name": path.name, "path": str(path), "frames": result.num_frames, "fps": info.fps, "width": info.width,
                  "height": info.height, "duration_s": result.num_frames / info.fps, "working_size": list(result.working_size)},
        "script": None,
    }
    if story is not None:
        report["script"] = {"path": str(opts.script) if opts.script else None, "title": story.title, "shots": len(final_plan.shots),
                            "duration_s": story.duration, "fps": story.fps, "shot_frames_from": final_plan.source}
    report |= summarise(result, final_plan, segment_seconds=opts.segment_seconds, scripted=story is not None)
    if probes_section is not None:
        t1 = time.perf_counter()
        report["probes"] = probes_section.finish()
        wall += time.perf_counter() - t1
    else:
        report["probes"] = {"skipped": probes_note}
    report["realworld"] = {m.key: m.summary(result.num_frames) for m in models}
    report["keyframes"] = sorted(result.keyframes)
    report["timing"] = {"seconds": wall, "frames_per_second": result.num_frames / wall if wall > 0 else None}
    return EvalResult(report, final_plan, result.keyframes)


def evaluate_frames(frames: Iterable[np.ndarray], fps: float, *, plan: ShotPlan | None = None, max_side: int = DEFAULT_MAX_SIDE,
                    segment_seconds: float = 10.0) -> tuple[StreamResult, dict[str, Any]]:
    """The weight-free metrics of frames already in memory or from any iterator of
    (n, H, W, 3) / (H, W, 3) uint8 arrays: the stream result and the report's numbers
    (``summary``, ``shots``, ``segments``, ``cuts``, ``series``). ``plan``: known shots
    (otherwise the detected cuts make the shots)."""
    fades = {s.start: round(FADE_SECONDS * fps) for s in plan.shots if s.transition == "fade"} if plan else None
    stream = MetricStream(fps=fps, max_side=max_side, shot_starts=set(plan.cuts) if plan else None, fades=fades)
    for chunk in frames:
        arr = np.asarray(chunk)
        stream.update(arr[None] if arr.ndim == 3 else arr)
    result = stream.finish()
    final = plan if plan is not None else shots_from_cuts(result.detected_cuts, result.num_frames)
    return result, summarise(result, final, segment_seconds=segment_seconds, scripted=plan is not None)


def _probes(opts: EvalOptions, story: Any, plan: ShotPlan | None, info: Any) -> tuple[Any, str]:
    """The probe section, or None and why not."""
    if story is None or plan is None:
        return None, "no script"
    if not opts.use_probes:
        return None, "disabled (--no-probes)"
    try:
        from longtake.eval.probes import StoryWorldProbes
    except ImportError as exc:
        log.warning("StoryWorld probes unavailable (%s); skipping identity, location, attribute and alignment sections", exc)
        return None, f"probes unavailable: {exc}"
    try:
        probes = StoryWorldProbes.load(opts.probes)
    except EvalError as exc:
        if opts.probes is not None:
            raise  # the user named a folder: a bad one is an error, not a silent skip
        log.warning("%s; skipping identity, location, attribute and alignment sections", exc)
        return None, str(exc)
    from longtake.eval.metrics_probes import IDENTITY_THRESHOLD, SAMPLE_FPS, ProbeSection

    section = ProbeSection(probes, story, plan, info.fps, segment_seconds=opts.segment_seconds,
                           sample_fps=opts.probe_fps or SAMPLE_FPS,
                           identity_threshold=opts.identity_threshold if opts.identity_threshold is not None else IDENTITY_THRESHOLD,
                           num_frames=info.num_frames)
    return section, ""


def _models(opts: EvalOptions, fps: float, plan: ShotPlan | None) -> list[Any]:
    from longtake.eval import realworld as rw

    models: list[Any] = []
    kw = {"sample_fps": opts.model_fps, "segment_seconds": opts.segment_seconds}
    if opts.dino is not None:
        models.append(rw.DinoModel(opts.dino, fps, plan, **kw))
    if opts.clip is not None:
        models.append(rw.ClipModel(opts.clip, fps, plan, **kw))
    if opts.dlib is not None:
        models.append(rw.DlibFaces(opts.dlib, fps, plan, sample_fps=opts.model_fps))
    return models
