"""Script-aware sections of the report read by the StoryWorld probes.

With a script, the video is sampled (:data:`SAMPLE_FPS` frames per second, at least
:data:`MIN_PER_SHOT` per shot) as it streams by; when a shot's samples are complete the
probes read them, so at most one shot's samples are held at a time. From the probes'
answers:

* **location per shot**: the fraction of samples whose location is the script's;
* **captioned attributes**: per character and shot, the fraction of the script's captioned
  attributes (:func:`~longtake.eval.probes.match_attributes`) the best-matching instance shows;
* **identity**: each character's instances are found by their captioned attributes (whole
  views only: a box cut by the frame's edge is left out); the mean identity embedding of the
  first :data:`REF_SAMPLES` samples of the first appearance is the reference, every later
  sample is compared to it by cosine similarity: ``matrix`` is character x shot (mean
  similarity, first appearance vs every return). Each location's light tints the figures, and
  the probe's embedding is not blind to it, so flags compare every sample with the
  character's first appearance *at the same location* (``matrix_same_location``): a
  character is flagged when the median of :data:`FLAG_WINDOW` consecutive samples is under
  the threshold, at the time of the first low sample, with the hidden details the probes read
  differently from that reference;
* **alignment** of each shot's samples to the script's prompts (its own prompt's score, and
  its rank among all the story's prompts), and per segment of fixed length.
"""

from __future__ import annotations

import logging
from collections import Counter
from dataclasses import dataclass, field
from typing import Any

import numpy as np

from longtake.eval.errors import EvalError
from longtake.eval.probe_data import comparable_hidden, hidden_majority
from longtake.eval.shots import ShotPlan, ShotRange, segments

log = logging.getLogger(__name__)

SAMPLE_FPS = 2.0
MIN_PER_SHOT = 3
#: Samples of the first appearance averaged into the identity reference.
REF_SAMPLES = 3
#: A character is flagged when the median of this many consecutive samples is under the threshold.
FLAG_WINDOW = 3
#: An instance is a character's when it shows at least this fraction of its captioned attributes.
MIN_ATTRIBUTE_MATCH = 0.6
#: ... or, when the shot has one character and the frame one instance, at least this fraction.
MIN_ATTRIBUTE_MATCH_ALONE = 0.3
#: Identity similarity (to the character's first appearance at the same location) under which
#: a sample does not look like that character. On StoryWorld ground truth (H.264, the office
#: example and 8 held-out stories, 25 characters) the median of 3 consecutive samples never
#: went under 0.72; a clearly swapped set of hidden details brings it to 0.2-0.66
#: (docs/eval.md).
IDENTITY_THRESHOLD = 0.68
FADE_SECONDS = 0.5


@dataclass
class _Record:
    frame: int
    shot: int
    attr: float
    embedding: np.ndarray
    hidden: dict[str, str] = field(default_factory=dict)


def sample_indices(shot: ShotRange, fps: float, *, sample_fps: float = SAMPLE_FPS, min_per_shot: int = MIN_PER_SHOT) -> list[int]:
    """Frames of ``shot`` the probes read: evenly spaced, after any fade-in."""
    a = shot.start + (round(FADE_SECONDS * fps) if shot.transition == "fade" else 0)
    if a >= shot.end:
        a = shot.start
    n = max(min_per_shot, round((shot.end - a) / fps * sample_fps))
    return sorted({int(i) for i in np.linspace(a, shot.end - 1, min(n, shot.end - a)).round()})


