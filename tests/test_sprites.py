"""The figure layer of the built-in model (model/sprites.py, train/sprites.py)."""

from __future__ import annotations

import dataclasses
import json
import shutil

import numpy as np
import pytest
import torch

from longtake.generate import builtin_generator
from longtake.memory.config import MemoryConfig
from longtake.model import CausalWanDiT, ModelError, get_preset
from longtake.model.builtin import load_builtin, save_builtin
from longtake.model.layout import LayoutPrior
from longtake.model.sprites import SPRITES_FILE, FigureSprites, SpriteConfig, anchors, install_sprites, paste_sprites
from longtake.model.text_builtin import BuiltinTextConfig, BuiltinTextEncoder
from longtake.model.tokenizer import Tokenizer
from longtake.model.vae_builtin import BuiltinVAE, BuiltinVAEConfig
from longtake.plan import plan
from longtake.sample.schedules import self_forcing_sigmas
from longtake.script import Story

from interrupt import Interrupted, StopAfter  # tests/interrupt.py

TINY = SpriteConfig(height=16, width=8, hidden=16, channels=(8, 8, 8, 8), text_dim=32)


def test_anchors_stand_a_sprite_on_the_bottom_of_the_box_without_its_margin():
    box = torch.zeros(2, 8, 8)
    box[0, 2:7, 3:6] = 1  # rows 2-6, cols 3-5, grown by one latent pixel on each side
    assert anchors(box, spatial=4) == [((7 - 1) * 4, round((3 + 6) * 4 / 2)), None]
    assert anchors(box, spatial=4, dilate=0) == [(7 * 4, 18), None]


def test_paste_puts_sprite_pixels_where_alpha_is_set_and_clips_at_the_edges():
    frames = np.zeros((2, 10, 10, 3), np.uint8)
    rgb = np.full((1, 4, 4, 3), 200, np.uint8)
    alpha = np.zeros((1, 4, 4), bool)
    alpha[0, 1:, 1:3] = True
    out = paste_sprites(frames, rgb, alpha, [(10, 1)])  # bottom row 10 (exclusive), centre column 1: left edge at -1
    assert frames.sum() == 0  # the input is not changed
    want = np.zeros((10, 10), bool)
    want[7:10, 0:2] = True  # alpha columns 1-2 land on frame columns 0-1
    assert np.array_equal(out[0, :, :, 0] == 200, want) and np.array_equal(out[1], out[0])
    assert np.array_equal(paste_sprites(frames, rgb, alpha, [None]), frames)
    assert np.array_equal(paste_sprites(frames, rgb, alpha, [(30, 30)]), frames)  # wholly outside


def test_clearing_fills_the_layout_boxes_from_around_them_and_leaves_the_rest():
    """The DiT's own figure in a layout box (here a magenta block) is replaced by what
    surrounds the box (a blue-to-green ramp); pixels outside the grown box stay as they were."""
    from longtake.generate.sprite_layer import clear_boxes

    ramp = np.linspace(0, 255, 64).astype(np.uint8)
    frame = np.zeros((64, 64, 3), np.uint8)
    frame[..., 1], frame[..., 2] = ramp[None, :], 255 - ramp[None, :]
    frames = np.stack([frame, frame])
    frames[:, 24:56, 24:40] = (255, 0, 255)  # latent rows 3-6, columns 3-4 at spatial factor 8
    boxes = torch.zeros(2, 8, 8)
    boxes[0, 3:7, 3:5] = 1.0
    out = clear_boxes(frames, boxes, 8, margin=1)
    assert out.shape == frames.shape and out.dtype == np.uint8
    inside = out[:, 24:56, 24:40].reshape(-1, 3).astype(int)
    assert inside[:, 0].max() < 40, "the ghost's red is gone"
    want = frame[24:56, 24:40].reshape(-1, 3).astype(int)
    assert np.abs(inside[:, 1:] - np.tile(want[:, 1:], (2, 1))).mean() < 40, "filled with the ramp around it"
    grown = np.zeros((64, 64), bool)
    grown[16:64, 16:48] = True  # one latent pixel more on every side
    np.testing.assert_array_equal(out[:, ~grown], frames[:, ~grown])
    np.testing.assert_array_equal(clear_boxes(frames, torch.zeros(2, 8, 8), 8), frames)  # no box: nothing changes


