"""Shots: cut detection on the frames, shot ranges from a script, and how well they agree.

Cut detection is online (causal): a cut at frame t is decided when frame t arrives, from
frames t-1 and t and a short history, so one pass over a long video finds every cut in
constant memory.

A script says where shots begin in *seconds*; the video says how many frames it has. The
frame ranges come from planning the story the way the video was probably made (the chunked
planner aligns shots to chunks, so the right chunk size matters by up to half a chunk), and
otherwise from the shot durations scaled to the video's length.
"""

from __future__ import annotations

import logging
from collections import deque
from dataclasses import asdict, dataclass, field
from typing import Any

import numpy as np

from longtake.eval.errors import EvalError
from longtake.eval.metrics import FrameFeatures, hash_distance, histogram_similarity

log = logging.getLogger(__name__)

#: A pair whose perceptual hashes differ in at least this fraction of bits has changed layout
#: (StoryWorld camera moves stay under 0.38 between consecutive frames; cuts reach 0.7-1).
CUT_HASH = 0.5
#: A pair whose colour histograms overlap less than 1 - CUT_HIST has changed palette.
CUT_HIST = 0.3
#: A sudden jump in pixel difference, CUT_SPIKE times the recent median, with at least a
#: quarter of the hash bits changed, is a cut between two similar framings.
CUT_SPIKE = 5.0
CUT_SPIKE_MIN_MAD = 8.0
CUT_SPIKE_HASH = 0.25
#: Consecutive frames whose grey thumbnails correlate this well (normalised cross-correlation,
#: blind to gain and offset) are one shot whatever else changed: a fade or a flicker. Camera
#: moves in StoryWorld stay above 0.9 between frames; visible cuts stay under 0.81.
CUT_CONTINUITY = 0.9
#: History of recent pair differences the spike is measured against.
CUT_HISTORY = 8
#: Two cuts closer than this many seconds are one (a fade from black gives two jumps).
CUT_MIN_GAP_SECONDS = 0.25
#: Planned chunk sizes tried, in order, when the caller does not say how the video was planned:
#: (frames per chunk, first chunk frames): the built-in causal model (Wan's 9 + 12), then
#: StoryWorld's and the planner's default (12 + 12).
PLAN_CANDIDATES: tuple[tuple[int, int], ...] = ((12, 9), (12, 12))


@dataclass
class CutDetector:
    """Causal shot-cut detector over a stream of :class:`FrameFeatures`.

    A pair (t-1, t) is a cut when its perceptual hashes differ by at least :data:`CUT_HASH`,
    or its colour histograms by :data:`CUT_HIST`, or its pixel difference jumps to
    :data:`CUT_SPIKE` times the recent median with part of the layout changed. A flicker
    (brightness only) changes neither the hash nor, much, the hue/saturation histogram; a
    camera move changes the difference every frame, so it never spikes.
    """

    fps: float
    history: deque[float] = field(default_factory=lambda: deque(maxlen=CUT_HISTORY))
    last_cut: int = -(10**9)

    def score(self, prev: FrameFeatures, cur: FrameFeatures, mad: float) -> float:
        """Cut strength of the pair; a cut when >= 1."""
        if prev.flat or cur.flat:
            hash_d = 0.0 if (prev.flat and cur.flat) else 1.0
        else:
            hash_d = hash_distance(prev.phash, cur.phash)
        hist_d = 1.0 - histogram_similarity(prev.hist, cur.hist)
        if not (prev.flat or cur.flat) and float(prev.pattern @ cur.pattern) >= CUT_CONTINUITY:
            return min(max(hash_d / CUT_HASH, hist_d / CUT_HIST), 0.99)
        s = max(hash_d / CUT_HASH, hist_d / CUT_HIST)
        if self.history and hash_d >= CUT_SPIKE_HASH and mad >= CUT_SPIKE_MIN_MAD:
            base = float(np.median(self.history)) + 1.0
            s = max(s, mad / (CUT_SPIKE * base))
        return s

    def update(self, t: int, prev: FrameFeatures, cur: FrameFeatures, mad: float) -> tuple[bool, float]:
        """(is frame t the first of a new shot, cut strength)."""
        s = self.score(prev, cur, mad)
        is_cut = s >= 1.0 and (t - self.last_cut) >= max(1, round(CUT_MIN_GAP_SECONDS * self.fps))
        if is_cut:
            self.last_cut = t
            self.history.clear()
        elif s < 1.0:
            self.history.append(mad)
        return is_cut, s


@dataclass(frozen=True)
class ShotRange:
    """Frames [start, end) of one shot, with what the script says about it (when known)."""

    index: int
    start: int
    end: int
    scene: int | None = None
    location: str | None = None
    characters: tuple[str, ...] = ()
    prompt: str | None = None
    transition: str = "cut"
    camera: str | None = None

    @property
    def num_frames(self) -> int:
        return self.end - self.start

    def to_dict(self) -> dict[str, Any]:
        d = asdict(self)
        d["characters"] = list(self.characters)
        return d


