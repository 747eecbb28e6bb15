"""The built-in model end to end on a tiny random model folder: folder format, loading errors,
registry and CLI, generator state files, resumable renders."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest
import torch
from typer.testing import CliRunner

from longtake.cli import app
from longtake.generate import CausalGenerator, GenerateError, builtin_generator
from longtake.sample.schedules import flow_shift
from longtake.render_state import load_state, save_state
from longtake.model import CausalWanDiT, ModelError, get_preset
from longtake.model import builtin as builtin_mod
from longtake.model.builtin import FILES, BuiltinWeightsMissing, load_builtin, save_builtin, weights_digest, weights_present
from longtake.model.text_builtin import BuiltinTextConfig, BuiltinTextEncoder
from longtake.model.tokenizer import Tokenizer
from longtake.model.vae_builtin import BuiltinVAE, BuiltinVAEConfig
from longtake.pipeline import Pipeline, RenderError, load_generator, plan_for, render_story
from longtake.render_resume import partial_folder
from longtake.sample.schedules import self_forcing_sigmas
from longtake.script import Story
from longtake.video import read_video, sha256_file

from interrupt import Interrupted, StopAfter  # tests/interrupt.py

SIZE = 32  # VAE spatial factor 8 -> 4x4 latents; DiT patch 2x2 -> 4 tokens per latent frame
PROMPTS = ["a red ball rolls", "a blue cube spins", "the red ball stops"]
runner = CliRunner()


def make_story(seconds: tuple[float, ...] = (1.0, 1.0, 0.75), title: str = "tiny") -> Story:
    shots = [{"prompt": PROMPTS[i % len(PROMPTS)], "duration": d} for i, d in enumerate(seconds)]
    return Story.model_validate(
        {"title": title, "fps": 16, "seed": 4, "size": {"width": SIZE, "height": SIZE}, "locations": [{"id": "room"}],
         "scenes": [{"location": "room", "shots": shots}]}
    )


def tiny_parts():
    torch.manual_seed(0)
    dit = CausalWanDiT(get_preset("tiny")).eval()  # 4 latent channels, text_dim 32, 2 latent frames per chunk
    vae = BuiltinVAE(BuiltinVAEConfig(latent_channels=4, channels=(8, 8, 8, 8), enc_res_blocks=0, dec_res_blocks=(0, 0, 0, 0), norm_groups=4)).eval()
    tok = Tokenizer.build([*PROMPTS, "room"])
    text = BuiltinTextEncoder(BuiltinTextConfig(vocab_size=len(tok), dim=32, num_layers=1, num_heads=2, max_tokens=16), tok).eval()
    return dit, vae, text


@pytest.fixture(scope="module")
def folder(tmp_path_factory) -> Path:
    dit, vae, text = tiny_parts()
    out = tmp_path_factory.mktemp("models") / "tiny"
    save_builtin(out, dit, vae, text, sigmas=self_forcing_sigmas(2), extra={"note": "random weights for tests"})
    return out


@pytest.fixture
def no_shipped(tmp_path, monkeypatch) -> Path:
    """Pretend the shipped folder is empty (as it is until the trainer commits weights)."""
    empty = tmp_path / "shipped"
    empty.mkdir()
    monkeypatch.setattr(builtin_mod, "shipped_folder", lambda: empty)
    return empty


# ----------------------------------------------------------------------------- folder format


def test_save_writes_the_format(folder):
    assert weights_present(folder)
    meta = json.loads((folder / "model.json").read_text())
    assert meta["format"] == 1 and meta["sampler"] == "few_step" and meta["guidance_scale"] == 1.0
    assert meta["plan"] == {"frames_per_chunk": 8, "first_chunk_frames": 5}  # 2 latent frames x 4, first 1 + 4
    assert meta["sigmas"][-1] == 0.0 and len(meta["sigmas"]) == 3
    assert meta["dit"]["num_layers"] == 2 and meta["train"] == {"note": "random weights for tests"}
    from safetensors import safe_open

    with safe_open(str(folder / "dit.safetensors"), "pt") as fh:
        assert {fh.get_tensor(k).dtype for k in fh.keys()} == {torch.float16}
    assert not [p for p in folder.parent.iterdir() if p.name.startswith(".")]  # no temp folders left


def test_load_round_trip(folder):
    dit, vae, text = tiny_parts()
    m = load_builtin(folder)
    assert m.dit.config == dit.config and m.settings.first_chunk_frames == 5 and m.settings.frames_per_chunk == 8
    for name, p in m.dit.state_dict().items():
        assert p.dtype == torch.float32
        torch.testing.assert_close(p, dit.state_dict()[name].half().float(), rtol=0, atol=0)
    for a, b in zip(m.vae.state_dict().values(), vae.state_dict().values(), strict=True):
        assert torch.equal(a, b)
    for a, b in zip(m.text_encoder.state_dict().values(), text.state_dict().values(), strict=True):
        assert torch.equal(a, b)
    assert sorted(m.weights) == sorted(FILES) and m.weights["dit.safetensors"] == sha256_file(folder / "dit.safetensors")
    assert m.digest == weights_digest(m.weights) and len(m.digest) == 64


def test_save_replaces_a_folder_atomically(tmp_path):
    dit, vae, text = tiny_parts()
    save_builtin(tmp_path / "m", dit, vae, text, sigmas=[1.0, 0.0], extra={"v": 1})
    save_builtin(tmp_path / "m", dit, vae, text, sigmas=[1.0, 0.5, 0.0], extra={"v": 2})
    assert json.loads((tmp_path / "m" / "model.json").read_text())["train"] == {"v": 2}
    assert sorted(p.name for p in tmp_path.iterdir()) == ["m"]


def _copy(folder: Path, dst: Path) -> Path:
    import shutil

    shutil.copytree(folder, dst)
    return dst


def test_load_errors_say_what_and_where(folder, tmp_path):
    with pytest.raises(ModelError, match="not a folder"):
        load_builtin(tmp_path / "nope")
    f = _copy(folder, tmp_path / "a")
    (f / "vae.safetensors").unlink()
    with pytest.raises(ModelError, match="vae.safetensors missing"):
        load_builtin(f)
    f = _copy(folder, tmp_path / "b")
    (f / "model.json").write_text("{not json")
    with pytest.raises(ModelError, match=r"model.json: not valid JSON"):
        load_builtin(f)
    f = _copy(folder, tmp_path / "c")
    meta = json.loads((f / "model.json").read_text())
    (f / "model.json").write_text(json.dumps({**meta, "format": 7}))
    with pytest.raises(ModelError, match="format 7"):
        load_builtin(f)
    (f / "model.json").write_text(json.dumps({**meta, "dit": {**meta["dit"], "ffn_dim": 48}}))
    with pytest.raises(ModelError, match=r"ffn.*has shape .*expects"):
        load_builtin(f)
    (f / "model.json").write_text(json.dumps({**meta, "dit": {**meta["dit"], "num_layers": 3}}))
    with pytest.raises(ModelError, match=r"missing keys \['blocks.2"):
        load_builtin(f)
    (f / "model.json").write_text(json.dumps({**meta, "dit": {**meta["dit"], "no_such_field": 1}}))
    with pytest.raises(ModelError, match="no_such_field"):
        load_builtin(f)
    (f / "model.json").write_text(json.dumps({**meta, "plan": {"frames_per_chunk": 12, "first_chunk_frames": 9}}))
    with pytest.raises(ModelError, match="plan"):
        load_builtin(f)


def test_missing_shipped_weights_is_one_actionable_line(no_shipped):
    with pytest.raises(BuiltinWeightsMissing) as info:
        load_builtin()
    msg = str(info.value)
    assert "\n" not in msg and "--model storyworld" in msg and "longtake train" in msg


@pytest.mark.skipif(not weights_present(), reason="the shipped built-in weights are not committed yet")
def test_shipped_weights_load_and_fit_the_cap():
    m = load_builtin()
    assert set(FILES) <= set(m.weights)
    assert sum((m.folder / f).stat().st_size for f in m.weights) <= builtin_mod.MAX_SHIPPED_BYTES  # the sprites count too
    assert (m.settings.frames_per_chunk, m.settings.first_chunk_frames) == (12, 9)


# ----------------------------------------------------------------------------- registry, CLI, API


def test_registry_default_is_builtin_and_plans_with_its_chunks(folder):
    story = make_story()
    gen = load_generator("default", story=story, weights=folder, device=None)
    assert isinstance(gen, CausalGenerator) and gen.info().name == "builtin"
    tl = plan_for(story, gen)
    assert (tl.first_chunk_frames, tl.frames_per_chunk) == (5, 8)
    assert tl.chunks[0].num_frames == 5 and all(c.num_frames == 8 for c in tl.chunks[1:])
    with pytest.raises(RenderError, match="storyworld' takes no options"):
        load_generator("storyworld", story=story, weights=folder)


def test_builtin_generator_overrides(folder):
    gen = builtin_generator(folder, sampler="euler", steps=3)
    assert gen.sampler == "euler" and len(gen.sigmas) == 4
    # euler takes evenly spaced sigmas, shifted by 5 unless told otherwise
    assert torch.allclose(gen.sigmas, flow_shift(torch.tensor([1.0, 2 / 3, 1 / 3, 0.0]), 5.0))
    gen = builtin_generator(folder, sampler="euler", steps=4, shift=1.0)
    assert torch.allclose(gen.sigmas, torch.tensor([1.0, 0.75, 0.5, 0.25, 0.0]))
    # few_step keeps Self-Forcing's timesteps (never ends on a level below the last one)
    gen = builtin_generator(folder, sampler="few_step", steps=4, shift=1.0)
    assert torch.allclose(gen.sigmas, torch.tensor([1.0, 0.75, 0.5, 0.25, 0.0]))
    # shift alone keeps the stored number of steps
    stored = builtin_generator(folder)
    assert len(builtin_generator(folder, shift=2.0).sigmas) == len(stored.sigmas)
    with pytest.raises(GenerateError, match="steps"):
        builtin_generator(folder, steps=0)
    with pytest.raises(GenerateError, match="shift"):
        builtin_generator(folder, shift=0.0)


def test_pipeline_from_pretrained_builtin(folder, tmp_path):
    pipe = Pipeline.from_pretrained("builtin", weights=folder)
    story = make_story((0.5, 0.5))
    a = pipe(story, seed=3)
    b = pipe(story, seed=3)
    assert a.frames.shape == (a.timeline.num_frames, SIZE, SIZE, 3) and np.array_equal(a.frames, b.frames)
    res = pipe(story, seed=3, output=tmp_path / "v.mp4").result
    m = json.loads(res.manifest.read_text())
    assert m["generator"]["name"] == "builtin" and m["generator"]["weights"] == load_builtin(folder).weights
    assert m["timeline"]["first_chunk_frames"] == 5


def write_story(tmp_path: Path, story: Story) -> Path:
    p = tmp_path / "story.json"
    p.write_text(story.model_dump_json())
    return p


def test_cli_render_with_weights_and_manifest(folder, tmp_path):
    path = write_story(tmp_path, make_story())
    r = runner.invoke(app, ["render", str(path), "-o", str(tmp_path / "out" / "v.mp4"), "--weights", str(folder)])
    assert r.exit_code == 0, r.output
    m = json.loads((tmp_path / "out" / "v.json").read_text())
    assert m["generator"]["weights"]["dit.safetensors"] == sha256_file(folder / "dit.safetensors")
    assert m["video"]["num_frames"] == m["timeline"]["frames"]


def test_cli_render_without_weights_fails_in_one_line(no_shipped, tmp_path):
    path = write_story(tmp_path, make_story())
    r = runner.invoke(app, ["render", str(path), "-o", str(tmp_path / "v.mp4")])
    assert r.exit_code == 2
    lines = [ln for ln in r.output.splitlines() if ln.strip()]
    assert len(lines) == 1 and "--model storyworld" in lines[0] and "longtake train" in lines[0], r.output
    assert not (tmp_path / "v.mp4").exists()


def test_cli_models_lists_builtin_and_its_weights(no_shipped):
    r = runner.invoke(app, ["models"], env={"COLUMNS": "250"})
    assert r.exit_code == 0, r.output
    assert "builtin (default)" in r.output and "not shipped yet" in r.output and "storyworld" in r.output


# ----------------------------------------------------------------------------- state files


@pytest.mark.parametrize("k", [1, 2])  # chunk 2 is a cut with a prompt switch
def test_state_file_resume_gives_identical_frames(folder, tmp_path, k):
    story = make_story()
    gen = builtin_generator(folder)
    tl = plan_for(story, gen)
    full = [fc.frames for fc in gen.stream(tl, seed=9)]
    it = gen.stream(tl, seed=9)
    for _ in range(k):
        next(it)
    path = save_state(gen.state_dict(), tmp_path / "state.safetensors")
    it.close()
    state = load_state(path)
    assert state["next_chunk"] == k and isinstance(state["vae"], dict)
    fresh = builtin_generator(folder)  # a new generator object, as in a new process
    rest = [fc.frames for fc in fresh.stream(tl, seed=9, start_chunk=k, state=state)]
    assert len(rest) == len(tl) - k
    for x, y in zip(full[k:], rest, strict=True):
        np.testing.assert_array_equal(x, y)


def test_state_files_hold_no_pickle(folder, tmp_path):
    gen = builtin_generator(folder)
    tl = plan_for(make_story(), gen)
    next(gen.stream(tl, seed=0))
    path = save_state(gen.state_dict(), tmp_path / "s.safetensors")
    from safetensors import safe_open

    with safe_open(str(path), "pt") as fh:
        tree = json.loads(fh.metadata()["state"])
    assert tree["next_chunk"] == 1 and tree["vae"]["frames_done"] == 2 and "__tensor__" in json.dumps(tree["cache"])
    with pytest.raises(GenerateError, match="object"):
        save_state({"x": object()}, tmp_path / "bad.safetensors")
    (tmp_path / "junk.safetensors").write_bytes(b"not a state file at all")
    with pytest.raises(GenerateError, match="not a generator state"):
        load_state(tmp_path / "junk.safetensors")


def test_state_round_trip_keeps_structure(tmp_path):
    state = {"a": [torch.arange(3), None, (1, "x", torch.ones(2, 2))], "b": {"c": 1.5, "d": True}, "e": []}
    t = torch.zeros(4, 4)
    state["views"] = [t[:2], t[2:]]  # views of one buffer (safetensors refuses shared memory)
    back = load_state(save_state(state, tmp_path / "s.safetensors"))
    assert back["b"] == {"c": 1.5, "d": True} and back["e"] == [] and back["a"][1] is None
    assert isinstance(back["a"][2], tuple) and back["a"][2][1] == "x" and torch.equal(back["a"][2][2], torch.ones(2, 2))
    assert torch.equal(back["views"][1], t[2:])


# ----------------------------------------------------------------------------- resumable renders




def test_interrupted_then_resumed_render_equals_uninterrupted(folder, tmp_path):
    story = make_story((1.0, 1.0, 1.0))
    gen = builtin_generator(folder)
    tl = plan_for(story, gen)
    straight = render_story(story, tl, gen, tmp_path / "a.mp4", seed=2)
    out = tmp_path / "b.mp4"
    with pytest.raises(Interrupted):
        render_story(story, tl, StopAfter(builtin_generator(folder), 4), out, seed=2, checkpoint_every=3)
    part = partial_folder(out)
    progress = json.loads((part / "progress.json").read_text())
    assert progress["next_chunk"] == 3 and len(progress["segments"]) == 1 and not out.exists()
    with pytest.raises(RenderError, match="--resume"):
        render_story(story, tl, builtin_generator(folder), out, seed=2, checkpoint_every=3)
    with pytest.raises(RenderError, match="the seed"):
        render_story(story, tl, builtin_generator(folder), out, seed=5, resume=True)
    res = render_story(story, tl, builtin_generator(folder), out, seed=2, resume=True)
    assert not part.exists() and res.frames == tl.num_frames and res.frames_made == tl.num_frames - progress["frames"]
    np.testing.assert_array_equal(read_video(straight.video), read_video(out))
    assert sha256_file(straight.video) == sha256_file(out)
    assert json.loads(res.manifest.read_text())["extra"]["render"]["resumed_from_chunk"] == 3


def test_cli_checkpoint_and_resume(folder, tmp_path):
    path = write_story(tmp_path, make_story((1.0, 1.0)))
    base = ["render", str(path), "--weights", str(folder)]
    r = runner.invoke(app, [*base, "-o", str(tmp_path / "a.mp4")])
    assert r.exit_code == 0, r.output
    r = runner.invoke(app, [*base, "-o", str(tmp_path / "b.mp4"), "--checkpoint-every", "2"])
    assert r.exit_code == 0, r.output
    assert not partial_folder(tmp_path / "b.mp4").exists()
    r = runner.invoke(app, [*base, "-o", str(tmp_path / "c.mp4"), "--resume"])  # nothing to resume: starts afresh
    assert r.exit_code == 0, r.output
    a = read_video(tmp_path / "a.mp4")
    np.testing.assert_array_equal(a, read_video(tmp_path / "b.mp4"))
    np.testing.assert_array_equal(a, read_video(tmp_path / "c.mp4"))


def test_storyworld_renders_resume_too(tmp_path, example_path):
    from longtake.script import load_story

    story = load_story(example_path)
    story = story.model_copy(update={"scenes": story.scenes[:1]})
    gen = load_generator("storyworld", story=story)
    tl = plan_for(story, gen)
    out = tmp_path / "w.mp4"
    with pytest.raises(Interrupted):
        render_story(story, tl, StopAfter(gen, 2), out, checkpoint_every=1)
    render_story(story, tl, load_generator("storyworld", story=story), out, resume=True)
    straight = render_story(story, tl, load_generator("storyworld", story=story), tmp_path / "s.mp4")
    assert sha256_file(straight.video) == sha256_file(out)


def test_a_layout_model_needs_its_prior_to_save_and_load(tmp_path):
    """A DiT with a layout input is saved with its layout prior and refused without one, on
    save and on load, with a message that names model.json's 'layout_prior'."""
    from longtake.model.layout import LayoutPrior

    _, vae, text = tiny_parts()
    dit = CausalWanDiT(get_preset("tiny").replace(prediction="sample", layout_channels=2)).eval()
    with pytest.raises(ModelError, match="layout_prior"):
        save_builtin(tmp_path / "none", dit, vae, text, sigmas=[1.0, 0.0])
    prior = LayoutPrior({1: ((0.5, 0.4, 0.9, 0.6),)})
    out = save_builtin(tmp_path / "m", dit, vae, text, sigmas=[1.0, 0.0], layout_prior=prior)
    assert load_builtin(out).settings.layout_prior == prior
    meta = json.loads((out / "model.json").read_text())
    del meta["layout_prior"]
    (out / "model.json").write_text(json.dumps(meta))
    with pytest.raises(ModelError, match="layout_prior.*missing"):
        load_builtin(out)
