"""Weight-free per-frame measurements: the primitives of ``longtake eval``.

Every function here takes frames that have already been brought to the *working size*
(:func:`working_frame`) and returns plain numbers or small arrays, so the streaming pass in
:mod:`longtake.eval.metrics_stream` holds only a few frames at a time whatever the length.

Names are our own: these follow the spirit of published video metrics (the temporal-flicker
formula is VBench's, see REFERENCES.md) but are computed with OpenCV and numpy, not with the
published models, so their values are not comparable to VBench's and are not called so.

Conventions: frames are (H, W, 3) uint8 RGB; ``grey`` images are (H, W) uint8; scores in
[0, 1] are "higher is better" unless their name says ``error`` or ``drift``.
"""

from __future__ import annotations

from dataclasses import dataclass

import cv2
import numpy as np

#: Frames are shrunk (area filter) so that their longer side is at most this before measuring:
#: the cost per frame is then bounded whatever the video's resolution.
DEFAULT_MAX_SIDE = 256
#: Farneback parameters (pyr_scale, levels, winsize, iterations, poly_n, poly_sigma): a
#: 3-level pyramid reaches about 8 px of motion at 128 px, 2 iterations are enough for the
#: smooth motion of generated video, and cost about 2 ms per flow at 128x128.
FARNEBACK = (0.5, 3, 11, 2, 5, 1.1)
#: Hue x saturation x value bins of the colour histogram. Few value bins: a brightness flicker
#: should move the histogram less than a change of place.
HIST_BINS = (16, 4, 4)
#: Side of the grey thumbnail whose DCT gives the 64-bit perceptual hash (pHash).
HASH_SIDE = 32
#: A shot's reference frame is taken once its brightness settles: while the mean CIELAB
#: lightness still changes by more than this per frame in the shot's first second (a fade-in),
#: the reference moves on to the next frame.
SETTLE_DL = 1.0
#: Side of the thumbnail whose mean CIELAB colour is measured (area filter: the mean is kept).
LAB_SIDE = 32


def working_size(width: int, height: int, max_side: int = DEFAULT_MAX_SIDE) -> tuple[int, int]:
    """(w, h) that fits ``max_side`` with the aspect ratio kept; frames already small are kept."""
    scale = min(1.0, max_side / max(width, height))
    return max(8, round(width * scale)), max(8, round(height * scale))


def working_frame(frame: np.ndarray, size: tuple[int, int]) -> np.ndarray:
    """``frame`` (H, W, 3) uint8 resized to ``size`` = (w, h) with the area filter."""
    if (frame.shape[1], frame.shape[0]) == size:
        return np.ascontiguousarray(frame)
    return cv2.resize(frame, size, interpolation=cv2.INTER_AREA)


def to_grey(frame: np.ndarray) -> np.ndarray:
    """(H, W, 3) uint8 RGB -> (H, W) uint8 luma (BT.601 weights, as OpenCV)."""
    return cv2.cvtColor(frame, cv2.COLOR_RGB2GRAY)


# -- pairs of frames -----------------------------------------------------------------------


def mean_abs_diff(a: np.ndarray, b: np.ndarray) -> float:
    """Mean absolute difference of two same-shape uint8 images, in grey levels [0, 255]."""
    return float(cv2.absdiff(a, b).mean())


def flicker_score(a: np.ndarray, b: np.ndarray) -> float:
    """Temporal flicker score of one pair: (255 - MAE(a, b)) / 255, in [0, 1]; 1 = identical.

    The formula is VBench's temporal flicker (REFERENCES.md) applied to one pair of frames;
    the video's score is the mean over pairs inside shots.
    """
    return (255.0 - mean_abs_diff(a, b)) / 255.0


def flow(prev_grey: np.ndarray, next_grey: np.ndarray) -> np.ndarray:
    """Dense Farneback flow (H, W, 2) float32 with prev(y, x) ~ next(y + fy, x + fx)."""
    return cv2.calcOpticalFlowFarneback(prev_grey, next_grey, None, *FARNEBACK, 0)


