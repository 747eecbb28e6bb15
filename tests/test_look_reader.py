"""Reference images set a character's look (model/look_reader.py, train/look_reader.py)."""

from __future__ import annotations

import json

import numpy as np
import pytest
import torch

from longtake.generate import builtin_generator
from longtake.memory.cast import CastMember
from longtake.model import ModelError
from longtake.model.builtin import load_builtin
from longtake.model.look_reader import (
    FEET_ROW,
    FIGURE_HEIGHT,
    HEADS,
    LOOK_FILE,
    LookReader,
    LookReaderConfig,
    LookReadError,
    figure_box,
    load_reader,
    normal_window,
    read_look,
    save_reader,
    targets,
)
from longtake.model.sprites import LOOK_CLASSES, FigureSprites, FittedLook, install_sprites, look_vector
from longtake.pipeline import render_story
from longtake.plan import plan
from longtake.video import sha256_file
from longtake.world.vocab import HiddenDetails, draw_hidden

from interrupt import Interrupted, StopAfter  # tests/interrupt.py
from test_sprites import TINY, _away_and_back, _layout_folder  # tests/test_sprites.py

SMALL = LookReaderConfig(channels=(8, 8, 8), hidden=16)


def _folder_with_reader(tmp_path, story):
    """A tiny layout model folder with a figure layer and an untrained look reader."""
    folder = _layout_folder(tmp_path, story)
    torch.manual_seed(6)
    install_sprites(folder, FigureSprites(TINY))
    torch.manual_seed(2)
    save_reader(folder, LookReader(SMALL).eval())
    return folder


def _figure_image(size=(96, 80), box=(30, 20, 50, 84), seed=0) -> np.ndarray:
    """A striped figure (x0, y0, x1, y1) on a noisy grey-green background."""
    rng = np.random.default_rng(seed)
    img = (rng.normal(0, 6, (*size, 3)) + (120, 140, 120)).clip(0, 255).astype(np.uint8)
    x0, y0, x1, y1 = box
    img[y0:y1, x0:x1] = (200, 30, 40)
    img[y0:y1:4, x0:x1] = (250, 220, 20)
    img[y0 : y0 + 10, x0 + 4 : x1 - 4] = (230, 190, 150)  # a head
    return img


def test_targets_ignore_the_parts_a_figure_does_not_have():
    hid = draw_hidden(1, "ann")
    import dataclasses

    no_bag = dataclasses.replace(hid, bag="none", badge_shape="circle", bag_colour="red", hat_colour="blue")
    full = torch.tensor([[0, 1, 1, 2, 0, 1, 2, 0, 0], [0, 1, 1, 2, 0, 1, 2, 0, 1]])  # hat: none, then a hat
    cls, scales, has = targets(full, torch.stack([look_vector(no_bag), look_vector(no_bag)]))
    heads = list(HEADS)
    assert cls.shape == (2, len(HEADS)) and scales.shape == (2, 5) and bool(has.all())
    assert int(cls[0, heads.index("look:bag_colour")]) == -1  # no bag: its colour is not a target
    assert int(cls[0, heads.index("look:badge_colour")]) == LOOK_CLASSES["badge_colour"].index(no_bag.badge_colour)
    assert int(cls[0, heads.index("look:hat_colour")]) == -1 and int(cls[1, heads.index("look:hat_colour")]) == LOOK_CLASSES["hat_colour"].index("blue")
    assert int(cls[0, heads.index("attr:top_colour")]) == 2


