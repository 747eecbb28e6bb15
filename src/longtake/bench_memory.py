"""``longtake bench memory``: storyworld-bench rendered with every memory mode side by side.

Entry level (DESIGN.md: eval/ must not import the generator): this module drives the
generators and the ground-truth renderer; :mod:`longtake.eval.memory_bench` says which frames
to read and scores them; :mod:`longtake.eval.memory_bench_report` makes the table and files.

Per story, the ground truth is rendered once (StoryWorld's renderer on the generator's
timeline: the same chunks and frame indices), :func:`~longtake.eval.memory_bench.plan_story`
picks the frames the probes will read, then every mode's stream advances one chunk in turn
(the order rotates every chunk), so that all modes see the same load on a shared CPU; only
the wall time inside each stream's ``next`` counts towards its frames per second. All modes
render the same stories with the same seed (``seed + story index``).
"""

from __future__ import annotations

import logging
import time
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

import numpy as np

from longtake.errors import LongtakeError
from longtake.eval.memory_bench import plan_story, score_story
from longtake.eval.memory_bench_stats import summary_rows
from longtake.eval.metrics_probes import IDENTITY_THRESHOLD
from longtake.script.schema import Story
from longtake.world.bench_set import BENCH_NAME, MIN_RETURN_GAP

log = logging.getLogger(__name__)

MODES = ("none", "sink", "nam", "nam+sma", "entity")
#: The row of the ground truth (StoryWorld's renderer): the ceiling the probes allow.
TRUTH = "ground truth"


class BenchError(LongtakeError):
    """Bad input to a bench: an unknown mode, no stories, generators that plan differently."""


@dataclass(frozen=True)
class BenchProgress:
    """One chunk done by one row (a mode, or :data:`TRUTH`), over all stories."""

    row: str
    chunks_done: int
    chunks_total: int
    story: int
    stories: int


#: Counters of :class:`RetrievalCount` (summed over stories; merged runs add them).
RETRIEVAL_KEYS = tuple(p + k for p in ("", "cut_") for k in ("frames", "same_place", "frames_with_cast", "same_character"))


@dataclass
class RetrievalCount:
    """What the memory modes put in attention: per installed memory frame, whether it shows the
    chunk's location and, for chunks with characters on screen, one of them; in all chunks
    and in the first chunk of each shot (``cut``: memory is all the context a memory mode
    keeps there). Tags come from the planner (``MemoryGenerator.selected_tags``)."""

    counts: dict[str, int] = field(default_factory=lambda: dict.fromkeys(RETRIEVAL_KEYS, 0))

    def add(self, chunk: Any, tags: Sequence[tuple[str, Sequence[str]]]) -> None:
        for prefix in ("", "cut_") if chunk.cut else ("",):
            for location, entities in tags:
                self.counts[prefix + "frames"] += 1
                self.counts[prefix + "same_place"] += location == chunk.location
                if chunk.characters:
                    self.counts[prefix + "frames_with_cast"] += 1
                    self.counts[prefix + "same_character"] += any(c in entities for c in chunk.characters)


def check_modes(modes: Sequence[str]) -> list[str]:
    """The modes in order without repeats; :class:`BenchError` for an unknown one or none."""
    out = list(dict.fromkeys(modes))
    bad = [m for m in out if m not in MODES]
    if bad:
        raise BenchError(f"unknown memory mode {bad[0]!r}; expected some of: {', '.join(MODES)}")
    if not out:
        raise BenchError(f"no memory mode given; expected some of: {', '.join(MODES)}")
    return out