class Warper:
    """Backward warping with a fixed base grid, reused across frames of one size."""

    def __init__(self, width: int, height: int) -> None:
        gx, gy = np.meshgrid(np.arange(width, dtype=np.float32), np.arange(height, dtype=np.float32))
        self.gx, self.gy = gx, gy  # (H, W) each

    def warp(self, image: np.ndarray, fl: np.ndarray, scale: float = 1.0) -> np.ndarray:
        """``image`` sampled at (x + scale * fx, y + scale * fy); borders replicated."""
        mx = self.gx + scale * fl[..., 0]
        my = self.gy + scale * fl[..., 1]
        return cv2.remap(image, mx, my, cv2.INTER_LINEAR, borderMode=cv2.BORDER_REPLICATE)


def warp_error(prev: np.ndarray, cur: np.ndarray, fl_cur_to_prev: np.ndarray, warper: Warper) -> float:
    """Flow warping error of one pair, in [0, 1]; 0 = ``cur`` is exactly ``prev`` moved.

    ``prev`` is warped onto ``cur`` with the flow from ``cur`` to ``prev`` (backward warping),
    and the mean absolute difference is taken over the pixels whose match lies inside the
    frame (the rest is newly uncovered border). After Lai et al., "Learning Blind Video
    Temporal Consistency" (ECCV 2018), without their occlusion mask.
    """
    h, w = cur.shape[:2]
    warped = warper.warp(prev, fl_cur_to_prev)
    mx = warper.gx + fl_cur_to_prev[..., 0]
    my = warper.gy + fl_cur_to_prev[..., 1]
    inside = (mx >= 0) & (mx <= w - 1) & (my >= 0) & (my <= h - 1)
    if not inside.any():
        return float("nan")
    diff = cv2.absdiff(warped, cur)
    if diff.ndim == 3:
        diff = diff.mean(axis=2)
    return float(diff[inside].mean()) / 255.0


def interpolation_score(before: np.ndarray, middle: np.ndarray, after: np.ndarray, fl_before_to_after: np.ndarray, warper: Warper) -> float:
    """Motion smoothness of one frame, in [0, 1]: how well ``middle`` is predicted from its neighbours.

    With the flow F from ``before`` to ``after`` (before(x) ~ after(x + F(x))), linear motion
    puts the middle frame's content at ``before(x - F/2)`` and ``after(x + F/2)`` (the flow at
    x stands in for the flow at the mid-point, the usual first-order approximation). The
    score is 1 - MAE(middle, mean of both warps) / 255: 1 for perfectly linear motion, lower
    for jerky motion, jitter or content that pops in and out.
    """
    a = warper.warp(before, fl_before_to_after, -0.5).astype(np.float32)
    b = warper.warp(after, fl_before_to_after, 0.5).astype(np.float32)
    pred = cv2.addWeighted(a, 0.5, b, 0.5, 0.0)
    return 1.0 - float(cv2.absdiff(pred, middle.astype(np.float32)).mean()) / 255.0


# -- single frames -----------------------------------------------------------------------


def colour_histogram(frame: np.ndarray) -> np.ndarray:
    """Normalised HSV histogram (prod(HIST_BINS),) float32 that sums to 1."""
    hsv = cv2.cvtColor(frame, cv2.COLOR_RGB2HSV)
    h = cv2.calcHist([hsv], [0, 1, 2], None, list(HIST_BINS), [0, 180, 0, 256, 0, 256]).ravel()
    return h / max(float(h.sum()), 1.0)


def histogram_similarity(h1: np.ndarray, h2: np.ndarray) -> float:
    """Histogram intersection of two normalised histograms, in [0, 1]; 1 = same colours."""
    return float(np.minimum(h1, h2).sum())


def grey_thumbnail(grey: np.ndarray) -> np.ndarray:
    """(HASH_SIDE, HASH_SIDE) float32 area-filtered thumbnail of a grey frame."""
    return cv2.resize(grey, (HASH_SIDE, HASH_SIDE), interpolation=cv2.INTER_AREA).astype(np.float32)


