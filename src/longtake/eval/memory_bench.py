"""Scoring for ``longtake bench memory``: returns, revisits and segments of one story, read by the probes.

The runner (:mod:`longtake.bench_memory`, entry level: eval/ never drives a generator)
renders each story's ground truth once, asks :func:`plan_story` which frames the probes will
read, keeps only those frames of every video (one per memory mode, plus the ground truth) as
it streams, and calls :func:`score_story` on each; :func:`summarise` turns one row's
per-story results into the numbers of the table (docs/memory.md, "Benchmark").

What is measured (all cases come from the ground truth, so every video is judged on the same
frames):

* **returns**: a character visible again after at least ``min_return_gap`` s with no pixel on
  screen (merged visibility runs of the ground truth). Its first appearance and each return
  give up to :data:`CANDIDATES` whole views (ground-truth box of at least :data:`MIN_AREA` px
  at 128x128, inside the frame, not overlapping another character, no fade), one every
  1 / :data:`SAMPLE_FPS` s. In the video the probes detect the characters and assign them to
  the characters the ground truth shows by captioned attributes (ties by overlap with the
  ground-truth box), with the acceptance rules of ``longtake eval``
  (:mod:`longtake.eval.metrics_probes`); the first :data:`REF_SAMPLES` accepted samples of
  each side are kept. Identity = cosine similarity of the two mean identity embeddings
  (contrastive embedding + hidden-detail readings); it passes at :data:`IDENTITY_THRESHOLD`.
  Attributes = the fraction of the nine captioned attributes whose reading (majority over the
  samples) is the same on both sides; hidden = the same for the hidden-detail readings, where
  an item's colour or side counts only when both sides read the item (:func:`hidden_equal`).
* **revisits**: a run of frames at a location seen in an earlier run; against the first run
  there, :data:`VISIT_SAMPLES` evenly spaced frames each: whether the location probe's
  reading (majority) is the same, and the background similarity of every pair of frames
  (:func:`background_similarity`, on pixels outside every character box).
* **segments**: each shot of the timeline (storyworld-bench: one 10 s segment, one prompt),
  up to ``ALIGN_FRAMES`` evenly spaced frames against the chunk prompt, by the alignment probe.
"""

from __future__ import annotations

import logging
from collections import Counter
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

import cv2
import numpy as np

from longtake.eval.metrics import HIST_BINS, histogram_similarity
from longtake.eval.metrics_probes import IDENTITY_THRESHOLD, MIN_ATTRIBUTE_MATCH, MIN_ATTRIBUTE_MATCH_ALONE, REF_SAMPLES, _at_border
from longtake.eval.probe_data import comparable_hidden, hidden_majority

log = logging.getLogger(__name__)

#: Candidate samples per second of an appearance (whole views only).
SAMPLE_FPS = 2.0
#: Whole-view candidates read per appearance; the first REF_SAMPLES the probes accept count.
CANDIDATES = 8
#: Frames of each visit read for the location probe and the background similarity.
VISIT_SAMPLES = 6
#: Frames of each segment the alignment probe reads (the probe's own maximum).
ALIGN_FRAMES = 8
#: Visible pixels of a whole view at 128x128 (docs/probes.md: "clear" boxes); scaled by area.
MIN_AREA = 150
#: A box overlapping another character's by more than this fraction of its area is not clear.
MAX_OVERLAP = 0.2
#: Pixels added around every character box before the background is compared.
BOX_MARGIN = 2
#: Weight of the overlap with the ground-truth box when instances are assigned to characters
#: (the captioned attributes decide; the overlap breaks ties between similar captions).
IOU_WEIGHT = 0.25

Box = tuple[int, int, int, int]


@dataclass(frozen=True)
class ReturnCase:
    """A character back after an absence: candidate frames of its first appearance and of the return."""

    character: str
    name: str
    first: tuple[int, ...]
    back: tuple[int, ...]
    back_at_s: float
    gap_s: float
    same_location: bool


@dataclass(frozen=True)
class RevisitCase:
    """A run of frames at a location already visited: frames of the first visit and of this one."""

    location: str
    kind: str
    first: tuple[int, ...]
    again: tuple[int, ...]
    at_s: float


@dataclass(frozen=True)
class SegmentCase:
    """One segment (a shot of the timeline): per prompt, the frames the alignment probe reads."""

    index: int
    start: int
    end: int
    prompts: tuple[tuple[str, tuple[int, ...]], ...]