def run_memory_bench(
    stories: Sequence[Story],
    generators: Mapping[str, Any],
    probes: Any,
    *,
    seed: int = 0,
    min_return_gap: float = MIN_RETURN_GAP,
    threshold: float = IDENTITY_THRESHOLD,
    on_progress: Callable[[BenchProgress], None] | None = None,
    settings: Mapping[str, Any] | None = None,
    warmup: bool = True,
    name: str = BENCH_NAME,
) -> dict[str, Any]:
    """Render ``stories`` with each generator (mode -> generator) and score every video.

    Returns plain data: ``rows`` (mode or :data:`TRUTH` -> the summary of
    :func:`~longtake.eval.memory_bench.summarise` with the intervals and paired differences of
    :mod:`~longtake.eval.memory_bench_stats`, plus ``frames``, ``seconds``, ``fps`` and
    ``slowdown_vs_sink_pct``), ``stories`` (per story, per row, the cases and their scores)
    and the settings. ``name``: what the stories are (the table's title).
    """
    from longtake.pipeline import plan_for
    from longtake.world.renderer import WorldRenderer

    if not stories:
        raise BenchError("no stories to run")
    modes = check_modes(list(generators))
    timelines = []
    for story in stories:
        plans = {m: plan_for(story, g) for m, g in generators.items()}
        tl = plans[modes[0]]
        if any(len(p) != len(tl) or p.num_frames != tl.num_frames for p in plans.values()):
            raise BenchError("the generators plan the story into different chunks; compare generators of one model")
        timelines.append(tl)
    total = sum(len(tl) for tl in timelines)
    rows = [TRUTH, *modes]
    done = dict.fromkeys(rows, 0)
    seconds = dict.fromkeys(rows, 0.0)
    frames_made = dict.fromkeys(rows, 0)
    attended: dict[str, int] = dict.fromkeys(modes, 0)
    retrieval = {m: RetrievalCount() for m in modes}
    per_story: list[dict[str, Any]] = []

    def tick(row: str, k: int) -> None:
        done[row] += 1
        if on_progress is not None:
            on_progress(BenchProgress(row, done[row], total, k, len(stories)))

    if warmup:  # one untimed chunk per mode first: lazy set-up costs would land on whichever mode runs first
        for m in modes:
            stream = generators[m].stream(timelines[0], seed=seed)
            next(iter(stream))
            getattr(stream, "close", lambda: None)()
    for k, (story, timeline) in enumerate(zip(stories, timelines)):
        renderer = WorldRenderer(story)
        truth_frames, truths = [], []
        for chunk in timeline.chunks:
            t0 = time.perf_counter()
            f, tr = renderer.render_chunk(chunk, masks=False)
            seconds[TRUTH] += time.perf_counter() - t0
            frames_made[TRUTH] += f.shape[0]
            truth_frames.append(f)
            truths.extend(tr)
            tick(TRUTH, k)
        plan = plan_story(story, timeline, truths, min_return_gap=min_return_gap)
        want = plan.frames
        gt = np.concatenate(truth_frames)
        kept: dict[str, dict[int, np.ndarray]] = {TRUTH: {f: gt[f] for f in want}}
        del gt, truth_frames
        kept |= {m: {} for m in modes}
        wanted = set(want)
        streams = {m: iter(generators[m].stream(timeline, seed=seed + k)) for m in modes}
        looks_at: dict[str, list[dict[str, Any]]] = {m: [] for m in modes}  # per mode, per chunk: the figure layer's looks
        for c in range(len(timeline)):
            r = c % len(modes)
            for m in modes[r:] + modes[:r]:
                t0 = time.perf_counter()
                fc = next(streams[m])
                seconds[m] += time.perf_counter() - t0
                frames_made[m] += fc.frames.shape[0]
                attended[m] = max(attended[m], int(getattr(generators[m], "attended_tokens", 0) or 0))
                retrieval[m].add(fc.chunk, getattr(generators[m], "selected_tags", ()))
                looks_at[m].append(dict(getattr(generators[m], "looks", None) or {}))
                a = fc.chunk.start_frame
                for i in range(fc.frames.shape[0]):
                    if a + i in wanted:
                        kept[m][a + i] = fc.frames[i].copy()
                tick(m, k)
        for m in modes:
            for _ in streams[m]:  # a stream ends after its last chunk; drain it so it finishes cleanly
                raise BenchError(f"memory mode {m!r} made more chunks than the timeline has")
        scores = {row: score_story(probes, plan, kept[row], threshold=threshold) for row in rows}
        for m in modes:
            scores[m]["looks_kept"] = looks_kept(plan, timeline, looks_at[m])
        per_story.append({"index": k, "title": story.title, "seed": seed + k, "num_frames": timeline.num_frames,
                          "chunks": len(timeline), "frames_read": len(want), "scores": scores})
        log.info("story %d/%d (%s): %d returns, %d revisits", k + 1, len(stories), story.title, len(plan.returns), len(plan.revisits))

    return {
        "bench": name,
        "num_stories": len(stories),
        "seed": seed,
        "modes": modes,
        "min_return_gap_s": min_return_gap,
        "identity_threshold": threshold,
        "settings": dict(settings or {}),
        "generators": {m: _info(g) for m, g in generators.items()},
        "rows": summary_rows(per_story, rows, modes, frames_made, seconds, attended, {m: retrieval[m].counts for m in modes}),
        "stories": per_story,
    }


def looks_kept(plan: Any, timeline: Any, looks_at: Sequence[Mapping[str, Any]]) -> list[bool] | None:
    """Per return of ``plan``: whether the figure layer drew the character with the same look
    at the return (the chunk of the first frame judged there) as at her first appearance (the
    same for its side), from ``looks_at`` (per chunk, the layer's looks after it). A
    diagnostic of the generator's state, not of the video: it tells a look forgotten from one
    the probes read differently. None for a generator without looks (no figure layer)."""
    if not any(looks_at):
        return None
    chunk_of = np.concatenate([np.full(ch.num_frames, i) for i, ch in enumerate(timeline.chunks)])
    out = []
    for case in plan.returns:
        a, b = (looks_at[int(chunk_of[side[0]])].get(case.character) if side else None for side in (case.first, case.back))
        out.append(a is not None and a == b)
    return out


def _info(generator: Any) -> dict[str, Any]:
    try:
        info = generator.info()
    except AttributeError:
        return {}
    return {"name": info.name, "settings": info.settings, "weights": dict(info.weights)}