def test_sprite_config_refuses_bad_settings_in_one_message():
    with pytest.raises(ValueError, match="multiples of 8.*action must be"):
        SpriteConfig(height=12, action="dance")


def _layout_folder(tmp_path, story: Story):
    """A tiny layout DiT folder whose tokenizer knows the story's planned prompts."""
    torch.manual_seed(0)
    tl = plan(story, frames_per_chunk=8, first_chunk_frames=5)
    tok = Tokenizer.build([c.prompt for c in tl.chunks])
    text = BuiltinTextEncoder(BuiltinTextConfig(vocab_size=len(tok), dim=32, num_layers=1, num_heads=2, max_tokens=48), tok).eval()
    dit = CausalWanDiT(get_preset("tiny").replace(prediction="sample", layout_channels=2)).eval()
    vae = BuiltinVAE(BuiltinVAEConfig(latent_channels=4, channels=(8, 8, 8, 8), enc_res_blocks=0, dec_res_blocks=(0, 0, 0, 0), norm_groups=4)).eval()
    prior = LayoutPrior({1: ((0.25, 0.25, 1.0, 0.75),), 2: ((0.25, 0.0, 1.0, 0.5), (0.25, 0.5, 1.0, 1.0))})
    return save_builtin(tmp_path / "m", dit, vae, text, sigmas=self_forcing_sigmas(2), layout_prior=prior)


def _story(*shots: tuple[str, float]) -> Story:
    """Ann in the office, one shot per (prompt, seconds); default one shot "Ann waves" of 1 s."""
    return Story.model_validate({
        "title": "sprites", "fps": 16, "seed": 3, "size": {"width": 32, "height": 32},
        "characters": [{"id": "ann", "name": "Ann", "description": "a girl with red hair and a blue shirt"}],
        "locations": [{"id": "office"}],
        "scenes": [{"location": "office", "shots": [{"prompt": p, "characters": ["ann"], "duration": d}
                                                     for p, d in (shots or (("Ann waves", 1.0),))]}],
    })


def test_installed_sprites_load_count_in_the_weights_and_are_drawn_over_the_frames(tmp_path):
    story = _story()
    folder = _layout_folder(tmp_path, story)
    torch.manual_seed(1)
    sprites = FigureSprites(TINY)
    torch.nn.init.constant_(sprites.net.out.bias, 0.0)
    with torch.no_grad():
        sprites.net.out.bias[3] = 5.0  # alpha everywhere in the window: the whole window is pasted
    install_sprites(folder, sprites, provenance={"note": "test"})
    model = load_builtin(folder)
    assert model.sprites is not None and SPRITES_FILE in model.weights
    assert json.loads((folder / "model.json").read_text())["sprites"]["train"] == {"note": "test"}

    tl = plan(story, frames_per_chunk=8, first_chunk_frames=5)
    plain = [fc.frames for fc in builtin_generator(folder, memory="sink", sprites=False).stream(tl, seed=0)]
    drawn = [fc.frames for fc in builtin_generator(folder, memory="sink").stream(tl, seed=0)]
    over = builtin_generator(folder, memory="sink")
    over.sprites.config = dataclasses.replace(over.sprites.config, clear=False)  # pasted over the DiT's figure
    pasted = [fc.frames for fc in over.stream(tl, seed=0)]
    rgb, alpha = model.sprites.draw(torch.zeros(1, 32), "office")  # the window's colour does not depend on the name here
    assert alpha.all()
    # the tiny VAE makes 4x4 latents of 8x8 pixels; the prior's box for one character is latent
    # rows 1-3, columns 1-2 (grown by one latent pixel in training): the sprite stands on pixel
    # row (4 - 1) * 8 = 24, centred on column (1 + 3) * 8 / 2 = 16
    for a, b, c in zip(plain, drawn, pasted):
        mask = np.zeros(a.shape[1:3], bool)
        mask[24 - 16 : 24, 16 - 4 : 16 + 4] = True
        box = np.zeros(a.shape[1:3], bool)
        box[8:32, 8:24] = True  # the layout box, cleared before the sprite is pasted
        assert np.array_equal(a[:, ~(mask | box)], b[:, ~(mask | box)])
        assert np.array_equal(b[:, mask], c[:, mask]) and (b[:, mask] != a[:, mask]).any()
        assert np.array_equal(a[:, ~mask], c[:, ~mask])  # without clearing only the sprite's pixels change
        assert (b[:, box & ~mask] != a[:, box & ~mask]).any()  # with it, the rest of the box is filled in