@dataclass
class StoryPlan:
    """Which frames of a story the probes read, and the ground truth they need there.

    ``boxes[f]``: visible characters' ground-truth boxes (x0, y0, x1, y1) at frame ``f``;
    ``captions``: parsed descriptions (StoryWorld's :class:`~longtake.world.vocab.Appearance`).
    """

    title: str
    fps: float
    width: int
    height: int
    num_frames: int
    returns: list[ReturnCase]
    revisits: list[RevisitCase]
    segments: list[SegmentCase]
    boxes: dict[int, dict[str, Box]]
    captions: dict[str, Any]
    unjudged_returns: int = 0
    location_kind: dict[int, str] = field(default_factory=dict)

    @property
    def probe_frames(self) -> list[int]:
        """Frames the character and location probes read (returns and revisits)."""
        s = {f for c in self.returns for f in (*c.first, *c.back)}
        s |= {f for c in self.revisits for f in (*c.first, *c.again)}
        return sorted(s)

    @property
    def frames(self) -> list[int]:
        """Every frame any probe reads: keep these of each video."""
        s = set(self.probe_frames) | {f for seg in self.segments for _, fr in seg.prompts for f in fr}
        return sorted(s)


# ----------------------------------------------------------------------------- planning


def _area(b: Box) -> int:
    return max(0, b[2] - b[0]) * max(0, b[3] - b[1])


def _inter(a: Box, b: Box) -> int:
    return _area((max(a[0], b[0]), max(a[1], b[1]), min(a[2], b[2]), min(a[3], b[3])))


def iou(a: Box, b: Box) -> float:
    i = _inter(a, b)
    u = _area(a) + _area(b) - i
    return i / u if u > 0 else 0.0


def _evenly(frames: Sequence[int], n: int) -> tuple[int, ...]:
    if len(frames) <= n:
        return tuple(frames)
    return tuple(frames[int(i)] for i in np.linspace(0, len(frames) - 1, n).round())


def _runs(frames: Sequence[int], max_gap: int) -> list[list[int]]:
    """Sorted frames split where two consecutive ones are at least ``max_gap`` apart."""
    out: list[list[int]] = []
    for f in frames:
        if out and f - out[-1][-1] < max_gap:
            out[-1].append(f)
        else:
            out.append([f])
    return out


def plan_story(story: Any, timeline: Any, truths: Sequence[Any], *, min_return_gap: float) -> StoryPlan:
    """The frames to read and the cases to judge, from the ground truth of ``story``.

    ``timeline``: the generator's plan of the story; ``truths``: one
    :class:`~longtake.world.truth.FrameTruth` per frame of it (masks not needed).
    """
    from longtake.world.parse import parse_appearance

    fps = float(timeline.fps)
    w, h = int(timeline.width), int(timeline.height)
    n = len(truths)
    min_area = MIN_AREA * (w * h) / (128 * 128)
    stride = max(1, round(fps / SAMPLE_FPS))
    captions = {}
    for c in story.characters:
        try:
            captions[c.id] = parse_appearance(c.description)
        except Exception:  # noqa: BLE001 - a description outside StoryWorld's words: not judged
            log.info("character %s: description not in StoryWorld's vocabulary; not judged", c.id)
    names = {c.id: c.name for c in story.characters}

    visible: dict[str, list[int]] = {}
    clear: dict[str, set[int]] = {}
    for t in truths:
        boxes = {c.id: tuple(c.bbox) for c in t.characters if c.visible and c.bbox is not None}
        for cid, b in boxes.items():
            visible.setdefault(cid, []).append(t.frame)
            others = [o for k, o in boxes.items() if k != cid]
            if (_area(b) >= min_area and not _at_border(b, w, h) and t.fade >= 0.99
                    and all(_inter(b, o) <= MAX_OVERLAP * _area(b) for o in others)):
                clear.setdefault(cid, set()).add(t.frame)

    def candidates(cid: str, run: list[int]) -> tuple[int, ...]:
        out: list[int] = []
        for f in run:
            if f in clear.get(cid, ()) and (not out or f - out[-1] >= stride):
                out.append(f)
                if len(out) == CANDIDATES:
                    break
        return tuple(out)

    returns: list[ReturnCase] = []
    unjudged = 0
    gap = max(1, round(min_return_gap * fps))
    for cid in [c.id for c in story.characters]:
        if cid not in captions or cid not in visible:
            continue
        runs = _runs(visible[cid], gap)
        first = candidates(cid, runs[0])
        for prev, run in zip(runs, runs[1:]):
            back = candidates(cid, run)
            if not first or not back:
                unjudged += 1
                continue
            returns.append(ReturnCase(cid, names[cid], first, back, run[0] / fps, (run[0] - prev[-1]) / fps,
                                      truths[first[0]].location == truths[back[0]].location))

    # location runs (a scene, or consecutive scenes at one place)
    visits: list[tuple[str, list[int]]] = []
    for t in truths:
        if visits and visits[-1][0] == t.location:
            visits[-1][1].append(t.frame)
        else:
            visits.append((t.location, [t.frame]))
    firsts: dict[str, list[int]] = {}
    revisits: list[RevisitCase] = []
    kinds = {t.location: t.location_kind for t in truths}
    for loc, frames in visits:
        settled = [f for f in frames if truths[f].fade >= 0.99] or frames
        if loc in firsts:
            revisits.append(RevisitCase(loc, kinds[loc], _evenly(firsts[loc], VISIT_SAMPLES), _evenly(settled, VISIT_SAMPLES), frames[0] / fps))
        else:
            firsts[loc] = settled

    segments: list[SegmentCase] = []
    for k, span in enumerate(timeline.shots):
        a, b = span.start_frame, span.start_frame + span.num_frames
        by_prompt: dict[str, list[int]] = {}
        for ch in timeline.chunks[span.first_chunk : span.first_chunk + span.num_chunks]:
            by_prompt.setdefault(ch.prompt, []).extend(range(ch.start_frame, min(ch.end_frame, n)))
        segments.append(SegmentCase(k, a, b, tuple((p, _evenly(fr, ALIGN_FRAMES)) for p, fr in by_prompt.items() if fr)))

    plan = StoryPlan(story.title, fps, w, h, n, returns, revisits, segments, {}, captions, unjudged)
    for f in plan.probe_frames:
        plan.boxes[f] = {c.id: tuple(c.bbox) for c in truths[f].characters if c.visible and c.bbox is not None}  # type: ignore[misc]
        plan.location_kind[f] = truths[f].location_kind
    return plan