def perceptual_hash(small: np.ndarray) -> np.ndarray:
    """64-bit pHash as (64,) bool of a :func:`grey_thumbnail`: signs of the 8x8 lowest DCT
    frequencies (DC left out) against their median. Invariant to brightness and contrast,
    robust to small shifts, different for different layouts even in the same palette."""
    d = cv2.dct(small)[:8, :8].ravel()[1:]  # (63,) without the DC term
    bits = np.zeros(64, dtype=bool)
    bits[1:] = d > np.median(d)
    return bits


def unit_pattern(small: np.ndarray) -> np.ndarray:
    """A thumbnail as a zero-mean unit vector (HASH_SIDE**2,): the dot product of two is their
    normalised cross-correlation, blind to gain and offset (fades, flicker)."""
    v = small.ravel() - small.mean()
    n = float(np.linalg.norm(v))
    return v / n if n > 1e-3 else np.zeros_like(v)


def hash_distance(a: np.ndarray, b: np.ndarray) -> float:
    """Fraction of differing hash bits, in [0, 1]; about 0.5 for unrelated images."""
    return float(np.count_nonzero(a != b)) / a.size


def hash_similarity(a: np.ndarray, b: np.ndarray) -> float:
    """1 - 2 * Hamming / 64, clipped at 0: 1 = same layout, ~0 = unrelated images."""
    return max(0.0, 1.0 - 2.0 * hash_distance(a, b))


def mean_lab(frame: np.ndarray) -> np.ndarray:
    """Mean CIELAB colour (3,) float32 of ``frame`` (L in [0, 100], a and b about [-128, 127])."""
    small = cv2.resize(frame, (LAB_SIDE, LAB_SIDE), interpolation=cv2.INTER_AREA)
    lab = cv2.cvtColor(small.astype(np.float32) / 255.0, cv2.COLOR_RGB2Lab)
    return lab.reshape(-1, 3).mean(axis=0)  # (3,)


def delta_e(lab1: np.ndarray, lab2: np.ndarray) -> np.ndarray:
    """CIE76 colour difference (Euclidean in CIELAB); ~2.3 is a just-noticeable difference."""
    return np.linalg.norm(np.asarray(lab1, np.float64) - np.asarray(lab2, np.float64), axis=-1)


def sharpness(grey: np.ndarray) -> float:
    """Variance of the Laplacian (Pech-Pacheco et al. 2000): high for sharp detail, ~0 for blur."""
    return float(cv2.Laplacian(grey, cv2.CV_32F).var())


@dataclass
class FrameFeatures:
    """What one frame contributes to the pair metrics and the references of its shot."""

    grey: np.ndarray  # (h, w) uint8
    hist: np.ndarray  # (bins,) float32
    phash: np.ndarray  # (64,) bool
    pattern: np.ndarray  # (HASH_SIDE**2,) float32 zero-mean unit vector (see unit_pattern)
    lab: np.ndarray  # (3,) float32
    sharpness: float
    flat: bool  # nearly uniform (e.g. a black fade frame): structure undefined


def frame_features(frame: np.ndarray) -> FrameFeatures:
    """All single-frame features of a working-size frame."""
    grey = to_grey(frame)
    small = grey_thumbnail(grey)
    return FrameFeatures(grey, colour_histogram(frame), perceptual_hash(small), unit_pattern(small), mean_lab(frame), sharpness(grey), float(small.std()) < 2.0)


def appearance_similarity(a: FrameFeatures, b: FrameFeatures) -> float:
    """Background/appearance similarity of two frames, in [0, 1].

    The mean of the colour-histogram intersection and the perceptual-hash similarity: the
    histogram alone misses a change of layout in the same palette (a cut between two rooms
    painted alike), the hash alone misses a change of colour in the same layout.
    """
    if a.flat or b.flat:
        structure = 1.0 if (a.flat and b.flat) else 0.0
    else:
        structure = hash_similarity(a.phash, b.phash)
    return 0.5 * histogram_similarity(a.hist, b.hist) + 0.5 * structure