def test_a_folder_naming_sprites_it_does_not_hold_is_one_clear_error(tmp_path):
    folder = _layout_folder(tmp_path, _story())
    install_sprites(folder, FigureSprites(TINY))
    (folder / SPRITES_FILE).unlink()
    with pytest.raises(ModelError, match="sprites.safetensors is missing"):
        load_builtin(folder)
    install_sprites(folder, FigureSprites(TINY))
    meta = json.loads((folder / "model.json").read_text())
    meta["sprites"]["width"] = 12
    (folder / "model.json").write_text(json.dumps(meta))
    with pytest.raises(ModelError, match="bad 'sprites' settings"):
        load_builtin(folder)


def test_crops_stand_on_the_window_bottom_and_the_decoder_resumes_to_the_same_weights(tmp_path):
    from longtake.train.sprites import SpriteTrainConfig, collect_crops, train_decoder

    cfg = SpriteTrainConfig(stories=2, steps=4, batch=4, checkpoint_seconds=0.0, log_every=2)
    sprite_cfg = SpriteConfig(height=64, width=40, hidden=16, channels=(8, 8, 8, 8))
    crops = collect_crops(cfg, sprite_cfg)
    x = crops["x"].numpy()
    assert len(x) > 0 and x.shape[1:] == (64, 40, 4)
    own = x[..., 3] > 127
    assert own[:, -1].any(axis=1).mean() > 0.9  # feet on the bottom row
    assert (crops["labels"] >= -1).all() and len(crops["prompts"]) == len(x)

    torch.manual_seed(0)
    a = FigureSprites(sprite_cfg)
    torch.manual_seed(0)
    b = FigureSprites(sprite_cfg)
    train_decoder(a, crops, cfg, tmp_path / "a.pt", log=lambda m: None)

    class Killed(Exception):
        pass

    def kill(message: str) -> None:
        raise Killed(message)

    with pytest.raises(Killed, match="step 2/4"):  # killed at step 2, before its checkpoint
        train_decoder(b, crops, cfg, tmp_path / "b.pt", log=kill)
    assert torch.load(tmp_path / "b.pt", weights_only=False)["step"] == 1
    torch.manual_seed(0)
    b = FigureSprites(sprite_cfg)  # a fresh process: everything comes from the checkpoint
    train_decoder(b, crops, cfg, tmp_path / "b.pt", log=lambda m: None)
    for (name, p), q in zip(a.net.state_dict().items(), b.net.state_dict().values()):
        assert torch.equal(p, q), name