# ----------------------------------------------------------------------------- scoring


@dataclass
class _Sample:
    frame: int
    embedding: np.ndarray
    attributes: dict[str, str]
    hidden: dict[str, str]


def assign(found: Sequence[Any], boxes: Mapping[str, Box], captions: Mapping[str, Any], width: int, height: int) -> dict[str, Any]:
    """Instances of one frame -> the characters the ground truth shows there (character ->
    Instance). Greedy by captioned-attribute match plus :data:`IOU_WEIGHT` x overlap with the
    ground-truth box; an instance counts when it shows at least :data:`MIN_ATTRIBUTE_MATCH`
    of the caption (:data:`MIN_ATTRIBUTE_MATCH_ALONE` when one character meets one instance)
    and is not cut by the frame's edge -- the rules of ``longtake eval``."""
    from longtake.eval.probes import match_attributes

    cast = [c for c in boxes if c in captions]
    alone = len(cast) == 1 and len(found) == 1
    pairs = sorted(((match_attributes(captions[c], [inst]), iou(tuple(inst.box), boxes[c]), ci, ii)
                    for ci, c in enumerate(cast) for ii, inst in enumerate(found)), key=lambda p: -(p[0] + IOU_WEIGHT * p[1]))
    out: dict[str, Any] = {}
    used: set[int] = set()
    for attr, _, ci, ii in pairs:
        c = cast[ci]
        if c in out or ii in used:
            continue
        inst = found[ii]
        if attr >= (MIN_ATTRIBUTE_MATCH_ALONE if alone else MIN_ATTRIBUTE_MATCH) and not _at_border(inst.box, width, height):
            out[c] = inst
            used.add(ii)
    return out


def _majority(readings: Sequence[Mapping[str, str]]) -> dict[str, str]:
    keys = {k for r in readings for k in r}
    # a missing key (hair colour of a bald reading) counts as the value "absent"
    return {k: Counter(r.get(k, "absent") for r in readings).most_common(1)[0][0] for k in sorted(keys)}


def hidden_equal(a: Mapping[str, str], b: Mapping[str, str]) -> float:
    """Fraction of the comparable hidden details (:func:`~longtake.eval.probe_data.comparable_hidden`)
    read the same on both sides (missing = "absent")."""
    keys = comparable_hidden(dict(a), dict(b))
    return sum(a.get(k, "absent") == b.get(k, "absent") for k in keys) / len(keys) if keys else 0.0


