"""From per-frame series to numbers: headline summary, per-shot and per-segment breakdowns.

Everything here is post-hoc arithmetic on the :class:`~longtake.eval.metrics_stream.StreamResult`
(one float per frame and metric) and the final shot boundaries; no frame is read again.

Masks: pair metrics across a shot boundary measure the cut, not the shot, so summaries leave
out the frames where a shot begins (the planned ones and the detected cuts that match them;
with no script, the detected cuts), and the fade-in of shots that the script says begin with
a fade (:data:`FADE_SECONDS`).
"""

from __future__ import annotations

import json
import math
from dataclasses import dataclass
from typing import Any

import numpy as np

from longtake.eval.metrics import SETTLE_DL, delta_e
from longtake.eval.metrics_stream import StreamResult
from longtake.eval.shots import ShotPlan, match_cuts, segments

#: Fade-in length left out of the summaries of shots that begin with a fade (StoryWorld's).
FADE_SECONDS = 0.5
#: Length of the colour reference at the start of each shot.
REF_SECONDS = 0.25
#: JSON report format version.
REPORT_VERSION = 1


@dataclass(frozen=True)
class MetricInfo:
    """How to read one metric."""

    name: str
    label: str
    range: str
    better: str  # "higher" | "lower" | "-"
    description: str


METRICS: dict[str, MetricInfo] = {m.name: m for m in (
    MetricInfo("flicker", "temporal flicker score", "[0, 1]", "higher",
               "(255 - mean absolute difference of consecutive frames) / 255, inside shots; 1 = no change between frames"),
    MetricInfo("smoothness", "motion smoothness", "[0, 1]", "higher",
               "1 - MAE(frame t, frame t interpolated from t-1 and t+1 by Farneback flow) / 255, inside shots"),
    MetricInfo("warp_error", "flow warping error", "[0, 1]", "lower",
               "mean absolute difference between frame t and frame t-1 warped onto it by optical flow, / 255"),
    MetricInfo("background", "background consistency", "[0, 1]", "higher",
               "1/2 [sim(first frame of the shot, t) + sim(t-1, t)], sim = mean of colour-histogram intersection and perceptual-hash similarity"),
    MetricInfo("colour_drift", "colour drift", "[0, ~100] delta E", "lower",
               "CIE76 delta E between each frame's mean CIELAB colour and the start of its shot; 2.3 is just noticeable"),
    MetricInfo("colour_drift_end", "colour drift at shot end", "[0, ~100] delta E", "lower",
               "colour drift over the last quarter second of each shot, mean over shots"),
    MetricInfo("sharpness", "sharpness", "[0, inf) Laplacian variance", "higher",
               "median variance of the Laplacian of the grey frame"),
    MetricInfo("sharpness_trend", "sharpness trend", "log2 ratio", "-",
               "log2(median sharpness of the last quarter / of the first quarter); 0 = steady, -1 = half as sharp"),
    MetricInfo("colour_drift_max", "largest colour drift", "[0, ~100] delta E", "lower",
               "the largest colour drift of any frame against the start of its shot"),
    MetricInfo("cut_precision", "shot-cut precision", "[0, 1]", "higher", "detected cuts that fall on a planned cut"),
    MetricInfo("cut_recall", "shot-cut recall", "[0, 1]", "higher", "planned cuts that must be visible (location changes, fades) that were found"),
    MetricInfo("cut_f1", "shot-cut F1", "[0, 1]", "higher",
               "detected cuts against the script's cuts that must be visible (location changes and fades)"),
    MetricInfo("cuts", "cuts detected", "count", "-", "shot cuts found in the frames"),
)}

#: Metrics given per shot and per segment.
BREAKDOWN = ("flicker", "smoothness", "warp_error", "background", "colour_drift", "sharpness")


def boundary_frames(result: StreamResult, plan: ShotPlan) -> set[int]:
    """First frames of shots whose pair metrics are left out of the summaries."""
    if plan.source == "detected":
        return set(result.detected_cuts)
    cuts = set(plan.cuts)
    matched = match_cuts(result.detected_cuts, plan)["matched"]
    return cuts | {m["detected"] for m in matched}