def test_figure_box_finds_the_figure_and_the_window_stands_it_on_its_feet():
    img = _figure_image()
    x0, y0, x1, y1 = figure_box(img)
    assert abs(x0 - 30) <= 2 and abs(x1 - 50) <= 2 and abs(y0 - 20) <= 2 and abs(y1 - 84) <= 2, (x0, y0, x1, y1)
    win = normal_window(img, (30, 20, 50, 84))
    assert win.shape == (64, 40, 3)
    red = (win[:, :, 0] > 150) & (win[:, :, 2] < 100) & (win[:, :, 1] < 100)  # the figure's red
    rows, cols = np.nonzero(red)
    assert abs(rows.max() + 1 - FEET_ROW) <= 1 and abs((rows.max() + 1 - rows.min()) - FIGURE_HEIGHT) <= 1  # the box (red from top to bottom at its sides) is FIGURE_HEIGHT tall
    assert abs((cols.min() + cols.max() + 1) / 2 - 20) <= 1


def test_read_look_gives_a_drawable_look_and_refuses_what_it_cannot_read():
    torch.manual_seed(0)
    reader = LookReader(SMALL).eval()
    look = read_look(reader, [_figure_image(), _figure_image(seed=1)], "ann")
    assert isinstance(look, FittedLook) and len(look.attributes) == 9 and isinstance(look.hidden, HiddenDetails)
    assert 0 <= look.hidden.pattern_phase < look.hidden.pattern_period and 0.92 - 1e-6 <= look.hidden.height <= 1.08 + 1e-6
    assert FittedLook.from_dict(json.loads(json.dumps(look.to_dict()))) == look
    with pytest.raises(LookReadError, match="too small"):
        read_look(reader, [np.zeros((6, 6, 3), np.uint8)], "ann")
    with pytest.raises(LookReadError, match="uint8 RGB"):
        read_look(reader, [np.zeros((40, 40), np.uint8)], "ann")
    with pytest.raises(ValueError, match="fitted look"):
        FittedLook.from_dict({"attributes": {"hair_colour": "plaid"}, "hidden": look.hidden.to_dict()})


def test_a_saved_reader_loads_and_a_mismatched_one_is_refused(tmp_path):
    folder = _layout_folder(tmp_path, _away_and_back())
    install_sprites(folder, FigureSprites(TINY))
    torch.manual_seed(1)
    reader = LookReader(SMALL).eval()
    save_reader(folder, reader, provenance={"metrics": {"parts": {}}})
    model = load_builtin(folder)
    assert model.look_reader is not None and LOOK_FILE in model.weights  # the manifest names its weights
    x = torch.rand(2, 3, 64, 40) * 2 - 1
    assert torch.allclose(model.look_reader(x)["scales"], reader(x)["scales"], atol=2e-2)  # stored in float16
    meta = json.loads((folder / "model.json").read_text())
    meta["look_reader"]["hidden"] = 24
    with pytest.raises(ModelError, match="does not match"):
        load_reader(folder, meta)
    (folder / LOOK_FILE).unlink()
    with pytest.raises(ModelError, match="missing"):
        load_builtin(folder)


@pytest.mark.parametrize("memory", ["sink", "entity"])
def test_a_reference_image_sets_the_look_for_the_whole_render_and_survives_a_resume(tmp_path, memory):
    """Ann has a reference image: her look is the one read off it from her first chunk to her
    last, also after an absence longer than the window with the sink only (where she would
    otherwise get a new look); Bob has none and gets a seeded look. The state carries the
    read look, so a resumed stream draws what a straight one draws."""
    story = _away_and_back()
    folder = _folder_with_reader(tmp_path, story)
    tl = plan(story, frames_per_chunk=8, first_chunk_frames=5)
    cast = [CastMember("ann", "character", "Ann (a girl with red hair).", (_figure_image(),)), CastMember("bob", "character", "Bob.")]
    want = read_look(load_builtin(folder).look_reader, [_figure_image()], "ann")
    gen = builtin_generator(folder, memory=memory, cast=cast)
    seen = [gen._sprite_layer.looks["ann"] for fc in gen.stream(tl, seed=2) if "ann" in fc.chunk.characters]
    assert seen and all(look == want for look in seen)
    assert gen._sprite_layer.new_looks == 1  # Bob's only

    straight = render_story(story, tl, builtin_generator(folder, memory=memory, cast=cast), tmp_path / "a.mp4", seed=1)
    out = tmp_path / "b.mp4"
    with pytest.raises(Interrupted):
        render_story(story, tl, StopAfter(builtin_generator(folder, memory=memory, cast=cast), 3), out, seed=1, checkpoint_every=2)
    render_story(story, tl, builtin_generator(folder, memory=memory, cast=cast), out, seed=1, resume=True)
    assert sha256_file(straight.video) == sha256_file(out)