def equal_fraction(a: Mapping[str, str], b: Mapping[str, str]) -> float:
    """Fraction of the keys of ``a`` or ``b`` with the same value in both (missing = "absent")."""
    keys = set(a) | set(b)
    return sum(a.get(k, "absent") == b.get(k, "absent") for k in keys) / len(keys) if keys else 0.0


def _mean_unit(samples: Sequence[_Sample]) -> np.ndarray:
    m = np.mean([s.embedding / max(float(np.linalg.norm(s.embedding)), 1e-12) for s in samples], axis=0)
    return m / max(float(np.linalg.norm(m)), 1e-12)


def background_mask(shape: tuple[int, int], boxes: Sequence[Sequence[float]], margin: int = BOX_MARGIN) -> np.ndarray:
    """(H, W) bool: True outside every box (each grown by ``margin`` px)."""
    h, w = shape
    mask = np.ones((h, w), bool)
    for x0, y0, x1, y1 in boxes:
        mask[max(0, int(y0) - margin) : min(h, int(y1) + margin), max(0, int(x0) - margin) : min(w, int(x1) + margin)] = False
    return mask


def _masked_histogram(frame: np.ndarray, mask: np.ndarray) -> np.ndarray:
    hsv = cv2.cvtColor(frame, cv2.COLOR_RGB2HSV)
    hist = cv2.calcHist([hsv], [0, 1, 2], mask.astype(np.uint8), list(HIST_BINS), [0, 180, 0, 256, 0, 256]).ravel()
    return hist / max(float(hist.sum()), 1.0)


def background_similarity(a: np.ndarray, b: np.ndarray, mask_a: np.ndarray, mask_b: np.ndarray) -> float:
    """Similarity in [0, 1] of two frames (H, W, 3) uint8 on their background pixels
    (``mask_*`` True): 1/2 [intersection of the HSV colour histograms (16x4x4 bins, as
    ``longtake eval``'s background consistency) of each frame's background + 1 - the mean
    absolute difference / 255 over the pixels that are background in both]. The histogram
    forgives a moved camera; the pixel term sees a changed layout in the same colours."""
    hist = histogram_similarity(_masked_histogram(a, mask_a), _masked_histogram(b, mask_b))
    both = mask_a & mask_b
    if not both.any():
        return hist
    diff = np.abs(a[both].astype(np.int16) - b[both].astype(np.int16)).mean() / 255.0
    return 0.5 * (hist + 1.0 - float(diff))