def test_a_character_keeps_one_figure_across_shots_whatever_the_shot_says(tmp_path):
    """The figure is read from the character's own description, not from each shot's prompt:
    two shots that word Ann's action differently show the same pixels where she stands."""
    story = _story(("Ann waves", 0.75), ("Ann sits and drinks", 0.75))
    tl = plan(story, frames_per_chunk=8, first_chunk_frames=5)
    assert len({c.prompt for c in tl.chunks}) == 2
    folder = _layout_folder(tmp_path, story)
    torch.manual_seed(2)
    sprites = FigureSprites(TINY)
    with torch.no_grad():
        sprites.net.out.bias[3] = 5.0
        sprites.cast.weight.normal_(0, 3.0)  # attributes that follow the name embedding closely
    install_sprites(folder, sprites)
    gen = builtin_generator(folder, memory="sink")
    calls = []
    draw = gen.sprites.draw
    gen.sprites.draw = lambda names, kind, **kw: calls.append(names.clone()) or draw(names, kind, **kw)
    frames = [fc.frames for fc in gen.stream(tl, seed=0)]
    region = (slice(None), slice(8, 24), slice(12, 20))
    assert np.array_equal(frames[0][region][0], frames[-1][region][-1])
    assert len(calls) == 1  # one figure for Ann, drawn once, for both shots
    from longtake.model.layout import name_embeddings

    text, tokens, limit = gen.text_encoder, gen.text_encoder.tokenizer.tokens, gen.text_encoder.max_tokens
    sheet = "Ann (a girl with red hair and a blue shirt)."
    assert torch.allclose(calls[0], name_embeddings(text.encode([sheet])[0], [sheet], tokens, limit, 1)[0])
    # the check has teeth: each shot's own prompt gives Ann another name embedding
    shots = [name_embeddings(text.encode([c.prompt])[0], [c.prompt], tokens, limit, 1)[0] for c in (tl.chunks[0], tl.chunks[-1])]
    assert not torch.allclose(shots[0], shots[1])


def _away_and_back() -> Story:
    """Bob alone in the office (the sink shows only him), Ann and Bob, then Bob alone for 3 s
    (longer than the tiny DiT's window), then Ann alone again."""
    return Story.model_validate({
        "title": "looks", "fps": 16, "seed": 3, "size": {"width": 32, "height": 32},
        "characters": [{"id": "ann", "name": "Ann", "description": "a girl with red hair"},
                       {"id": "bob", "name": "Bob", "description": "a man with a blue shirt"}],
        "locations": [{"id": "office"}],
        "scenes": [{"location": "office", "shots": [
            {"prompt": "Bob drinks", "characters": ["bob"], "duration": 0.5},
            {"prompt": "Ann talks to Bob", "characters": ["ann", "bob"], "duration": 1.0},
            {"prompt": "Bob drinks", "characters": ["bob"], "duration": 3.0},
            {"prompt": "Ann waves", "characters": ["ann"], "duration": 1.0}]}],
    })


def _chunk(index, who):
    """A planned chunk of _away_and_back() showing only ``who`` ("ann" or "bob"), as chunk ``index``."""
    import dataclasses

    chunks = plan(_away_and_back(), frames_per_chunk=8, first_chunk_frames=5).chunks
    return dataclasses.replace(next(c for c in chunks if c.characters == (who,)), index=index)


