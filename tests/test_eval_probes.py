"""The shipped StoryWorld probes on a few held-out ground-truth frames (CPU, seconds)."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest

from longtake.eval.errors import EvalError
from longtake.eval.probe_data import variant_seed
from longtake.eval.probes import Instance, StoryWorldProbes, appearance_attributes, match_attributes
from longtake.plan import plan
from longtake.world.renderer import WorldRenderer
from longtake.world.sampler import sample_story


@pytest.fixture(scope="module")
def probes() -> StoryWorldProbes:
    return StoryWorldProbes.load()


def _story(seed: int, n: int = 2):
    story = sample_story(seed, 20.0, split="heldout", num_characters=(n, n))
    return story, plan(story, frames_per_chunk=12, first_chunk_frames=9)


def _clear_frame(seed: int):
    """A frame of held-out story ``seed`` with two characters, both inside the frame's left and
    right edges and the top, side by side without overlapping."""
    story, tl = _story(seed)
    r = WorldRenderer(story)
    for chunk in tl.chunks:
        frames, truths = r.render_chunk(chunk)
        for f, t in zip(frames, truths):
            boxes = [c.bbox for c in t.characters if c.bbox is not None]
            if len(boxes) == 2 and t.fade == 1.0 and all(b[0] > 0 and b[2] < 128 and b[1] > 0 for b in boxes) \
                    and (boxes[0][2] <= boxes[1][0] or boxes[1][2] <= boxes[0][0]):
                return f, t
    raise AssertionError("no clear two-character frame")


def test_missing_folder_is_a_clear_error(tmp_path: Path) -> None:
    with pytest.raises(EvalError, match="not a folder"):
        StoryWorldProbes.load(tmp_path / "nope")
    with pytest.raises(EvalError, match="probes.json"):
        StoryWorldProbes.load(tmp_path)


def test_bad_frames_are_a_clear_error(probes: StoryWorldProbes) -> None:
    with pytest.raises(EvalError, match="uint8"):
        probes.locations(np.zeros((2, 128, 128, 3), np.float32))
    with pytest.raises(EvalError, match="one box per frame"):
        probes.identity(np.zeros((2, 128, 128, 3), np.uint8), [(0, 0, 10, 10)])


def test_locations_of_heldout_frames(probes: StoryWorldProbes) -> None:
    frames, want = [], []
    for seed in range(4):
        story, tl = _story(seed)
        r = WorldRenderer(story)
        for chunk in tl.chunks[2::6]:
            img, truths = r.render_chunk(chunk)
            frames.append(img[-1])
            want.append(truths[-1].location_kind)
    got = probes.locations(np.stack(frames))
    assert probes.location_probs(np.stack(frames)).shape == (len(frames), 9)
    assert np.mean([g == w for g, w in zip(got, want)]) >= 0.95, list(zip(got, want))


def test_instances_with_two_characters(probes: StoryWorldProbes) -> None:
    """Both characters of clear two-character frames of held-out stories (4 or more) are found, and
    their captioned attributes read right: 85% of the readings (the held-out mean over the 9
    attributes is about 93%, docs/probes.md; these ~100 readings give 89% with both the
    session 2 and the session 5 probes), at most 3 of 9 wrong on any one character (a night
    frame dims red to pink)."""
    right = total = 0
    for seed in (0, 1, 2, 3, 4, 5, 6, 7):
        try:
            frame, truth = _clear_frame(seed)
        except AssertionError:  # this story has no clear two-character frame
            continue
        (found,) = probes.instances(frame[None])
        assert len(found) == 2
        assert all(isinstance(i, Instance) and i.embedding.shape == found[0].embedding.shape for i in found)
        for c in truth.characters:
            x0, y0, x1, y1 = c.bbox  # type: ignore[misc]
            best = max(found, key=lambda i: _iou(i.box, (x0, y0, x1, y1)))
            assert _iou(best.box, (x0, y0, x1, y1)) >= 0.5
            want = appearance_attributes(c.appearance)
            ok = sum(best.attributes.get(k) == v for k, v in want.items())
            assert ok >= len(want) - 3, (best.attributes, want)
            assert match_attributes(c.appearance, found) >= ok / len(want)
            right, total = right + ok, total + len(want)
    assert total >= 4 * 2 * 9 and right / total >= 0.85, f"{right}/{total}"
    assert match_attributes(truth.characters[0].appearance, []) == 0.0


def test_identity_prefers_the_same_character_over_its_twin(probes: StoryWorldProbes) -> None:
    story, tl = _story(2)
    cid = story.characters[0].id
    views = []
    for seed in (story.seed, story.seed, variant_seed(story.seed, 1)):
        r = WorldRenderer(story, seed=seed)
        chunk = tl.chunks[len(views) * 5 + 3]
        frames, truths = r.render_chunk(chunk)
        best = max(range(len(frames)), key=lambda f: _area(truths[f], cid))
        views.append((frames[best], next(c.bbox for c in truths[best].characters if c.id == cid)))
    emb = probes.identity(np.stack([v[0] for v in views]), [v[1] for v in views])
    assert emb.shape[0] == 3 and np.allclose(np.linalg.norm(emb, axis=1), 1, atol=1e-4)
    assert emb[0] @ emb[1] > emb[0] @ emb[2]  # same story seed beats same caption, other hidden details


def test_alignment_prefers_the_right_prompt(probes: StoryWorldProbes) -> None:
    prompts, clips = [], []
    for seed in range(5):
        story, tl = _story(10 + seed)
        shot = tl.shots[1]
        r = WorldRenderer(story)
        frames = np.concatenate([r.render_chunk(tl.chunks[shot.first_chunk + k])[0] for k in range(shot.num_chunks)])
        clips.append(frames)  # the whole shot; alignment() reads 8 evenly spaced frames
        prompts.append(tl.chunks[shot.first_chunk].prompt)
    for k, clip in enumerate(clips):
        scores = probes.alignment(clip, prompts)
        assert scores.shape == (len(prompts),) and np.all(np.abs(scores) <= 1 + 1e-5)
        assert int(np.argmax(scores)) == k


def test_save_and_load_round_trip(probes: StoryWorldProbes, tmp_path: Path) -> None:
    frame, _ = _clear_frame(0)
    probes.save(tmp_path)
    again = StoryWorldProbes.load(tmp_path)
    np.testing.assert_allclose(again.location_probs(frame), probes.location_probs(frame), atol=1e-6)


def _area(truth, cid: str) -> int:  # type: ignore[no-untyped-def]
    c = next((c for c in truth.characters if c.id == cid and c.bbox is not None), None)
    return 0 if c is None else (c.bbox[2] - c.bbox[0]) * (c.bbox[3] - c.bbox[1])


def _iou(a: tuple[int, int, int, int], b: tuple[int, int, int, int]) -> float:
    ix = max(0, min(a[2], b[2]) - max(a[0], b[0]))
    iy = max(0, min(a[3], b[3]) - max(a[1], b[1]))
    inter = ix * iy
    return inter / max((a[2] - a[0]) * (a[3] - a[1]) + (b[2] - b[0]) * (b[3] - b[1]) - inter, 1)


def test_torso_crop_net_trains_saves_and_loads(tmp_path: Path) -> None:
    """The optional torso crop + CoordConv crop net (train_probes --torso/--coords): a short
    bf16 run on a few stories, saved and loaded, reads the same attributes."""
    import torch

    from longtake.eval.probe_data import build_data
    from longtake.eval.probe_training import train_crop, train_scene
    from longtake.eval.train_probes import _attr_weights

    data = build_data("train", range(6), duration=8.0, variants=2, frames_per_shot=1, num_characters=(2, 3))
    gen = torch.Generator().manual_seed(0)
    scene = train_scene([data], steps=2, batch=4, lr=1e-3, gen=gen, amp=True)
    crop = train_crop(data, steps=3, stories_per_batch=2, singles=4, lr=1e-3, gen=gen, amp=True,
                      attr_weights=_attr_weights(["body=2"]), cfg={"torso_hw": (24, 20), "coords": True},
                      pose_weights={"wave": 3.0, "walk": 2.0})
    assert crop.cfg.torso_hw == (24, 20) and crop.cfg.coords
    probes = StoryWorldProbes(scene, crop)
    frame, truth = _clear_frame(0)
    boxes = np.array([c.bbox for c in truth.characters if c.bbox is not None], np.float32)
    probes.save(tmp_path)
    again = StoryWorldProbes.load(tmp_path)
    assert again.crop.cfg == crop.cfg
    frames = np.repeat(frame[None], len(boxes), 0)
    emb = probes.identity(frames, boxes)
    assert emb.shape[0] == len(boxes) and np.isfinite(emb).all()
    np.testing.assert_allclose(again.identity(frames, boxes), emb, atol=1e-5)
    with pytest.raises(ValueError, match="NAME=W"):
        _attr_weights(["nose=1"])


def test_box_refinement_targets_invert_and_a_fresh_refiner_keeps_boxes() -> None:
    import torch

    from longtake.eval.probe_models import BoxNet, apply_refinement, refine_targets

    gen = torch.Generator().manual_seed(0)
    xy = torch.rand(20, 2, generator=gen) * 60
    boxes = torch.cat([xy, xy + 10 + torch.rand(20, 2, generator=gen) * 50], 1)
    delta = torch.randn(20, 4, generator=gen) * 0.05
    torch.testing.assert_close(refine_targets(boxes, apply_refinement(boxes, delta)), delta, atol=1e-5, rtol=0)
    images = torch.rand(3, 3, 128, 128, generator=gen)
    index = torch.randint(0, 3, (20,), generator=gen)
    torch.testing.assert_close(BoxNet().eval().refine(images, index, boxes), boxes)  # zero-initialised last layer


def _matched_ious(probes: StoryWorldProbes, data) -> np.ndarray:  # type: ignore[no-untyped-def]
    """IoU of every clear ground-truth box with its best detection (0 when none)."""
    from longtake.eval.probe_eval import _iou as iou_matrix

    inst = probes.instances(data.frames)
    out = []
    for b in np.flatnonzero(data.box_clear):
        pred = np.asarray([i.box for i in inst[data.box_frame[b]]], np.float32).reshape(-1, 4)
        out.append(float(iou_matrix(data.box_xyxy[b][None], pred).max()) if len(pred) else 0.0)
    return np.asarray(out)


def test_shipped_refiner_tightens_the_detectors_boxes(probes: StoryWorldProbes) -> None:
    """On held-out frames the second stage moves boxes onto the characters: the median IoU of
    the clear characters' boxes was 0.82 without it and 0.92 with it on 40 held-out stories
    (docs/probes.md)."""
    from longtake.eval.probe_data import build_data

    assert probes.refine is not None
    data = build_data("heldout", range(300, 306), variants=1, frames_per_shot=2, rng_seed=3)
    plain = StoryWorldProbes(probes.scene, probes.crop, threshold=probes.threshold)
    before, after = _matched_ious(plain, data), _matched_ious(probes, data)
    assert before.size >= 20
    assert np.median(after) >= np.median(before) + 0.04 and np.median(after) >= 0.85, (np.median(before), np.median(after))
    assert (after >= 0.5).mean() >= (before >= 0.5).mean() - 0.02


def test_refiner_trains_refines_training_boxes_saves_and_loads(tmp_path: Path, probes: StoryWorldProbes) -> None:
    """The full-run path (train_refine, then detector_boxes through the refiner) and the
    ``--refine-only`` command on trained probes, on a few stories."""
    import shutil

    import torch

    from longtake.eval.probe_data import build_data
    from longtake.eval.probes import SHIPPED
    from longtake.eval.probe_training import THRESHOLD, detector_boxes, train_refine
    from longtake.eval.train_probes import main

    data = build_data("train", range(4), duration=8.0, variants=1, frames_per_shot=1, num_characters=(2, 3))
    det = detector_boxes(probes.scene, data, THRESHOLD)
    net = train_refine(data, det, steps=3, batch=8, lr=1e-3, gen=torch.Generator().manual_seed(0))
    refined = detector_boxes(probes.scene, data, THRESHOLD, net)
    assert refined.shape == det.shape and np.isfinite(refined[:, 0]).sum() >= 0.8 * np.isfinite(det[:, 0]).sum()
    mine = StoryWorldProbes(probes.scene, probes.crop, probes.align, probes.tokenizer, refine=net)
    mine.save(tmp_path / "a")
    again = StoryWorldProbes.load(tmp_path / "a")
    assert again.refine is not None and again.refine.cfg == net.cfg
    frame, _ = _clear_frame(0)
    assert [i.box for i in again.instances(frame[None])[0]] == [i.box for i in mine.instances(frame[None])[0]]

    shutil.copytree(SHIPPED, tmp_path / "b")
    main(["--out", str(tmp_path / "b"), "--refine-only", "--train-stories", "3", "--refine-steps", "2", "--skip-eval"])
    loaded = StoryWorldProbes.load(tmp_path / "b")
    assert loaded.refine is not None and "--refine-only" in loaded.meta["refine"]["command"]
    with pytest.raises(SystemExit) as err:
        main(["--out", str(tmp_path / "b"), "--refine-only", "--eval-only"])
    assert err.value.code == 2
