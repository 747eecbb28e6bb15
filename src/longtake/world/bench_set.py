"""storyworld-bench: a fixed set of 60-second held-out stories for long-range consistency.

Protocol (MemFlow / LongLive interactive setting): every story lasts 60 s and is made of six
10-second segments with one prompt each -- each segment is one shot, and every segment
boundary is a prompt switch. On top of that each benchmark story has

* at least one *return*: a character back on screen after at least
  :data:`MIN_RETURN_GAP` seconds off screen (shot bounds, a lower bound of the real gap);
* at least one *revisit*: a scene back at a location after a scene elsewhere.

Stories come from the held-out split (:mod:`longtake.world.sampler`), so no training story
shares their seeds, casts or content. :func:`make_bench` scans candidate seeds
``seed * SEED_STRIDE + k`` for k = 0, 1, 2, ... and keeps the first ``n`` that satisfy the
protocol; the index records each story's sampler seed, so a single story can be regenerated
with ``bench_story(seed)``. :func:`write_bench` writes ``story_000.yaml`` ... and
``index.json``; running it again reproduces the files byte for byte.

storyworld-bench-long (:func:`make_long_bench`) is the same protocol at 180 s (eighteen 10 s
segments) with absences of 65-72 s, so that every qualifying story has a character back after
at least :data:`LONG_MIN_RETURN_GAP` s: longer than NAM's 60 s look-ahead (docs/memory.md). It
is the set of session 23's "Returns after more than 60 s" (its first eight stories are those
stories), made a function so that it can be run again from a clean checkout.
"""

from __future__ import annotations

import json
import logging
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from longtake.plan import plan
from longtake.script.load import write_text_atomic
from longtake.script.schema import Story
from longtake.world.errors import WorldError
from longtake.world.sampler import returns, revisited_locations, sample_story
from longtake.world.vocab import check_story

log = logging.getLogger(__name__)

BENCH_NAME = "storyworld-bench"
BENCH_VERSION = 1
BENCH_SECONDS = 60.0
SEGMENT_SECONDS = 10.0
MIN_RETURN_GAP = 15.0
SEED_STRIDE = 100_000
#: Stories in storyworld-bench (benchmarks/storyworld-bench/story_000 ... story_049).
BENCH_SIZE = 50
#: Sampler settings of every benchmark story (besides seed, duration and split).
BENCH_SAMPLER: dict[str, Any] = {
    "segment_seconds": SEGMENT_SECONDS,
    "num_characters": (2, 3),
    "num_locations": (2, 3),
    "scene_seconds": (10.0, 25.0),
    "absence_seconds": (15.0, 30.0),
}


#: storyworld-bench-long: characters away for more than a minute.
LONG_NAME = "storyworld-bench-long"
LONG_SECONDS = 180.0
LONG_MIN_RETURN_GAP = 65.0
#: Sampler seed of the first candidate story (seeds are scanned upwards from here).
LONG_FIRST_SEED = 700_001
#: Stories in storyworld-bench-long (``--long-returns --first/--stories`` index into them).
LONG_SIZE = 16
LONG_SAMPLER: dict[str, Any] = {**BENCH_SAMPLER, "absence_seconds": (65.0, 72.0)}


@dataclass(frozen=True)
class BenchStory:
    index: int
    seed: int
    story: Story

    @property
    def file(self) -> str:
        return f"story_{self.index:03d}.yaml"


def bench_story(seed: int) -> Story:
    """The held-out candidate story of sampler seed ``seed`` (may or may not qualify)."""
    return sample_story(seed, BENCH_SECONDS, split="heldout", **BENCH_SAMPLER)


def long_story(seed: int) -> Story:
    """The held-out candidate story of storyworld-bench-long for sampler seed ``seed``."""
    return sample_story(seed, LONG_SECONDS, split="heldout", **LONG_SAMPLER)