def fade_frames(plan: ShotPlan, fps: float) -> np.ndarray:
    """Indices of the frames inside the script's fade-ins."""
    n = max(1, round(FADE_SECONDS * fps))
    out = [np.arange(s.start, min(s.end, s.start + n)) for s in plan.shots if s.transition == "fade"]
    return np.concatenate(out) if out else np.zeros(0, dtype=int)


def colour_drift(result: StreamResult, plan: ShotPlan) -> np.ndarray:
    """(N,) delta E of every frame's mean colour against the start of its shot (NaN in fades).

    The reference is the mean colour of the first :data:`REF_SECONDS` of the shot, after its
    fade-in when the script says it fades in, and after any brightness ramp at its start
    (:func:`settled_start`).
    """
    lab = np.stack([result.series["lab_l"], result.series["lab_a"], result.series["lab_b"]], axis=1)  # (N, 3)
    out = np.full(result.num_frames, np.nan)
    n_ref = max(1, round(REF_SECONDS * result.fps))
    n_fade = max(1, round(FADE_SECONDS * result.fps))
    for s in plan.shots:
        a = settled_start(lab[:, 0], s.start + (n_fade if s.transition == "fade" else 0), s.end, result.fps)
        ref = lab[a : min(s.end, a + n_ref)].mean(axis=0)
        out[a : s.end] = delta_e(lab[a : s.end], ref)
    return out


def settled_start(lightness: np.ndarray, start: int, end: int, fps: float) -> int:
    """The first frame from ``start`` on whose lightness no longer ramps (a fade-in), within the
    shot's first second; ``start`` itself when it is not ramping."""
    a = min(start, end - 1)
    limit = min(end - 1, a + round(fps))
    while a < limit and abs(float(lightness[a + 1] - lightness[a])) > SETTLE_DL:
        a += 1
    return a