def test_a_look_lasts_while_an_attended_frame_shows_the_character(tmp_path):
    """The rule of generate/sprite_layer.py on hand-made caches: a character's look is kept
    while the sink, the window or a memory frame in attention shows it, and a new one (from
    the seed of the chunk it comes back in) is drawn when none does."""
    from longtake.generate.sprite_layer import SpriteLayer, look_seed

    story = _away_and_back()
    folder = _layout_folder(tmp_path, story)
    torch.manual_seed(5)
    install_sprites(folder, FigureSprites(TINY))
    model = load_builtin(folder)
    layer = SpriteLayer(model.sprites, model.text_encoder, model.dit.config, 8)  # 2 latent frames per chunk
    prior = model.settings.layout_prior
    layer.start(plan(story, frames_per_chunk=8, first_chunk_frames=5), seed=7)
    frames = np.zeros((4, 32, 32, 3), np.uint8)
    layer(_chunk(0, "ann"), frames, (4, 4), prior, [], [0, 1])
    first = layer.looks["ann"]
    assert first == look_seed(7, 0)
    layer(_chunk(1, "bob"), frames, (4, 4), prior, [0, 1], [2, 3])
    layer(_chunk(2, "ann"), frames, (4, 4), prior, [0, 1, 2, 3], [4, 5])  # frames 0-1 (the sink) show her
    assert layer.looks["ann"] == first
    layer(_chunk(3, "bob"), frames, (4, 4), prior, [], [6, 7])  # a new sink: she is forgotten
    layer(_chunk(4, "ann"), frames, (4, 4), prior, [6, 7], [8, 9], [("office", ("office", "ann"))])
    assert layer.looks["ann"] == first  # a memory frame in attention shows her
    saved = layer.state_dict()
    layer(_chunk(5, "bob"), frames, (4, 4), prior, [], [10, 11])
    layer(_chunk(6, "ann"), frames, (4, 4), prior, [10, 11], [12, 13])
    assert layer.looks["ann"] == look_seed(7, 6) != first
    assert layer.new_looks == 5  # Ann twice; Bob thrice (chunks 3 and 5 start new sinks with nothing showing him)
    layer.start(plan(story, frames_per_chunk=8, first_chunk_frames=5), seed=7, state={"sprites": saved})
    assert layer.looks["ann"] == first and layer.state_dict() == saved


def test_a_look_fills_what_the_description_leaves_open_and_keeps_what_it_says():
    from longtake.eval.probe_data import ATTRIBUTES
    from longtake.model.sprites import LOOK_DIM, look_vector, resolve_look

    names = list(ATTRIBUTES)
    said = torch.full((9,), -1)
    said[names.index("hair_colour")] = ATTRIBUTES["hair_colour"].index("red")
    said[names.index("glasses")] = 0
    said[names.index("hat")] = 0
    looks = [resolve_look(said, seed, "ann") for seed in range(12)]
    assert all(int(lab[names.index("hair_colour")]) == int(said[names.index("hair_colour")]) for lab, _ in looks)
    assert all(int(lab[names.index("body")]) >= 0 and int(lab[names.index("top_colour")]) >= 0 for lab, _ in looks)
    assert len({int(lab[names.index("top_colour")]) for lab, _ in looks}) > 1  # left open: drawn per seed
    assert len({h.shoe_colour for _, h in looks}) > 1
    again = resolve_look(said, 3, "ann")
    assert torch.equal(again[0], looks[3][0]) and again[1] == looks[3][1]
    assert look_vector(None).shape == (LOOK_DIM,) and look_vector(None)[-1] == 0 and look_vector(looks[0][1])[-1] == 1


@pytest.mark.parametrize(("memory", "new_looks"), [("sink", 3), ("entity", 2), ("nam", 2), (MemoryConfig(mode="nam", nam_lookahead=0.0), 3),
                                                  (MemoryConfig(mode="nam", nam_gate=1.0), 2)],
                         ids=["sink", "entity", "nam", "nam-no-lookahead", "nam-held-not-attended"])
def test_entity_memory_brings_a_returning_characters_look_back_and_the_sink_does_not(tmp_path, memory, new_looks):
    """Ann leaves for longer than the window: with the sink only she returns with a new look;
    entity memory keeps a frame of her, so her look comes back (Bob's look is drawn once).
    NAM keeps her frame because the script brings her back within its lookahead; ranked by
    the current prompt alone ("Bob drinks"), the bank lets it go. With a gate no frame passes
    (1.0: only the very same prompt), her frame stays in the bank but never in attention;
    her look is kept all the same, as long as the bank holds it (``look_tags``)."""
    story = _away_and_back()
    folder = _layout_folder(tmp_path, story)
    torch.manual_seed(6)
    install_sprites(folder, FigureSprites(TINY))
    tl = plan(story, frames_per_chunk=8, first_chunk_frames=5)
    gen = builtin_generator(folder, memory=memory)
    seeds = []
    for fc in gen.stream(tl, seed=2):
        if "ann" in fc.chunk.characters:
            seeds.append(gen._sprite_layer.looks["ann"])
    assert gen._sprite_layer.new_looks == new_looks
    assert len(set(seeds)) == new_looks - 1