def protocol_problems(story: Story, *, seconds: float = BENCH_SECONDS, min_return_gap: float = MIN_RETURN_GAP) -> list[str]:
    """Why ``story`` is not a valid benchmark story (empty list: it is); ``seconds`` and
    ``min_return_gap`` are storyworld-bench's unless given (storyworld-bench-long: 180, 65)."""
    problems = []
    if abs(story.duration - seconds) > 1e-6:
        problems.append(f"lasts {story.duration:g} s; expected {seconds:g} s")
    shots = [shot for _, _, shot in story.shots()]
    segments = int(seconds // SEGMENT_SECONDS)
    if [s.duration for s in shots] != [SEGMENT_SECONDS] * segments:
        problems.append(f"shots are not {segments} segments of {SEGMENT_SECONDS:g} s: {[s.duration for s in shots]}")
    if any(a.prompt == b.prompt for a, b in zip(shots, shots[1:])):
        problems.append("two consecutive segments share a prompt; every segment boundary must be a prompt switch")
    if not returns(story, min_gap=min_return_gap):
        problems.append(f"no character returns after {min_return_gap:g} s or more off screen")
    if not revisited_locations(story):
        problems.append("no location is revisited")
    return problems


def _first_qualifying(n: int, seeds: range, make: Callable[[int], Story], problems: Callable[[Story], list[str]], name: str) -> list[BenchStory]:
    """The first ``n`` stories ``make(seed)`` over ``seeds`` with no ``problems``, numbered from 0."""
    if n < 1 or n > len(seeds) // 10:
        raise WorldError(f"n={n} out of range; expected 1 <= n <= {len(seeds) // 10}")
    out: list[BenchStory] = []
    for k, cand in enumerate(seeds):
        story = make(cand)
        if not problems(story):
            out.append(BenchStory(len(out), cand, story))
            if len(out) == n:
                log.debug("%s: %d stories from %d candidates", name, n, k + 1)
                return out
    raise WorldError(f"found only {len(out)} qualifying stories among {len(seeds)} seeds")


def make_bench(n: int = BENCH_SIZE, seed: int = 0) -> list[BenchStory]:
    """The first ``n`` qualifying held-out stories among seeds ``seed*SEED_STRIDE + k``."""
    return _first_qualifying(n, range(seed * SEED_STRIDE, (seed + 1) * SEED_STRIDE), bench_story, protocol_problems, BENCH_NAME)


def make_long_bench(n: int = LONG_SIZE) -> list[BenchStory]:
    """storyworld-bench-long: the first ``n`` held-out 180 s stories, from sampler seed
    :data:`LONG_FIRST_SEED` on, that keep the bench's protocol with a return after at least
    :data:`LONG_MIN_RETURN_GAP` s."""
    return _first_qualifying(n, range(LONG_FIRST_SEED, LONG_FIRST_SEED + SEED_STRIDE), long_story,
                             lambda s: protocol_problems(s, seconds=LONG_SECONDS, min_return_gap=LONG_MIN_RETURN_GAP), LONG_NAME)


def segments(story: Story) -> list[dict[str, Any]]:
    """Per segment (one shot): script seconds, prompt, cast, location, planned chunks."""
    timeline = plan(story)
    out = []
    t = 0.0
    for shot_index, ((si, _, shot), span) in enumerate(zip(story.shots(), timeline.shots)):
        out.append({
            "index": shot_index,
            "start_s": t,
            "end_s": round(t + shot.duration, 6),
            "location": story.scenes[si].location,
            "characters": list(shot.characters),
            "camera": shot.camera,
            "prompt": shot.prompt,
            "first_chunk": span.first_chunk,
            "num_chunks": span.num_chunks,
            "start_frame": span.start_frame,
            "num_frames": span.num_frames,
        })
        t = round(t + shot.duration, 6)
    return out


@dataclass(frozen=True)
class BenchSpec:
    """One of the two benchmark sets: its name, size, protocol and how to make its first n stories."""

    name: str
    size: int
    seconds: float
    min_return_gap: float
    make: Callable[[int], list[BenchStory]]


def bench_spec(long: bool = False) -> BenchSpec:
    """storyworld-bench, or with ``long`` storyworld-bench-long."""
    if long:
        return BenchSpec(LONG_NAME, LONG_SIZE, LONG_SECONDS, LONG_MIN_RETURN_GAP, make_long_bench)
    return BenchSpec(BENCH_NAME, BENCH_SIZE, BENCH_SECONDS, MIN_RETURN_GAP, make_bench)


def index_entry(item: BenchStory, *, long: bool = False) -> dict[str, Any]:
    story = item.story
    return {
        "file": item.file,
        "seed": item.seed,
        "title": story.title,
        "story_hash": story.content_hash(),
        "duration_s": story.duration,
        "characters": {c.id: c.description for c in story.characters},
        "locations": [loc.id for loc in story.locations],
        "returns": [r.to_dict() for r in returns(story, min_gap=bench_spec(long).min_return_gap)],
        "revisited_locations": revisited_locations(story),
        "segment_boundaries_s": [s["start_s"] for s in segments(story)][1:],
        "segments": segments(story),
    }


def bench_index(items: list[BenchStory], *, seed: int, long: bool = False) -> dict[str, Any]:
    spec = bench_spec(long)
    seconds, gap = spec.seconds, spec.min_return_gap
    return {
        "name": spec.name,
        "version": BENCH_VERSION,
        "split": "heldout",
        "seed": None if long else seed,
        "num_stories": len(items),
        "protocol": {
            "duration_s": seconds,
            "segment_s": SEGMENT_SECONDS,
            "segments": int(seconds // SEGMENT_SECONDS),
            "min_return_gap_s": gap,
            "min_returns": 1,
            "min_revisited_locations": 1,
            "frames_per_chunk": 12,
        },
        "sampler": {k: list(v) if isinstance(v, tuple) else v for k, v in (LONG_SAMPLER if long else BENCH_SAMPLER).items()},
        "regenerate": f"longtake world bench OUT_DIR --n {len(items)}" + (" --long" if long else f" --seed {seed}"),
        "stories": [index_entry(item, long=long) for item in items],
    }


def write_bench(out_dir: str | Path, *, n: int = 50, seed: int = 0, long: bool = False) -> Path:
    """Write ``story_000.yaml`` ... and ``index.json`` into ``out_dir``; returns the index path.
    ``long``: storyworld-bench-long's first ``n`` stories (``seed`` is not used)."""
    out = Path(out_dir)
    items = make_long_bench(n) if long else make_bench(n, seed)  # the standard set also takes a seed
    for item in items:
        item.story.save(out / item.file)
    index = out / "index.json"
    write_text_atomic(index, json.dumps(bench_index(items, seed=seed, long=long), indent=2, ensure_ascii=False) + "\n")
    return index


def check_bench(bench_dir: str | Path) -> list[str]:
    """Problems with a shipped benchmark folder (empty list: every story loads and qualifies)."""
    root = Path(bench_dir)
    try:
        index = json.loads((root / "index.json").read_text(encoding="utf-8"))
    except (OSError, ValueError) as err:
        return [f"{root / 'index.json'}: cannot read: {err}"]
    spec = bench_spec(index.get("name") == LONG_NAME)
    problems: list[str] = []
    for entry in index["stories"]:
        story = Story.load(root / entry["file"])
        check_story(story)
        problems += [f"{entry['file']}: {p}" for p in protocol_problems(story, seconds=spec.seconds, min_return_gap=spec.min_return_gap)]
        if story.content_hash() != entry["story_hash"]:
            problems.append(f"{entry['file']}: content hash differs from index.json")
    return problems