@dataclass(frozen=True)
class ShotPlan:
    """Shot ranges of a video and how they were found (``source``)."""

    shots: tuple[ShotRange, ...]
    source: str  # "plan 12/9" | "plan 12/12" | "durations" | "detected"
    tolerance: int  # frames a detected cut may be off a planned one

    @property
    def cuts(self) -> list[int]:
        """First frame of every shot but the first."""
        return [s.start for s in self.shots[1:]]

    @property
    def required_cuts(self) -> list[int]:
        """Cuts that must be visible: a change of location or a fade. A cut between two shots
        of one place with the same framing can look continuous and is not required."""
        out = []
        for a, b in zip(self.shots, self.shots[1:]):
            if b.transition == "fade" or a.location != b.location or a.scene is None:
                out.append(b.start)
        return out


def shots_from_cuts(cuts: list[int], num_frames: int) -> ShotPlan:
    """Shots between detected cuts (no script)."""
    bounds = [0, *sorted(c for c in cuts if 0 < c < num_frames), num_frames]
    shots = tuple(ShotRange(i, a, b) for i, (a, b) in enumerate(zip(bounds, bounds[1:])) if b > a)
    return ShotPlan(shots or (ShotRange(0, 0, num_frames),), "detected", 0)


def shots_from_story(story: Any, num_frames: int, fps: float, *, plan_chunk_frames: tuple[int, int] | None = None) -> ShotPlan:
    """Frame ranges of ``story``'s shots in a video of ``num_frames`` frames at ``fps``.

    With ``plan_chunk_frames`` = (frames per chunk, first chunk frames) the story is planned
    that way and must match the video's length. Otherwise the candidates of
    :data:`PLAN_CANDIDATES` are tried and the first that gives exactly ``num_frames`` frames
    wins; when none does, the shot durations are scaled to the video's length.
    """
    from longtake.plan import plan
    from longtake.plan.prompt import expand_prompt

    if num_frames < 1:
        raise EvalError("the video has no frames")
    info = []
    for si, hi, shot in story.shots():
        scene = story.scenes[si]
        info.append((si, scene.location, tuple(shot.characters), expand_prompt(story, scene, shot), shot.transition, shot.camera, shot.duration))
    same_rate = abs(float(fps) - float(story.fps)) < 1e-6
    candidates = [plan_chunk_frames] if plan_chunk_frames else list(PLAN_CANDIDATES)
    if same_rate:
        for fpc, first in candidates:
            try:
                tl = plan(story, frames_per_chunk=fpc, first_chunk_frames=first)
            except Exception as exc:  # a PlanError: a chunking the story does not fit
                raise EvalError(f"cannot plan the script with {fpc}/{first} frames per chunk: {exc}") from None
            if tl.num_frames == num_frames:
                shots = tuple(
                    ShotRange(k, span.start_frame, span.start_frame + span.num_frames, *info[k][:6]) for k, span in enumerate(tl.shots)
                )
                return ShotPlan(shots, f"plan {fpc}/{first}", 2)
    if plan_chunk_frames:
        log.warning("planning the script with %d/%d frames per chunk does not give the video's %d frames; "
                    "using the shot durations scaled to the video instead", *plan_chunk_frames, num_frames)
    total = sum(i[6] for i in info)
    cum = np.cumsum([0.0] + [i[6] for i in info])
    bounds = np.round(cum / total * num_frames).astype(int)
    shots = []
    for k, (a, b) in enumerate(zip(bounds, bounds[1:])):
        b = max(b, a + 1) if k < len(info) - 1 else num_frames
        shots.append(ShotRange(k, int(a), int(min(b, num_frames)), *info[k][:6]))
    # half a chunk of the planner, or 0.4 s, whichever is larger
    tol = max(2, round(0.4 * fps), 6)
    return ShotPlan(tuple(s for s in shots if s.end > s.start), "durations", tol)


def match_cuts(detected: list[int], plan: ShotPlan) -> dict[str, Any]:
    """Detected cuts against the plan's, each matched at most once within ``plan.tolerance``.

    Precision: detected cuts that fall on any planned cut. Recall and F1: over the cuts that
    must be visible (:attr:`ShotPlan.required_cuts`); ``recall_all`` over every planned cut.
    """
    planned = plan.cuts
    required = set(plan.required_cuts)
    tol = plan.tolerance
    used: set[int] = set()
    matched: list[tuple[int, int]] = []
    for d in sorted(detected):
        best = min((p for p in planned if p not in used and abs(p - d) <= tol), key=lambda p: abs(p - d), default=None)
        if best is not None:
            used.add(best)
            matched.append((best, d))
    tp = len(matched)
    precision = tp / len(detected) if detected else 1.0
    req_hit = sum(1 for p, _ in matched if p in required)
    recall = req_hit / len(required) if required else 1.0
    f1 = 2 * precision * recall / (precision + recall) if precision + recall > 0 else 0.0
    return {
        "precision": precision,
        "recall": recall,
        "f1": f1,
        "recall_all": tp / len(planned) if planned else 1.0,
        "planned": planned,
        "required": sorted(required),
        "detected": sorted(detected),
        "matched": [{"planned": p, "detected": d, "offset": d - p} for p, d in matched],
        "missed": sorted(required - used),
        "unplanned": sorted(set(detected) - {d for _, d in matched}),
        "tolerance": tol,
    }


def segments(num_frames: int, fps: float, seconds: float) -> list[tuple[int, int]]:
    """Fixed windows of ``seconds`` ([start, end) frames), the last one possibly shorter.

    MemFlow and LongLive report text alignment per 10-second segment of a minute-long video;
    the same windows give every metric's per-segment breakdown.
    """
    step = max(1, round(seconds * fps))
    return [(a, min(a + step, num_frames)) for a in range(0, num_frames, step)]