def sharpness_trend(values: np.ndarray) -> float:
    """log2(median of the last quarter / median of the first quarter); NaN if too short."""
    v = values[np.isfinite(values)]
    if v.size < 4:
        return math.nan
    q = max(1, v.size // 4)
    first, last = float(np.median(v[:q])), float(np.median(v[-q:]))
    return math.log2((last + 1.0) / (first + 1.0))  # +1: a flat frame has variance 0


def masked_series(result: StreamResult, plan: ShotPlan) -> dict[str, np.ndarray]:
    """The series the summaries average: pair metrics with boundary and fade frames set to NaN,
    plus ``colour_drift``."""
    starts = np.array(sorted(boundary_frames(result, plan)), dtype=int)
    fades = fade_frames(plan, result.fps)
    n = result.num_frames
    out: dict[str, np.ndarray] = {}
    for name in ("flicker", "warp_error", "background"):
        v = result.series[name].copy()
        v[starts[starts < n]] = np.nan
        v[fades[fades < n]] = np.nan
        out[name] = v
    v = result.series["smoothness"].copy()
    # frame t is predicted from t-1 and t+1: leave it out when either pair crosses a boundary
    v[starts[starts < n]] = np.nan
    before = starts - 1
    v[before[(before >= 0) & (before < n)]] = np.nan
    v[fades[fades < n]] = np.nan
    out["smoothness"] = v
    out["colour_drift"] = colour_drift(result, plan)
    out["sharpness"] = result.series["sharpness"].copy()
    out["cut_score"] = result.series["cut_score"].copy()
    return out


def _mean(v: np.ndarray) -> float | None:
    v = v[np.isfinite(v)]
    return float(v.mean()) if v.size else None


def _median(v: np.ndarray) -> float | None:
    v = v[np.isfinite(v)]
    return float(np.median(v)) if v.size else None


def window_stats(series: dict[str, np.ndarray], a: int, b: int, fps: float) -> dict[str, float | None]:
    """Each breakdown metric over frames [a, b)."""
    out: dict[str, float | None] = {}
    for name in BREAKDOWN:
        v = series[name][a:b]
        out[name] = _median(v) if name == "sharpness" else _mean(v)
    drift = series["colour_drift"][a:b]
    tail = drift[max(0, drift.size - max(1, round(REF_SECONDS * fps))):]
    out["colour_drift_end"] = _mean(tail)
    out["colour_drift_max"] = float(np.nanmax(drift)) if np.isfinite(drift).any() else None
    trend = sharpness_trend(series["sharpness"][a:b])
    out["sharpness_trend"] = None if math.isnan(trend) else trend
    return out


def summarise(result: StreamResult, plan: ShotPlan, *, segment_seconds: float = 10.0, scripted: bool = False) -> dict[str, Any]:
    """The weight-free part of the report: summary, shots, segments, cuts and series."""
    series = masked_series(result, plan)
    n, fps = result.num_frames, result.fps
    summary: dict[str, Any] = {name: window_stats(series, 0, n, fps)[name] for name in BREAKDOWN}
    shot_rows = []
    for s in plan.shots:
        row = s.to_dict()
        row["start_s"], row["end_s"] = s.start / fps, s.end / fps
        row["metrics"] = window_stats(series, s.start, s.end, fps)
        shot_rows.append(row)
    ends = [r["metrics"]["colour_drift_end"] for r in shot_rows if r["metrics"]["colour_drift_end"] is not None]
    summary["colour_drift_end"] = float(np.mean(ends)) if ends else None
    maxes = [r["metrics"]["colour_drift_max"] for r in shot_rows if r["metrics"]["colour_drift_max"] is not None]
    summary["colour_drift_max"] = float(max(maxes)) if maxes else None
    trend = sharpness_trend(series["sharpness"])
    summary["sharpness_trend"] = None if math.isnan(trend) else trend
    summary["cuts"] = len(result.detected_cuts)
    cuts: dict[str, Any] = {"detected": result.detected_cuts, "detected_s": [c / fps for c in result.detected_cuts]}
    if scripted:
        cuts |= match_cuts(result.detected_cuts, plan)
        summary["cut_precision"] = cuts["precision"]
        summary["cut_recall"] = cuts["recall"]
        summary["cut_f1"] = cuts["f1"]
    seg_rows = []
    for k, (a, b) in enumerate(segments(n, fps, segment_seconds)):
        seg_rows.append({"index": k, "start": a, "end": b, "start_s": a / fps, "end_s": b / fps, "metrics": window_stats(series, a, b, fps)})
    return {
        "summary": summary,
        "shots": shot_rows,
        "shot_source": plan.source,
        "segments": seg_rows,
        "segment_seconds": segment_seconds,
        "cuts": cuts,
        "series": {"fps": fps, **{k: _jsonable(v) for k, v in series.items()},
                   **{k: _jsonable(result.series[k]) for k in ("lab_l", "lab_a", "lab_b")}},
    }


def _jsonable(v: np.ndarray, digits: int = 5) -> list[float | None]:
    return [None if not math.isfinite(x) else round(float(x), digits) for x in v]


def clean(obj: Any) -> Any:
    """``obj`` with numpy scalars/arrays made plain and NaN/inf turned into None (valid JSON)."""
    if isinstance(obj, dict):
        return {str(k): clean(v) for k, v in obj.items()}
    if isinstance(obj, (list, tuple)):
        return [clean(v) for v in obj]
    if isinstance(obj, np.ndarray):
        return clean(obj.tolist())
    if isinstance(obj, (np.floating, float)):
        f = float(obj)
        return round(f, 6) if math.isfinite(f) else None
    if isinstance(obj, np.integer):
        return int(obj)
    if isinstance(obj, np.bool_):
        return bool(obj)
    return obj


def to_json(report: dict[str, Any]) -> str:
    """The report as JSON text (NaN-free, so any JSON reader accepts it)."""
    return json.dumps(clean(report), indent=1, ensure_ascii=False, allow_nan=False) + "\n"


def comparison_table(reports: list[dict[str, Any]]) -> dict[str, Any]:
    """One row per metric, one column per video: the headline numbers side by side."""
    names: list[str] = []
    for r in reports:
        for k, v in r["summary"].items():
            if k not in names and (v is None or isinstance(v, (int, float))):
                names.append(k)
    return {
        "videos": [r["video"]["name"] for r in reports],
        "rows": [{"metric": k, "better": METRICS[k].better if k in METRICS else "-", "values": [r["summary"].get(k) for r in reports]} for k in names],
    }