def test_a_resumed_render_with_sprites_equals_an_uninterrupted_one(tmp_path):
    """The looks and which frame shows whom are in the generator state, so a render resumed
    after chunk 2 draws the figures of the chunks after it exactly as a straight render does
    (Ann's look, drawn before the interruption, is kept after it)."""
    from longtake.pipeline import render_story
    from longtake.video import sha256_file

    story = _away_and_back()
    folder = _layout_folder(tmp_path, story)
    torch.manual_seed(4)
    install_sprites(folder, FigureSprites(TINY))
    tl = plan(story, frames_per_chunk=8, first_chunk_frames=5)

    straight = render_story(story, tl, builtin_generator(folder), tmp_path / "a.mp4", seed=1)
    out = tmp_path / "b.mp4"
    with pytest.raises(Interrupted):
        render_story(story, tl, StopAfter(builtin_generator(folder), 3), out, seed=1, checkpoint_every=2)
    render_story(story, tl, builtin_generator(folder), out, seed=1, resume=True)
    assert sha256_file(straight.video) == sha256_file(out)
    manifest = json.loads(straight.manifest.read_text())
    assert "sprites.safetensors" in json.dumps(manifest)  # the layer's weights are named in the manifest


def test_train_sprites_command_installs_a_layer_that_loads_and_refuses_unknown_settings(tmp_path):
    from typer.testing import CliRunner

    from longtake.cli import app

    folder = _layout_folder(tmp_path, _story())
    runner = CliRunner()
    bad = runner.invoke(app, ["train-sprites", "--model", str(folder), "--out", str(tmp_path / "run"), "--set", "bogus=1"])
    assert bad.exit_code == 2 and "bogus" in bad.output
    args = ["train-sprites", "--model", str(folder), "--out", str(tmp_path / "run"), "--install",
            "--set", "stories=1", "--set", "steps=2", "--set", "cast_epochs=1", "--set", "batch=4"]
    res = runner.invoke(app, args)
    assert res.exit_code == 0, res.output
    model = load_builtin(folder)
    assert model.sprites is not None and json.loads((folder / "model.json").read_text())["sprites"]["train"]["decoder"]["steps"] == 2
    first = json.loads((folder / "model.json").read_text())["sprites"]["train"]["decoder"]
    # a run begun before a setting existed resumes under its default, and under no other value;
    # the finished run installs again with the losses it ended with
    held = tmp_path / "run" / "settings.json"
    old = json.loads(held.read_text())
    del old["train"]["detail"]
    held.write_text(json.dumps(old))
    again = runner.invoke(app, args)
    assert again.exit_code == 0, again.output
    second = json.loads((folder / "model.json").read_text())["sprites"]["train"]["decoder"]
    assert second["loss_rgb"] == first["loss_rgb"] and isinstance(first["loss_rgb"], float)
    held.write_text(json.dumps(old))
    other = runner.invoke(app, [*args, "--set", "detail=2"])
    assert other.exit_code == 2 and "other settings" in other.output
    # a part weight on crops collected without part masks collects them again, with the masks
    parted = tmp_path / "parted"
    parted.mkdir()
    shutil.copy(tmp_path / "run" / "crops.pt", parted / "crops.pt")
    assert "parts" not in torch.load(parted / "crops.pt", weights_only=False)
    res = runner.invoke(app, [*args[:4], str(parted), *args[5:], "--set", "items=3"])
    assert res.exit_code == 0, res.output
    crops = torch.load(parted / "crops.pt", weights_only=False)
    assert crops["parts"].shape == crops["x"].shape[:3] and bool((crops["parts"] > 0).any())
    # --set channels=[...] trains and installs a decoder of that width, which loads as such;
    # widths the decoder cannot have are one line and exit 2
    wide = tmp_path / "wide"
    wide.mkdir()
    shutil.copy(tmp_path / "run" / "crops.pt", wide / "crops.pt")
    bad = runner.invoke(app, [*args[:4], str(wide), *args[5:], "--set", "channels=[12,16,8,8]"])
    assert bad.exit_code == 2 and "channels must be 4 multiples of 8" in bad.output
    res = runner.invoke(app, [*args[:4], str(wide), *args[5:], "--set", "channels=[32,24,16,16]"])
    assert res.exit_code == 0, res.output
    assert json.loads((folder / "model.json").read_text())["sprites"]["channels"] == [32, 24, 16, 16]
    loaded = load_builtin(folder).sprites
    assert loaded.config.channels == (32, 24, 16, 16) and loaded.net.out.in_channels == 16


