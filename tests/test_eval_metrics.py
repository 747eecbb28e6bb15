"""Weight-free eval metrics on constructed videos whose answers are known.

Each test builds frames in memory (no codec in the way, so the numbers are exact), runs the
streaming metrics and checks that each one moves the right way and by the expected amount.
"""

from __future__ import annotations

import math

import cv2
import numpy as np
import pytest

from longtake.eval import metrics as M
from longtake.eval.metrics_stream import MetricStream
from longtake.eval.run import evaluate_frames
from longtake.eval.shots import ShotPlan, ShotRange, match_cuts, segments, shots_from_story

FPS = 16.0
SIZE = 96


def texture(seed: int, size: int = SIZE, palette: np.ndarray | None = None) -> np.ndarray:
    """A smooth random image with rectangles: structure at several scales, like a set."""
    rng = np.random.default_rng(seed)
    base = cv2.resize(rng.random((12, 12, 3)).astype(np.float32), (size, size), interpolation=cv2.INTER_CUBIC)
    img = np.clip(base * 180 + 40, 0, 255).astype(np.uint8)
    for _ in range(8):
        x0, y0 = rng.integers(0, size - 16, 2)
        w, h = rng.integers(6, 24, 2)
        colour = palette[rng.integers(len(palette))] if palette is not None else rng.integers(30, 226, 3)
        img[y0 : y0 + h, x0 : x0 + w] = colour
    return img


def video(frame: np.ndarray, n: int) -> np.ndarray:
    return np.repeat(frame[None], n, axis=0)  # (n, H, W, 3)


def run(frames: np.ndarray, plan: ShotPlan | None = None) -> tuple[dict, dict]:
    result, numbers = evaluate_frames([frames], FPS, plan=plan)
    return result.series, numbers


# -- the five constructed videos ---------------------------------------------------------


def test_static_video_is_perfect() -> None:
    series, numbers = run(video(texture(0), 32))
    s = numbers["summary"]
    assert s["flicker"] == pytest.approx(1.0, abs=1e-9)
    assert s["smoothness"] == pytest.approx(1.0, abs=1e-4)  # bilinear warps by a ~0 flow
    assert s["warp_error"] == pytest.approx(0.0, abs=1e-4)
    assert s["background"] == pytest.approx(1.0, abs=1e-9)
    assert s["colour_drift"] == pytest.approx(0.0, abs=1e-6)
    assert s["colour_drift_end"] == pytest.approx(0.0, abs=1e-6)
    assert s["sharpness_trend"] == pytest.approx(0.0, abs=1e-9)
    assert s["cuts"] == 0
    assert math.isnan(series["flicker"][0]) and math.isnan(series["smoothness"][0]) and math.isnan(series["smoothness"][-1])