def test_a_scripts_refs_reach_the_look_reader_in_every_memory_mode(tmp_path):
    """load_generator reads the script's refs for every mode (not only entity memory, which
    also encodes them): with --memory sink Ann's look is the one read off her reference image,
    and the manifest's settings name the references (cast_refs)."""
    import cv2

    from longtake.pipeline import load_generator

    story = _away_and_back()
    folder = _folder_with_reader(tmp_path, story)
    ref = tmp_path / "ann.png"
    cv2.imwrite(str(ref), _figure_image()[:, :, ::-1])
    data = story.model_dump(mode="json")
    data["characters"][0]["refs"] = [str(ref)]
    with_ref = type(story).model_validate(data)
    gen = load_generator("builtin", story=with_ref, weights=folder, memory="sink")
    tl = plan(with_ref, frames_per_chunk=8, first_chunk_frames=5)
    seen = [gen._sprite_layer.looks["ann"] for fc in gen.stream(tl, seed=2) if "ann" in fc.chunk.characters]
    assert seen and all(look == read_look(gen.look_reader, [_figure_image()], "ann") for look in seen)
    assert gen.info().settings["memory"]["cast_refs"]


def _crops(n=24) -> dict:
    """A tiny crops file as `longtake train-sprites` writes it: RGBA windows, attributes, looks, stories."""
    from longtake.eval.probe_data import ATTRIBUTES

    rng = np.random.default_rng(0)
    x = np.zeros((n, 64, 40, 4), np.uint8)
    x[..., :3] = rng.integers(0, 255, (n, 64, 40, 3))
    x[:, 14:64, 12:28, 3] = 255
    full = torch.tensor([[int(rng.integers(len(c))) for c in ATTRIBUTES.values()] for _ in range(n)])
    looks = torch.stack([look_vector(draw_hidden(i, "ann")) for i in range(n)])
    return {"x": torch.from_numpy(x), "full": full, "looks": looks, "story": torch.arange(n) // 2}


def test_train_look_reader_installs_a_reader_that_loads_and_refuses_bad_input(tmp_path):
    from typer.testing import CliRunner

    from longtake.cli import app

    folder = _layout_folder(tmp_path, _away_and_back())
    install_sprites(folder, FigureSprites(TINY))
    torch.save(_crops(), tmp_path / "crops.pt")
    runner = CliRunner()
    ok = runner.invoke(app, ["train-look-reader", "--crops", str(tmp_path / "crops.pt"), "--model", str(folder), "--out", str(tmp_path / "run"),
                             "--set", "steps=3", "--set", "batch=8", "--set", "holdout=2", "--set", "warmup=1", "--install", "--threads", "1"])
    assert ok.exit_code == 0, ok.output
    metrics = json.loads((tmp_path / "run" / "metrics.json").read_text())["metrics"]
    assert metrics["held_crops"] == 12 and metrics["train_crops"] == 12 and set(metrics["parts"]) <= set(HEADS)
    model = load_builtin(folder)
    assert model.look_reader is not None and json.loads((folder / "model.json").read_text())["look_reader"]["train"]["metrics"]["steps"] == 3
    missing = runner.invoke(app, ["train-look-reader", "--crops", str(tmp_path / "nope.pt"), "--out", str(tmp_path / "run2")])
    assert missing.exit_code == 2 and "crops not found" in missing.output
    nothing = runner.invoke(app, ["train-look-reader", "--out", str(tmp_path / "run3")])
    assert nothing.exit_code == 2 and "nothing to train on" in nothing.output