def test_a_memory_file_carries_the_looks_into_the_next_episode(tmp_path):
    """--memory-out / --memory-from: episode 2 draws Ann with the look she ended episode 1 with,
    because an imported frame of her is in attention when she enters; without the file she
    gets the look of episode 2's own seed."""
    from longtake.generate.sprite_layer import look_seed
    from longtake.memory_files import load_memory_file, save_memory_file

    story = _away_and_back()
    folder = _layout_folder(tmp_path, story)
    torch.manual_seed(7)
    install_sprites(folder, FigureSprites(TINY))
    ep1 = builtin_generator(folder, memory="entity")
    for _ in ep1.stream(plan(story, frames_per_chunk=8, first_chunk_frames=5), seed=2):
        pass
    path = save_memory_file(ep1, story, tmp_path / "ep1.memory")
    episode2 = story.model_copy(update={"title": "episode 2"})
    tl2 = plan(episode2, frames_per_chunk=8, first_chunk_frames=5)
    for preload, want in ((True, ep1._sprite_layer.looks["ann"]), (False, None)):
        gen = builtin_generator(folder, memory="entity")
        if preload:
            gen.preload_memory(*load_memory_file(path, episode2, gen))
        for fc in gen.stream(tl2, seed=9):
            if "ann" in fc.chunk.characters:
                got = gen._sprite_layer.looks["ann"]
                break
        assert got == (want if preload else look_seed(9, fc.chunk.index)) and (preload or got != ep1._sprite_layer.looks["ann"])


def test_the_shift_tolerant_loss_forgives_a_figure_one_pixel_off_and_nothing_more():
    from longtake.train.sprites import figure_loss

    torch.manual_seed(0)
    rgb = torch.rand(2, 3, 16, 8) * 2 - 1
    alpha = torch.zeros(2, 16, 8)
    alpha[:, 4:12, 2:6] = 1.0
    moved, moved_alpha = torch.roll(rgb, (0, 1), (2, 3)), torch.roll(alpha, (0, 1), (1, 2))
    logits = (moved_alpha * 2 - 1) * 20.0  # a sure alpha, one pixel to the right
    plain = figure_loss(moved, logits, rgb, alpha, shift=0)
    tolerant = figure_loss(moved, logits, rgb, alpha, shift=1)
    assert plain[0] > 0.1 and plain[1] > 0.5
    assert tolerant[0] < 1e-6 and tolerant[1] < 1e-6
    far_rgb, far_alpha = torch.roll(rgb, (0, 2), (2, 3)), torch.roll(alpha, (0, 2), (1, 2))
    far = figure_loss(far_rgb, (far_alpha * 2 - 1) * 20.0, rgb, alpha, shift=1)
    assert far[0] > 0.01 and far[1] > 0.1  # two pixels off is still an error