def test_added_flicker_lowers_flicker_and_smoothness_by_its_amplitude() -> None:
    base = texture(1)
    amp = 12
    frames = np.stack([np.clip(base.astype(int) + (amp if t % 2 else 0), 0, 255).astype(np.uint8) for t in range(32)])
    clipped = (base.astype(int) + amp > 255).mean()
    _, numbers = run(frames)
    s = numbers["summary"]
    expected = 1 - amp * (1 - clipped) / 255  # mean absolute difference is the amplitude
    assert s["flicker"] == pytest.approx(expected, abs=2e-3)
    assert 0.94 < s["flicker"] < 0.96
    # the middle frame is predicted from two neighbours of the other brightness
    assert s["smoothness"] == pytest.approx(expected, abs=5e-3)
    assert s["cuts"] == 0, "a brightness flicker is not a cut"
    # the same video with half the amplitude scores half as far from 1
    half = np.stack([np.clip(base.astype(int) + (amp // 2 if t % 2 else 0), 0, 255).astype(np.uint8) for t in range(32)])
    s2 = run(half)[1]["summary"]
    assert (1 - s2["flicker"]) == pytest.approx((1 - s["flicker"]) / 2, rel=0.1)


@pytest.mark.parametrize("same_palette", [False, True])
def test_hard_cut_is_detected_at_its_frame_and_background_drops_there(same_palette: bool) -> None:
    palette = np.array([[200, 40, 40], [40, 160, 60], [50, 60, 200], [230, 220, 60]])
    if same_palette:
        # the second shot is the first one's pixels reshuffled in blocks: identical colour
        # histogram, different layout; only the structural half of the similarity sees the cut
        a = texture(2, palette=palette)
        blocks = a.reshape(4, SIZE // 4, 4, SIZE // 4, 3).transpose(0, 2, 1, 3, 4).reshape(16, SIZE // 4, SIZE // 4, 3)
        order = np.random.default_rng(0).permutation(16)
        b = blocks[order].reshape(4, 4, SIZE // 4, SIZE // 4, 3).transpose(0, 2, 1, 3, 4).reshape(SIZE, SIZE, 3)
        assert M.histogram_similarity(M.colour_histogram(a), M.colour_histogram(b)) > 0.97
    else:
        a, b = texture(2), texture(3)
    frames = np.concatenate([video(a, 20), video(b, 20)])
    series, numbers = run(frames)
    assert numbers["cuts"]["detected"] == [20]
    bg = series["background"]
    assert bg[20] < 0.6 and np.nanmin(np.delete(bg, 20)) > 0.99
    # the summaries measure the shots, not the cut
    assert numbers["summary"]["flicker"] == pytest.approx(1.0)
    assert numbers["summary"]["background"] == pytest.approx(1.0)
    assert [(s["start"], s["end"]) for s in numbers["shots"]] == [(0, 20), (20, 40)]


def test_cut_against_the_script() -> None:
    plan = ShotPlan((ShotRange(0, 0, 20, 0, "a"), ShotRange(1, 20, 40, 1, "b"), ShotRange(2, 40, 60, 1, "b")), "plan 12/12", 2)
    frames = np.concatenate([video(texture(4), 20), video(texture(5), 40)])
    _, numbers = run(frames, plan)
    s = numbers["summary"]
    # the cut at 20 (a change of place) is found; the one at 40 (same place, same framing)
    # cannot be seen and is not required
    assert s["cut_precision"] == 1.0 and s["cut_recall"] == 1.0 and s["cut_f1"] == 1.0
    assert numbers["cuts"]["recall_all"] == 0.5
    m = match_cuts([21, 33], plan)
    assert m["precision"] == 0.5 and m["recall"] == 1.0 and m["unplanned"] == [33] and m["matched"][0]["offset"] == 1


def test_slow_colour_drift_grows_with_time() -> None:
    base = texture(6).astype(np.float32)
    n = 64
    # a warming tint that grows linearly: red up, blue down, 0.5 grey levels per frame
    frames = np.stack([np.clip(base + np.array([0.5, 0.0, -0.5]) * t, 0, 255).astype(np.uint8) for t in range(n)])
    series, numbers = run(frames)
    drift = numbers["series"]["colour_drift"]
    d = np.array(drift, dtype=float)
    assert d[0] == pytest.approx(0.0, abs=1.0)  # the reference is the mean of the first 0.25 s
    assert d[n // 2] > 4 and d[-1] > 2 * d[n // 2] * 0.85
    smooth = np.convolve(d, np.ones(5) / 5, "valid")
    assert np.all(np.diff(smooth) > 0), "delta E grows monotonically"
    # against a direct CIELAB computation of the last frame's mean colour
    ref = M.mean_lab(frames[:4].mean(0).astype(np.uint8))
    assert d[-1] == pytest.approx(float(M.delta_e(M.mean_lab(frames[-1]), ref)), rel=0.1)
    assert numbers["summary"]["colour_drift_end"] > 10
    assert numbers["summary"]["cuts"] == 0
    assert numbers["summary"]["flicker"] > 0.995  # a slow drift is no flicker


def test_sharpness_drop_half_way() -> None:
    sharp = texture(7)
    blurred = cv2.GaussianBlur(sharp, (0, 0), 2.0)
    frames = np.concatenate([video(sharp, 24), video(blurred, 24)])
    series, numbers = run(frames)
    s = series["sharpness"]
    assert np.median(s[24:]) < 0.2 * np.median(s[:24])
    assert numbers["summary"]["sharpness_trend"] < -2  # more than 4x less sharp
    assert numbers["summary"]["cuts"] == 0, "going out of focus is not a cut"
    assert np.isfinite(s).all()


# -- motion ------------------------------------------------------------------------------


def pan(n: int, steps: np.ndarray) -> np.ndarray:
    big = cv2.resize(texture(8), (SIZE * 3, SIZE), interpolation=cv2.INTER_CUBIC)
    xs = np.cumsum(steps).astype(int)
    return np.stack([big[:, x : x + SIZE] for x in xs[:n]])


def test_smooth_motion_scores_higher_than_jittery_motion() -> None:
    n = 40
    smooth = pan(n, np.full(n, 2))
    jitter = pan(n, np.where(np.arange(n) % 2, 6, 0) + 0)  # 0, 6, 0, 6: same mean speed, jerky
    s_smooth = run(smooth)[1]["summary"]
    s_jitter = run(jitter)[1]["summary"]
    assert s_smooth["smoothness"] > 0.97
    assert s_smooth["smoothness"] > s_jitter["smoothness"] + 0.01
    assert s_smooth["warp_error"] < 0.02, "a pan is explained by the flow"
    assert s_smooth["cuts"] == 0 and s_jitter["cuts"] == 0


def test_warp_error_of_a_known_shift_is_small_and_of_new_content_large() -> None:
    a = M.to_grey(texture(9))
    b = np.roll(a, 3, axis=1)
    w = M.Warper(SIZE, SIZE)
    moved = M.warp_error(a, b, M.flow(b, a), w)
    other = M.to_grey(texture(10))
    new = M.warp_error(a, other, M.flow(other, a), w)
    assert moved < 0.02 < 0.05 < new


# -- streaming and shots -----------------------------------------------------------------


def test_stream_memory_is_bounded_for_long_shots() -> None:
    stream = MetricStream(fps=FPS)
    frame = texture(11)
    for _ in range(20):
        stream.update(video(frame, 50))  # 1000 frames, one shot
    result = stream.finish()
    assert result.num_frames == 1000
    assert len(result.keyframes) <= 3  # first, a middle one, last
    assert all(v.shape == (1000,) for v in result.series.values())


def test_working_size_bounds_cost_and_keeps_aspect() -> None:
    assert M.working_size(1920, 1080) == (256, 144)
    assert M.working_size(128, 128) == (128, 128)
    frames = np.stack([cv2.resize(texture(12), (400, 200))] * 4)
    result, _ = evaluate_frames([frames], FPS, max_side=100)
    assert result.working_size == (100, 50)


def test_shots_from_story_matches_the_planner_or_scales_durations() -> None:
    from longtake.plan import plan
    from longtake.script import load_story

    story = load_story("examples/office_day.yaml")
    for fpc, first in ((12, 9), (12, 12)):
        tl = plan(story, frames_per_chunk=fpc, first_chunk_frames=first)
        sp = shots_from_story(story, tl.num_frames, story.fps)
        assert sp.source == f"plan {fpc}/{first}"
        assert [s.start for s in sp.shots] == [s.start_frame for s in tl.shots]
        assert sp.shots[-1].end == tl.num_frames
    sp = shots_from_story(story, 500, story.fps)  # made some other way: durations scaled
    assert sp.source == "durations" and sp.shots[-1].end == 500
    total = story.duration
    assert sp.shots[1].start == round(4 / total * 500)
    assert [s.location for s in sp.shots] == ["office", "office", "office", "park", "office"]
    assert sp.required_cuts == [sp.shots[3].start, sp.shots[4].start]


def test_segments_cover_the_video() -> None:
    segs = segments(330, 16, 10)
    assert segs[0] == (0, 160) and segs[-1] == (320, 330) and sum(b - a for a, b in segs) == 330


def test_perceptual_hash_is_blind_to_brightness_and_sees_layout() -> None:
    a = M.to_grey(texture(13))
    brighter = cv2.convertScaleAbs(a, alpha=1.2, beta=10)
    assert M.hash_similarity(M.perceptual_hash(M.grey_thumbnail(a)), M.perceptual_hash(M.grey_thumbnail(brighter))) > 0.9
    assert M.hash_similarity(M.perceptual_hash(M.grey_thumbnail(a)), M.perceptual_hash(M.grey_thumbnail(a[:, ::-1].copy()))) < 0.5