def score_story(probes: Any, plan: StoryPlan, frames: Mapping[int, np.ndarray], *, threshold: float = IDENTITY_THRESHOLD) -> dict[str, Any]:
    """Judge one video of ``plan``'s story. ``frames``: frame index -> (H, W, 3) uint8, at
    least :attr:`StoryPlan.frames`. Returns per case results (plain data)."""
    need = plan.probe_frames
    insts: dict[int, list[Any]] = {}
    locs: dict[int, str] = {}
    if need:
        stack = np.stack([frames[f] for f in need])  # (n, H, W, 3)
        insts = dict(zip(need, probes.instances(stack)))
        locs = dict(zip(need, probes.locations(stack)))
    h, w = (next(iter(frames.values())).shape[:2]) if frames else (plan.height, plan.width)
    assigned = {f: assign(insts[f], plan.boxes.get(f, {}), plan.captions, w, h) for f in need}

    def samples(cid: str, cands: Sequence[int]) -> list[_Sample]:
        out = []
        for f in cands:
            inst = assigned[f].get(cid)
            if inst is not None:
                out.append(_Sample(f, np.asarray(inst.embedding, np.float64), dict(inst.attributes), dict(inst.hidden)))
                if len(out) == REF_SAMPLES:
                    break
        return out

    returns = []
    for case in plan.returns:
        a, b = samples(case.character, case.first), samples(case.character, case.back)
        row: dict[str, Any] = {"character": case.character, "name": case.name, "back_at_s": round(case.back_at_s, 3),
                               "gap_s": round(case.gap_s, 3), "same_location": case.same_location,
                               "first_frames": [s.frame for s in a], "back_frames": [s.frame for s in b], "found": bool(a and b)}
        if a and b:
            sim = float(_mean_unit(a) @ _mean_unit(b))
            ra, rb = _majority([s.attributes for s in a]), _majority([s.attributes for s in b])
            ha, hb = hidden_majority([s.hidden for s in a]), hidden_majority([s.hidden for s in b])
            row |= {"similarity": sim, "passes": sim >= threshold, "attributes_equal": equal_fraction(ra, rb),
                    "hidden_equal": hidden_equal(ha, hb), "attributes_first": ra, "attributes_back": rb,
                    "hidden_first": ha, "hidden_back": hb, "hidden_first_views": [s.hidden for s in a],
                    "hidden_back_views": [s.hidden for s in b]}
        else:
            row |= {"similarity": None, "passes": False, "attributes_equal": None, "hidden_equal": None}
        returns.append(row)

    def mask(f: int) -> np.ndarray:
        boxes = [*plan.boxes.get(f, {}).values(), *(i.box for i in insts.get(f, []))]
        return background_mask((h, w), boxes)

    revisits = []
    for case in plan.revisits:
        first = Counter(locs[f] for f in case.first).most_common(1)[0][0]
        again = Counter(locs[f] for f in case.again).most_common(1)[0][0]
        bg = [background_similarity(frames[i], frames[j], mask(i), mask(j)) for i in case.first for j in case.again]
        revisits.append({"location": case.location, "kind": case.kind, "at_s": round(case.at_s, 3), "probe_first": first,
                         "probe_again": again, "consistent": first == again, "right": again == case.kind,
                         "background": float(np.mean(bg))})

    segments = []
    for seg in plan.segments:
        scores, weights = [], []
        for prompt, fr in seg.prompts:
            scores.append(float(np.asarray(probes.alignment(np.stack([frames[f] for f in fr]), [prompt]))[0]))
            weights.append(len(fr))
        segments.append({"index": seg.index, "start_s": seg.start / plan.fps, "end_s": seg.end / plan.fps,
                         "alignment": float(np.average(scores, weights=weights)) if scores else None})
    return {"title": plan.title, "returns": returns, "revisits": revisits, "segments": segments,
            "unjudged_returns": plan.unjudged_returns, "threshold": threshold}


def _mean(values: Sequence[float | None]) -> float | None:
    v = [x for x in values if x is not None]
    return float(np.mean(v)) if v else None


def hidden_readings(returns: Sequence[Mapping[str, Any]]) -> dict[str, Any]:
    """Over the found returns: how many compared hidden-detail readings were equal, of how
    many, and the misses per detail (which details a mode, or the probes, lose)."""
    equal = total = 0
    misses: Counter[str] = Counter()
    for r in returns:
        if not r["found"] or "hidden_first" not in r:  # hand-made results may carry fractions only
            continue
        a, b = r["hidden_first"], r["hidden_back"]
        for k in comparable_hidden(a, b):
            same = a.get(k, "absent") == b.get(k, "absent")
            equal, total = equal + same, total + 1
            misses[k] += not same
    return {"hidden_readings_equal": equal, "hidden_readings": total,
            "hidden_misses": {k: n for k, n in misses.most_common() if n}}


def summarise(stories: Sequence[Mapping[str, Any]]) -> dict[str, Any]:
    """One row of the table from the :func:`score_story` results of its stories.

    Fractions are over every judged case: a return where the video shows no instance the
    probes accept as the character counts as not passing (and is left out of the means).
    """
    rets = [r for s in stories for r in s["returns"]]
    revs = [r for s in stories for r in s["revisits"]]
    nseg = max((len(s["segments"]) for s in stories), default=0)
    seg = [_mean([s["segments"][k]["alignment"] for s in stories if k < len(s["segments"])]) for k in range(nseg)]
    return {
        "returns": len(rets),
        "returns_found": sum(r["found"] for r in rets),
        "identity": _mean([r["similarity"] for r in rets]),
        "identity_pass": float(np.mean([r["passes"] for r in rets])) if rets else None,
        "identity_same_location": _mean([r["similarity"] for r in rets if r["same_location"]]),
        "attributes_equal": _mean([r["attributes_equal"] for r in rets]),
        "hidden_equal": _mean([r["hidden_equal"] for r in rets]),
        **hidden_readings(rets),
        "revisits": len(revs),
        "location_consistent": float(np.mean([r["consistent"] for r in revs])) if revs else None,
        "location_right": float(np.mean([r["right"] for r in revs])) if revs else None,
        "background": _mean([r["background"] for r in revs]),
        "alignment_segments": seg,
        "alignment": _mean(seg),
    }
