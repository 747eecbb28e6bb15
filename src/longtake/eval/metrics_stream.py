"""One streaming pass of every weight-free metric over a video's frames.

:class:`MetricStream` is fed chunks of frames in order and keeps only the last three
working-size frames, the reference features of the current shot and a handful of keyframe
thumbnails: memory is constant in the video's length apart from one float per frame and
metric (the curves the report plots).

Per-frame series (index = frame; NaN where undefined):

* ``flicker``: (255 - MAE(frame t-1, frame t)) / 255 (pair metric, at the later frame).
* ``warp_error``: flow warping error of the pair (t-1, t).
* ``smoothness``: interpolation score of frame t from frames t-1 and t+1 (at the middle).
* ``background``: 1/2 [sim(shot reference, t) + sim(t-1, t)] with the appearance similarity
  (colour histogram + perceptual hash); the reference is the first frame of the shot.
* ``cut_score``: cut strength of the pair (t-1, t) (>= 1 is a cut).
* ``sharpness``: variance of the Laplacian of frame t.
* ``lab_l``, ``lab_a``, ``lab_b``: mean CIELAB colour of frame t (colour drift is computed
  from these once the shot boundaries are final, see :mod:`longtake.eval.report`).
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field

import cv2
import numpy as np

from longtake.eval import metrics as M
from longtake.eval.shots import CutDetector

SERIES = ("flicker", "warp_error", "smoothness", "background", "cut_score", "sharpness", "lab_l", "lab_a", "lab_b")
#: Longer side of the keyframe thumbnails kept for the contact sheet.
THUMB_SIDE = 160


@dataclass
class StreamResult:
    """What one pass produced: per-frame series, the detected cuts and keyframe thumbnails."""

    num_frames: int
    fps: float
    working_size: tuple[int, int]
    series: dict[str, np.ndarray]  # name -> (num_frames,) float64
    detected_cuts: list[int]
    keyframes: dict[int, np.ndarray] = field(default_factory=dict)  # frame -> (h, w, 3) uint8


class MetricStream:
    """Feed :meth:`update` with (n, H, W, 3) uint8 chunks in order, then call :meth:`finish`.

    ``shot_starts``: first frames of planned shots (from a script), where the background
    reference restarts; detected cuts restart it too. ``fades``: shot start -> frames of its
    fade-in (from a script); the reference is taken after them, and after any other
    brightness ramp at a shot's start (:data:`~longtake.eval.metrics.SETTLE_DL`). ``keyframes``: frame indices whose
    thumbnails to keep; without it the first, a middle and the last frame of each detected
    shot are kept.
    """

    def __init__(self, *, fps: float, max_side: int = M.DEFAULT_MAX_SIDE, shot_starts: set[int] | None = None, keyframes: set[int] | None = None,
                 fades: dict[int, int] | None = None) -> None:
        self.fps = float(fps)
        self.max_side = int(max_side)
        self.shot_starts = set(shot_starts or ())
        self.fades = dict(fades or {})
        self._settle_until = 0  # the reference follows the frames up to here (a known fade-in)
        self._settling = False
        self.want_keyframes = None if keyframes is None else set(keyframes)
        self.detector = CutDetector(self.fps)
        self.t = 0
        self.size: tuple[int, int] | None = None
        self.warper: M.Warper | None = None
        self.values: dict[str, list[float]] = {name: [] for name in SERIES}
        self.cuts: list[int] = []
        self.keyframes: dict[int, np.ndarray] = {}
        self._prev: tuple[np.ndarray, M.FrameFeatures] | None = None  # (rgb, features) of frame t-1
        self._prev2_grey: np.ndarray | None = None  # grey of frame t-2
        self._ref: M.FrameFeatures | None = None
        self._shot_start = 0
        self._last_thumb: tuple[int, np.ndarray] | None = None

    # -- feeding ---------------------------------------------------------------------------
    def update(self, frames: np.ndarray) -> None:
        """Measure a chunk (n, H, W, 3) uint8 of consecutive frames."""
        for frame in frames:
            self._one(frame)

    def _one(self, frame: np.ndarray) -> None:
        t = self.t
        if self.size is None:
            self.size = M.working_size(frame.shape[1], frame.shape[0], self.max_side)
            self.warper = M.Warper(*self.size)
        assert self.warper is not None
        rgb = M.working_frame(frame, self.size)
        f = M.frame_features(rgb)
        v = self.values
        v["sharpness"].append(f.sharpness)
        v["lab_l"].append(float(f.lab[0]))
        v["lab_a"].append(float(f.lab[1]))
        v["lab_b"].append(float(f.lab[2]))
        new_shot = t == 0 or t in self.shot_starts
        if self._prev is None:
            for name in ("flicker", "warp_error", "background", "cut_score"):
                v[name].append(math.nan)
        else:
            prgb, pf = self._prev
            mad = M.mean_abs_diff(prgb, rgb)
            v["flicker"].append((255.0 - mad) / 255.0)
            fl = M.flow(f.grey, pf.grey)  # current -> previous
            v["warp_error"].append(M.warp_error(pf.grey, f.grey, fl, self.warper))
            is_cut, strength = self.detector.update(t, pf, f, mad)
            v["cut_score"].append(strength)
            if is_cut:
                self.cuts.append(t)
            assert self._ref is not None
            v["background"].append(0.5 * (M.appearance_similarity(self._ref, f) + M.appearance_similarity(pf, f)))
            new_shot = new_shot or is_cut
            if self._prev2_grey is not None:
                # frame t-1 predicted from t-2 and t
                fl2 = M.flow(self._prev2_grey, f.grey)
                v["smoothness"].append(M.interpolation_score(self._prev2_grey, pf.grey, f.grey, fl2, self.warper))
            else:
                v["smoothness"].append(math.nan)  # frame 0 has no neighbour before it
        if new_shot:
            self._on_new_shot(t)
            self._ref = f
            self._settling = True
            self._settle_until = t + self.fades.get(t, 0)
        elif self._settling:
            assert self._prev is not None
            ramp = abs(float(f.lab[0] - self._prev[1].lab[0])) > M.SETTLE_DL and t - self._shot_start < self.fps
            if t <= self._settle_until or ramp:
                self._ref = f
            else:
                self._settling = False
        self._keyframe(t, frame)
        self._prev2_grey = None if self._prev is None else self._prev[1].grey
        self._prev = (rgb, f)
        self.t += 1

    def _on_new_shot(self, t: int) -> None:
        if self.want_keyframes is None and t > 0 and self._last_thumb is not None:
            idx, img = self._last_thumb  # the last frame of the shot that just ended
            self.keyframes[idx] = img
        self._shot_start = t

    def _keyframe(self, t: int, frame: np.ndarray) -> None:
        if self.want_keyframes is not None:
            if t in self.want_keyframes:
                self.keyframes[t] = _thumb(frame)
            return
        offset = t - self._shot_start
        # first frame, then frames at power-of-two offsets: the last of these lies between
        # the middle and the end of the shot, without knowing the shot's length in advance
        if offset == 0 or (offset & (offset - 1)) == 0:
            if offset > 2:
                for k in [k for k in self.keyframes if self._shot_start < k < t]:
                    del self.keyframes[k]
            self.keyframes[t] = _thumb(frame)
        self._last_thumb = (t, _thumb(frame))

    # -- the end ---------------------------------------------------------------------------
    def finish(self) -> StreamResult:
        """Close the pass: the last frame gets no smoothness (no frame after it)."""
        if self.t > 0:
            self.values["smoothness"].append(math.nan)
        if self.want_keyframes is None and self._last_thumb is not None:
            idx, img = self._last_thumb
            self.keyframes[idx] = img
        series = {k: np.asarray(vals, dtype=np.float64) for k, vals in self.values.items()}
        for k, arr in series.items():
            assert arr.shape == (self.t,), (k, arr.shape, self.t)
        return StreamResult(self.t, self.fps, self.size or (0, 0), series, list(self.cuts), dict(sorted(self.keyframes.items())))


def _thumb(frame: np.ndarray) -> np.ndarray:
    h, w = frame.shape[:2]
    s = min(1.0, THUMB_SIDE / max(h, w))
    if s >= 1.0:
        return frame.copy()
    return cv2.resize(frame, (max(1, round(w * s)), max(1, round(h * s))), interpolation=cv2.INTER_AREA)