def test_the_detail_weight_raises_a_small_odd_spot_over_a_plain_shirt_and_its_edges():
    from longtake.train.sprites import contrast_weight, figure_loss

    rgb = torch.full((1, 3, 16, 8), -1.0)
    rgb[:, 0] = 0.6  # a plain red shirt
    alpha = torch.zeros(1, 16, 8)
    alpha[:, 2:14, 1:7] = 1.0
    rgb[0, :, 7, 4] = torch.tensor([1.0, 1.0, 1.0])  # a one-pixel white badge
    w = contrast_weight(rgb, alpha, 8.0)
    assert torch.allclose(w[alpha == 0], torch.ones(1))  # outside the figure: weight 1
    assert w[0, 7, 4] > 4.0  # the badge
    assert torch.allclose(w[0, 3:6, 2:6], torch.ones(3, 4))  # shirt away from the badge: plain
    assert w[0, 2, 1] == 1.0  # the figure's own edge: empty pixels around it are not surroundings
    missed = rgb.clone()
    missed[0, :, 7, 4] = torch.tensor([0.6, -1.0, -1.0])  # a figure drawn without the badge
    logits = (alpha * 2 - 1) * 20.0
    plain = figure_loss(missed, logits, rgb, alpha, shift=0)[0]
    weighted = figure_loss(missed, logits, rgb, alpha, shift=0, detail=8.0)[0]
    assert weighted > 3 * plain
    assert figure_loss(rgb, logits, rgb, alpha, shift=1, detail=8.0)[0] < 1e-6  # right is still right


def test_part_masks_mark_the_items_and_the_skin_inside_the_figure_and_weigh_them():
    from longtake.model.sprites import LOOK_CLASSES
    from longtake.train.config import TrainError
    from longtake.train.sprites import SpriteTrainConfig, collect_crops, figure_loss, part_weight

    cfg = SpriteTrainConfig(stories=4)
    plain = collect_crops(cfg, SpriteConfig())
    crops = collect_crops(cfg, SpriteConfig(), parts=True)
    assert "parts" not in plain and torch.equal(plain["x"], crops["x"])  # the same crops, with their parts
    own = crops["x"][..., 3] > 127
    parts = crops["parts"]
    assert parts.shape == own.shape and not ((parts > 0) & ~own).any()
    items, skin = (parts & 1).sum((1, 2)), ((parts >> 1) & 1).sum((1, 2))
    assert (items > 0).all()  # the watch drawn the other way changes every figure's wrist
    assert (skin > 10).all() and (skin < own.sum((1, 2)) // 3).all()  # a face and hands, not the body
    # a figure with a badge has more item pixels than one with neither badge nor bag (a watch alone)
    start, none = 0, {}
    for name, classes in LOOK_CLASSES.items():
        if name in ("badge_shape", "bag"):
            none[name] = crops["looks"][:, start + classes.index("none")] == 1
        start += len(classes) + 1
    badge, watch_only = ~none["badge_shape"], none["badge_shape"] & none["bag"]
    assert badge.any() and watch_only.any()
    assert items[badge].float().mean() > 2 * items[watch_only].float().mean()
    with pytest.raises(TrainError, match="items and skin must be >= 0"):
        SpriteTrainConfig(items=-1.0)
    w = part_weight(torch.tensor([[0, 1, 2, 3]], dtype=torch.uint8), 4.0, 1.0)
    assert w.tolist() == [[1.0, 5.0, 2.0, 6.0]]
    rgb = torch.zeros(1, 3, 4, 4)
    alpha = torch.ones(1, 4, 4)
    missed = rgb.clone()
    missed[0, :, 1, 1] = 1.0  # one item pixel drawn wrong
    p = torch.zeros(1, 4, 4, dtype=torch.uint8)
    p[0, 1, 1] = 1
    logits = torch.full((1, 4, 4), 20.0)
    unweighted = figure_loss(missed, logits, rgb, alpha)[0]
    weighted = figure_loss(missed, logits, rgb, alpha, weight=part_weight(p, 4.0, 0.0))[0]
    assert torch.isclose(weighted, unweighted * 16 * 5 / (15 + 5))  # 5x the error over a total weight of 20
    shifted = figure_loss(missed, logits, rgb, alpha, shift=1, weight=part_weight(p, 4.0, 0.0))[0]
    assert shifted <= weighted