class ProbeSection:
    """Collects samples while the video streams (:meth:`update`), then :meth:`finish`."""

    def __init__(self, probes: Any, story: Any, plan: ShotPlan, fps: float, *, segment_seconds: float = 10.0,
                 sample_fps: float = SAMPLE_FPS, identity_threshold: float = IDENTITY_THRESHOLD, num_frames: int | None = None) -> None:
        from longtake.world.parse import location_kind, parse_appearance

        self.probes, self.story, self.plan, self.fps = probes, story, plan, float(fps)
        self.threshold = float(identity_threshold)
        self.samples = {s.index: sample_indices(s, fps, sample_fps=sample_fps) for s in plan.shots}
        self.wanted = {i: s.index for s in plan.shots for i in self.samples[s.index]}
        self.buffer: dict[int, list[tuple[int, np.ndarray]]] = {}
        self.kinds = {loc.id: location_kind(loc) for loc in story.locations}
        self.appearance = {}
        for c in story.characters:
            try:
                self.appearance[c.id] = parse_appearance(c.description)
            except Exception:  # a description outside StoryWorld's words: no attributes to match
                log.info("character %s: description not in StoryWorld's vocabulary; no attribute matching", c.id)
        self.names = {c.id: c.name for c in story.characters}
        self.prompts = list(dict.fromkeys(s.prompt for s in plan.shots if s.prompt))
        n = num_frames if num_frames is not None else (plan.shots[-1].end if plan.shots else 0)
        self.segments = segments(n, fps, segment_seconds)
        self.records: dict[str, list[_Record]] = {}
        self.shot_rows: dict[int, dict[str, Any]] = {}
        self.segment_align: dict[int, list[tuple[float, int]]] = {}
        self.align_ok = getattr(probes, "align", True) is not None

    # -- streaming -------------------------------------------------------------------------
    def update(self, start: int, frames: np.ndarray) -> None:
        """Take the sampled frames out of a chunk starting at frame ``start``."""
        for k in range(frames.shape[0]):
            shot = self.wanted.get(start + k)
            if shot is not None:
                self.buffer.setdefault(shot, []).append((start + k, frames[k].copy()))
                if start + k == self.samples[shot][-1]:
                    self._shot(shot)

    def _shot(self, index: int) -> None:
        items = self.buffer.pop(index, [])
        if not items:
            return
        shot = self.plan.shots[index]
        idx = [i for i, _ in items]
        frames = np.stack([f for _, f in items])  # (k, H, W, 3)
        row: dict[str, Any] = {"shot": index, "frames": idx}
        expected = self.kinds.get(shot.location or "")
        locs = self.probes.locations(frames)
        row["location_expected"] = expected
        row["location_predicted"] = Counter(locs).most_common(1)[0][0]
        row["location_match"] = float(np.mean([loc == expected for loc in locs])) if expected else None
        insts = self.probes.instances(frames)
        row["attributes"] = self._characters(shot, idx, insts, frames.shape[2], frames.shape[1])
        if self.align_ok and shot.prompt:
            try:
                scores = np.asarray(self.probes.alignment(frames, self.prompts), dtype=np.float64)
            except EvalError as exc:
                log.warning("alignment probe unavailable: %s", exc)
                self.align_ok = False
            else:
                own = scores[self.prompts.index(shot.prompt)]
                row["alignment"] = float(own)
                row["alignment_rank"] = int((scores > own).sum()) + 1
                for k, (a, b) in enumerate(self.segments):
                    part = [j for j, i in enumerate(idx) if a <= i < b]
                    if part:
                        s = float(np.asarray(self.probes.alignment(frames[part], [shot.prompt]))[0])
                        self.segment_align.setdefault(k, []).append((s, len(part)))
        self.shot_rows[index] = row

    def _characters(self, shot: ShotRange, idx: list[int], insts: list[list[Any]], width: int, height: int) -> dict[str, float | None]:
        """Captioned-attribute match per character; records identity samples of the instances
        that are the character's (matched by attributes, fully inside the frame)."""
        from longtake.eval.probes import match_attributes

        cast = [c for c in shot.characters if c in self.appearance]
        best: dict[str, list[float]] = {c: [] for c in cast}
        for frame, found in zip(idx, insts):
            pairs = sorted(((match_attributes(self.appearance[c], [inst]), ci, ii) for ci, c in enumerate(cast) for ii, inst in enumerate(found)), reverse=True)
            used_c: set[int] = set()
            used_i: set[int] = set()
            for score, ci, ii in pairs:
                if ci in used_c or ii in used_i:
                    continue
                used_c.add(ci)
                used_i.add(ii)
                c = cast[ci]
                best[c].append(score)
                inst = found[ii]
                alone = len(cast) == 1 and len(found) == 1
                if score >= (MIN_ATTRIBUTE_MATCH_ALONE if alone else MIN_ATTRIBUTE_MATCH) and not _at_border(inst.box, width, height):
                    emb = np.asarray(inst.embedding, dtype=np.float64)
                    self.records.setdefault(c, []).append(_Record(frame, shot.index, score, emb / max(np.linalg.norm(emb), 1e-12), dict(getattr(inst, "hidden", {}) or {})))
        return {c: (float(np.mean(v)) if v else 0.0) for c, v in best.items()}

    # -- the end ---------------------------------------------------------------------------
    def finish(self) -> dict[str, Any]:
        for index in list(self.buffer):
            self._shot(index)
        shots = [self.shot_rows[i] for i in sorted(self.shot_rows)]
        loc = [r["location_match"] for r in shots if r["location_match"] is not None]
        attrs = [v for r in shots for v in r["attributes"].values() if v is not None]
        align = [r["alignment"] for r in shots if "alignment" in r]
        identity = self._identity()
        sims = [v for row in identity["matrix"] for v in row if v is not None]
        same = [v for row in identity["matrix_same_location"] for v in row if v is not None]
        seg = []
        for k, (a, b) in enumerate(self.segments):
            vals = self.segment_align.get(k, [])
            w = sum(n for _, n in vals)
            seg.append({"index": k, "start_s": a / self.fps, "end_s": b / self.fps,
                        "alignment": (sum(s * n for s, n in vals) / w) if w else None})
        return {
            "summary": {
                "location_match": float(np.mean(loc)) if loc else None,
                "attribute_match": float(np.mean(attrs)) if attrs else None,
                "identity": float(np.mean(sims)) if sims else None,
                "identity_min": float(np.min(sims)) if sims else None,
                "identity_same_location": float(np.mean(same)) if same else None,
                "identity_same_location_min": float(np.min(same)) if same else None,
                "identity_flags": len(identity["flags"]),
                "alignment": float(np.mean(align)) if align else None,
                "alignment_top1": float(np.mean([r["alignment_rank"] == 1 for r in shots if "alignment_rank" in r])) if align else None,
            },
            "shots": shots,
            "segments": seg,
            "identity": identity,
            "sample_fps": SAMPLE_FPS,
        }

    def _identity(self) -> dict[str, Any]:
        chars = [c for c in self.names if c in self.records]
        nshots = len(self.plan.shots)
        matrix: list[list[float | None]] = []
        matrix_loc: list[list[float | None]] = []
        curves: dict[str, dict[str, list[float]]] = {}
        flags: list[dict[str, Any]] = []
        for c in chars:
            recs = self.records[c]
            first = _reference(recs, lambda r, s=recs[0].shot: r.shot == s)
            loc_of = {r.shot: self.plan.shots[r.shot].location for r in recs}
            loc_refs = {}
            for loc in dict.fromkeys(loc_of.values()):
                first_here = next(r.shot for r in recs if loc_of[r.shot] == loc)
                loc_refs[loc] = _reference(recs, lambda r, s=first_here: r.shot == s)
            sims = np.array([float(r.embedding @ first[0]) for r in recs])
            same = np.array([float(r.embedding @ loc_refs[loc_of[r.shot]][0]) for r in recs])
            curves[c] = {"t": [r.frame / self.fps for r in recs], "similarity": sims.tolist(), "same_location": same.tolist(),
                         "shot": [r.shot for r in recs]}
            row: list[float | None] = [None] * nshots
            row_loc: list[float | None] = [None] * nshots
            for sh in {r.shot for r in recs}:
                row[sh] = float(np.mean([v for r, v in zip(recs, sims) if r.shot == sh]))
                row_loc[sh] = float(np.mean([v for r, v in zip(recs, same) if r.shot == sh]))
            matrix.append(row)
            matrix_loc.append(row_loc)
            # flag: the median of FLAG_WINDOW consecutive samples under the threshold
            for i in range(max(0, len(recs) - FLAG_WINDOW + 1)):
                if float(np.median(same[i : i + FLAG_WINDOW])) < self.threshold:
                    j = i + int(np.argmax(same[i : i + FLAG_WINDOW] < self.threshold))  # first low sample of the window
                    r = recs[j]
                    ref_recs = loc_refs[loc_of[r.shot]][1]
                    flags.append({
                        "character": c, "name": self.names[c], "frame": r.frame, "time_s": r.frame / self.fps, "shot": r.shot,
                        "similarity": float(same[j]), "similarity_first_appearance": float(sims[j]),
                        "first_appearance_shot": recs[0].shot, "reference_shot": ref_recs[0].shot,
                        "hidden_changed": _hidden_changes(ref_recs, [x for x, v in zip(recs[j:], same[j:]) if v < self.threshold]),
                    })
                    break
        return {"characters": chars, "names": [self.names[c] for c in chars], "shots": list(range(nshots)), "matrix": matrix,
                "matrix_same_location": matrix_loc, "threshold": self.threshold, "window": FLAG_WINDOW, "flags": flags, "curves": curves}


def _reference(recs: list[_Record], where: Any) -> tuple[np.ndarray, list[_Record]]:
    """Unit mean embedding of the first :data:`REF_SAMPLES` records ``where`` holds, and those records."""
    chosen = [r for r in recs if where(r)][:REF_SAMPLES]
    ref = np.mean([r.embedding for r in chosen], axis=0)
    return ref / max(float(np.linalg.norm(ref)), 1e-12), chosen


def _at_border(box: Any, width: int, height: int) -> bool:
    """A box cut by an edge of the frame: a character walking in or out, or cut at the knees
    by a tilt or a zoom, whose identity embedding is not comparable with a whole view."""
    x0, y0, x1, y1 = box
    return x0 <= 0 or y0 <= 0 or x1 >= width or y1 >= height


def _hidden_changes(before: list[_Record], after: list[_Record]) -> dict[str, list[str]]:
    """Hidden details whose most frequent reading differs between two groups of samples."""
    out: dict[str, list[str]] = {}
    a, b = hidden_majority([r.hidden for r in before]), hidden_majority([r.hidden for r in after])
    for k in comparable_hidden(a, b):
        if a.get(k, "absent") != b.get(k, "absent"):
            out[k] = [a.get(k, "absent"), b.get(k, "absent")]
    return out
