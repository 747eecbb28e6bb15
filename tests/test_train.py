"""Training: the smoke preset runs every stage, exports a loadable model, and resumes exactly."""

from __future__ import annotations

import json

import numpy as np
import pytest
import torch

from longtake.train.config import TrainError, get_train_preset
from longtake.train.runner import train


class Interrupt(Exception):
    pass


@pytest.fixture(scope="module")
def smoke_run(tmp_path_factory):
    run = tmp_path_factory.mktemp("smoke")
    model = train(run, get_train_preset("smoke"))
    return run, model


def test_smoke_run_exports_a_model_folder(smoke_run):
    from longtake.model.builtin import load_builtin

    run, model = smoke_run
    for name in ("model.json", "dit.safetensors", "vae.safetensors"):
        assert (model / name).is_file()
    assert (run / "plots" / "vae_loss.png").stat().st_size > 1000
    assert (run / "plots" / "dit_loss.png").stat().st_size > 1000
    timing = json.loads((run / "timing.json").read_text())
    assert {"vae_data", "vae", "latents", "dit"} <= set(timing)
    loaded = load_builtin(model)
    assert loaded.dit.config.num_layers == 1
    meta = json.loads((model / "model.json").read_text())
    assert meta["train"]["config"]["forcing_steps"] == get_train_preset("smoke").forcing_steps


def test_smoke_latents_hold_character_maps_where_the_characters_are(smoke_run):
    """The first latent frame of a story encodes pixel frame 0 alone: its character map is
    non-zero only on latent pixels that the ground-truth boxes of frame 0 touch, on some
    pixel of every box, and sums to the frame's count of character pixels."""
    from safetensors.torch import load_file

    from longtake.plan import plan
    from longtake.train.data import CHARS_SUFFIX, latent_story
    from longtake.world.renderer import WorldRenderer

    run, _ = smoke_run
    cfg = get_train_preset("smoke")
    t = load_file(str(run / "data" / "latents" / "latents-00000.safetensors"))
    found = 0
    for j in range(cfg.dit_stories):
        chars = t[f"story{j:06d}{CHARS_SUFFIX}"]
        assert chars.shape[0] == t[f"story{j:06d}"].shape[0] and chars.shape[1:] == t[f"story{j:06d}"].shape[2:]
        story = latent_story(cfg, j)
        chunk = plan(story, frames_per_chunk=12, first_chunk_frames=9).chunks[0]
        _, truths = WorldRenderer(story).render_chunk(chunk, masks=True)
        factor = cfg.size // chars.shape[1]
        touched = torch.zeros(chars.shape[1:], dtype=torch.bool)
        for c in truths[0].characters:
            if c.bbox:
                x0, y0, x1, y1 = c.bbox
                box = (slice(y0 // factor, (y1 - 1) // factor + 1), slice(x0 // factor, (x1 - 1) // factor + 1))
                assert (chars[0][box] > 0).any()
                touched[box] = True
                found += 1
        assert not (chars[0] > 0)[~touched].any()
        pixels = float(chars[0].float().sum() / 255 * factor**2)
        assert abs(pixels - int((truths[0].mask > 0).sum())) <= 0.01 * factor**2 * chars.shape[1] * chars.shape[2]
    assert found > 0


def test_who_map_names_the_character_with_the_most_pixels_of_each_cell():
    from longtake.train.data import who_map

    lab = np.zeros((8, 4, 4), dtype=np.uint8)  # 8 pixel frames -> 2 latent frames of 4 (t=4), 2x2 cells
    lab[0:4, 0, 0] = 1  # cell (0, 0) of latent frame 0: label 1 on 4 pixels,
    lab[0:4, 0:2, 1] = 2  # label 2 on 8: label 2 wins
    lab[5, 2, 2] = 3  # one pixel of frame 1, cell (1, 1)
    who = who_map(lab, temporal=4, spatial=2, first_chunk=False)
    assert who.shape == (2, 2, 2) and who.dtype == torch.uint8
    assert who[0].tolist() == [[2, 0], [0, 0]]
    assert who[1].tolist() == [[0, 0], [0, 3]]
    # the first chunk's first latent frame encodes pixel frame 0 alone
    first = who_map(lab[:5], temporal=4, spatial=2, first_chunk=True)
    assert first.shape == (2, 2, 2) and first[0].tolist() == [[2, 0], [0, 0]]
    assert who_map(np.zeros((4, 4, 4), np.uint8), temporal=4, spatial=2, first_chunk=False).sum() == 0


def test_smoke_latents_hold_who_maps_and_the_cast_of_each_chunk(smoke_run):
    """Who maps mark exactly the latent pixels the character maps mark, with the labels of
    the chunk's cast, and the cast holds what the script says of each character."""
    from safetensors import safe_open

    from longtake.eval.probe_data import appearance_attributes
    from longtake.plan import plan
    from longtake.train.data import CHARS_SUFFIX, WHO_SUFFIX, latent_story
    from longtake.world.renderer import WorldRenderer

    run, _ = smoke_run
    cfg = get_train_preset("smoke")
    with safe_open(str(run / "data" / "latents" / "latents-00000.safetensors"), framework="pt") as fh:
        metas = json.loads(fh.metadata()["chunks"])
        seen = set()
        for j in range(cfg.dit_stories):
            key = f"story{j:06d}"
            who, chars = fh.get_tensor(key + WHO_SUFFIX), fh.get_tensor(key + CHARS_SUFFIX)
            assert who.shape == chars.shape and torch.equal(who > 0, chars > 0)
            story = latent_story(cfg, j)
            chunks = plan(story, frames_per_chunk=12, first_chunk_frames=9).chunks
            renderer = WorldRenderer(story)
            for c, meta in enumerate(metas[key]):
                labels = {int(x) for x in who[c * 3 : (c + 1) * 3].unique().tolist()} - {0}
                assert labels <= {int(k) for k in meta["cast"]}
                seen |= labels
            _, truths = renderer.render_chunk(chunks[0], masks=True)
            for ct in truths[0].characters:
                assert metas[key][0]["cast"][str(ct.label)] == appearance_attributes(ct.described)
    assert seen


def test_latent_clips_carry_attribute_maps_from_who_maps_and_cast(tmp_path):
    from safetensors import safe_open
    from safetensors.torch import load_file, save_file

    from longtake.eval.probe_data import ATTRIBUTES
    from longtake.train.data import WHO_SUFFIX, LatentClips, split_maps

    _fake_latents(tmp_path, [(2, ["ann"], "kitchen")])
    with pytest.raises(TrainError, match="no who maps"):
        LatentClips(tmp_path, latent_frames=3, with_attrs=True)
    shard = tmp_path / "latents-00000.safetensors"
    with safe_open(str(shard), framework="pt") as fh:
        metas = json.loads(fh.metadata()["chunks"])
    for m in metas["story000000"]:
        m["cast"] = {"1": {"body": "woman", "hat": "none"}, "2": {"top_colour": "red"}}
    t = load_file(str(shard))
    who = torch.zeros(6, 2, 2, dtype=torch.uint8)
    who[:, 0, 0] = 1
    who[3:, 1, 1] = 2
    t["story000000" + WHO_SUFFIX] = who
    save_file(t, str(shard), metadata={"chunks": json.dumps(metas)})
    clips = LatentClips(tmp_path, latent_frames=3, with_attrs=True)
    x, _ = clips.batch(np.random.default_rng(0), 1, 2)  # chunks 0 and 1: frames 0-5
    lat, chars, attrs = split_maps(x, False, True)
    names = list(ATTRIBUTES)
    assert lat.shape == (1, 2, 6, 2, 2) and chars is None and attrs.shape == (1, len(names), 6, 2, 2)
    assert (attrs[0, names.index("body"), :, 0, 0] == ATTRIBUTES["body"].index("woman")).all()
    assert (attrs[0, names.index("hat"), :, 0, 0] == 0).all()
    assert (attrs[0, names.index("top_colour"), 3:, 1, 1] == ATTRIBUTES["top_colour"].index("red")).all()
    assert (attrs[0, names.index("top_colour"), :3, 1, 1] == -1).all()  # no one there before frame 3
    assert (attrs[0, :, :, 0, 1] == -1).all() and (attrs[0, names.index("body"), :, 1, 1] == -1).all()


def test_attribute_readout_trains_the_text_path_and_skips_clean_frames():
    """The readout's cross-entropy reaches the text encoder (so the DiT must read the
    attributes from the prompt) and counts only labelled pixels of noisy frames."""
    from longtake.eval.probe_data import ATTRIBUTES
    from longtake.model.tokenizer import Tokenizer
    from longtake.train.dit_stage import AttributeReadout, _noisy_error, build_models

    smoke = get_train_preset("smoke")
    cfg = smoke.replace(text_dropout=0.0, char_weight=0.0, dit_changes={**smoke.dit_changes, "layout_channels": 0, "paint_hidden": 0, "paint_rank": 0})  # no slot channel
    prompts = [["Ann (a woman in a red shirt) waves.", "Ann waves again."]]
    dit, text = build_models(cfg, Tokenizer.build([p for ps in prompts for p in ps]), 4)
    readout = AttributeReadout(dit.config.dim, dit.config.patch_size, layer=0)
    f, hw = dit.config.frames_per_chunk, 8
    attrs = torch.full((1, len(ATTRIBUTES), 2 * f, hw, hw), -1.0)
    attrs[:, 3, :, 2:4, 2:4] = 1.0  # top colour of a 2x2-pixel figure in every frame
    x = torch.cat([torch.randn(1, 4, 2 * f, hw, hw), attrs], dim=1)
    sigma = torch.tensor([[0.0, 0.7]])  # first chunk clean context, second noisy
    rng, gen = np.random.default_rng(0), torch.Generator().manual_seed(0)
    _, _, ce, n, *_ = _noisy_error(dit, text, x, prompts, sigma, cfg, rng, gen, False, readout)
    assert int(n) == f  # one character with one captioned attribute in each of the noisy chunk's frames only
    (ce / n).backward()
    assert readout.proj.weight.grad.abs().sum() > 0
    assert any(p.grad is not None and p.grad.abs().sum() > 0 for p in text.parameters())
    assert all(p.grad is None or p.grad.abs().sum() == 0 for p in dit.proj_out.parameters())  # the head is not on its path


def test_attribute_readout_pools_each_character_of_each_frame():
    from longtake.eval.probe_data import ATTRIBUTES
    from longtake.train.dit_stage import AttributeReadout

    ro = AttributeReadout(4, (1, 2, 2), layer=0)
    a = len(ATTRIBUTES)
    attrs = torch.full((1, a, 2, 4, 4), -1)
    attrs[0, 0, 0, 0:2, 0:2] = 1  # frame 0: a character on token (0, 0) ...
    attrs[0, 0, 0, 2:4, 2:3] = 2  # ... and another on half of token (1, 1)
    attrs[0, 3, 0, 2:4, 2:3] = 5
    attrs[0, 0, 1, 0:1, 0:4] = 1  # frame 1: the first one again, across tokens (0, 0) and (0, 1)
    h = torch.arange(2 * 4 * 4, dtype=torch.float32).reshape(1, 8, 4)  # token t's features are 4t..4t+3
    feats, targets = ro.pool(h, attrs, torch.tensor([[True, True]]))
    assert feats.shape == (3, 4) and targets.shape == (3, a)
    rows = {tuple(t.tolist()): f for t, f in zip(targets, feats)}
    first = tuple([1] + [-1] * (a - 1))
    second = tuple([2, -1, -1, 5] + [-1] * (a - 4))
    assert set(rows) == {first, second}
    assert torch.equal(rows[second], h[0, 3])  # frame 0, token (1, 1)
    assert sorted(float(f[0]) for t, f in zip(targets, feats) if tuple(t.tolist()) == first) == [0.0, 4.0 * 4 + 2.0]  # frame 1: tokens 4 and 5
    feats, targets = ro.pool(h, attrs, torch.tensor([[False, True]]))  # frame 0 clean: not counted
    assert feats.shape == (1, 4) and tuple(targets[0].tolist()) == first
    assert ro.pool(h, attrs, torch.tensor([[False, False]]))[0].shape == (0, 4)


def test_attr_weight_needs_who_maps(tmp_path):
    from longtake.train.data import LatentClips
    from longtake.train.dit_stage import train_dit

    _fake_latents(tmp_path / "lat", [(4, ["ann"], "kitchen")])
    clips = LatentClips(tmp_path / "lat", latent_frames=3)
    with pytest.raises(TrainError, match="attribute maps"):
        train_dit(tmp_path / "run", get_train_preset("smoke"), clips, 4)


def test_interrupted_run_resumes_to_the_same_weights(smoke_run, tmp_path):
    from safetensors.torch import load_file

    ref_run, ref_model = smoke_run
    cfg = get_train_preset("smoke")
    seen = []

    def kill_in_forcing(ev):
        seen.append((ev.stage, ev.done))
        if ev.stage == "forcing" and ev.done == 3:
            raise Interrupt

    with pytest.raises(Interrupt):
        train(tmp_path, cfg, on_event=kill_in_forcing)
    assert (tmp_path / "dit" / "ckpt.pt").is_file() and not (tmp_path / "model").exists()
    resumed = []
    model = train(tmp_path, cfg, on_event=lambda ev: resumed.append((ev.stage, ev.done)))
    # Finished stages are skipped; the DiT continues after step 3.
    assert ("vae", 1) not in resumed and ("forcing", 1) not in resumed and ("forcing", 4) in resumed
    a = load_file(str(ref_model / "dit.safetensors"))
    b = load_file(str(model / "dit.safetensors"))
    assert a.keys() == b.keys()
    for k in a:
        torch.testing.assert_close(a[k], b[k], atol=0, rtol=0)


def test_other_settings_in_the_same_folder_are_refused(smoke_run):
    run, _ = smoke_run
    with pytest.raises(TrainError, match="other settings"):
        train(run, get_train_preset("smoke").replace(forcing_steps=7))
    # how the run goes (threads, checkpoint interval, logging, device, workers) may change on a resume
    assert train(run, get_train_preset("smoke").replace(threads=1, log_every=5, device="cpu", workers=2)) == run / "model"


def test_latent_shards_from_several_workers_equal_one_workers(smoke_run, tmp_path):
    from safetensors.torch import load_file

    from longtake.model.vae_builtin import BuiltinVAE
    from longtake.train.data import STORIES_PER_LATENT_SHARD, write_latent_shards

    run, _ = smoke_run
    vae = BuiltinVAE.from_safetensors(run / "vae" / "vae.safetensors").eval()
    cfg = get_train_preset("smoke").replace(dit_stories=STORIES_PER_LATENT_SHARD + 2)  # two shards
    seen = {}
    for workers in (1, 2):
        events = seen.setdefault(workers, [])
        write_latent_shards(tmp_path / str(workers), cfg.replace(workers=workers), vae, latent_frames=3, on_story=lambda d, t: events.append((d, t)))
    assert seen[1][-1] == seen[2][-1] == (cfg.dit_stories, cfg.dit_stories)
    assert len(seen[1]) == cfg.dit_stories + 1  # per story with one worker (and the start)
    names = sorted(p.name for p in (tmp_path / "1").glob("*.safetensors"))
    assert len(names) == 2 and names == sorted(p.name for p in (tmp_path / "2").glob("*.safetensors"))
    for name in names:
        a, b = load_file(str(tmp_path / "1" / name)), load_file(str(tmp_path / "2" / name))
        assert a.keys() == b.keys()
        for k in a:
            torch.testing.assert_close(a[k], b[k], atol=0, rtol=0)


def test_device_and_workers_settings_are_checked():
    with pytest.raises(TrainError, match="device must be cpu, cuda or cuda:N"):
        get_train_preset("smoke").replace(device="tpu")
    with pytest.raises(TrainError, match="workers must be >= 1"):
        get_train_preset("smoke").replace(workers=0)
    assert get_train_preset("smoke").replace(device="cuda:1").device == "cuda:1"


@pytest.mark.skipif(torch.cuda.is_available(), reason="checks the error on a machine without CUDA")
def test_cuda_without_a_gpu_is_a_clear_error(smoke_run, tmp_path):
    import shutil

    run, _ = smoke_run
    shutil.copytree(run / "data" / "latents", tmp_path / "data" / "latents")
    shutil.copytree(run / "vae", tmp_path / "vae")
    with pytest.raises(TrainError, match="sees no CUDA device; use --device cpu"):
        train(tmp_path, get_train_preset("smoke").replace(device="cuda"))


def test_unknown_setting_is_a_clear_error():
    with pytest.raises(TrainError, match="unknown TrainConfig field"):
        get_train_preset("smoke").replace(forcing_stpes=3)
    with pytest.raises(TrainError, match="unknown training preset"):
        get_train_preset("huge")


def test_guidance_is_an_export_setting(smoke_run, tmp_path):
    """A finished run exports again with another guidance scale, without retraining: the
    DiT weights stay bit-identical and model.json carries the new guidance."""
    import shutil

    from safetensors.torch import load_file

    src, _ = smoke_run
    run = tmp_path / "run"
    shutil.copytree(src, run)
    before = load_file(str(run / "model" / "dit.safetensors"))
    events = []
    model = train(run, get_train_preset("smoke").replace(guidance_scale=2.5, guidance_chunks="all"), on_event=lambda ev: events.append(ev.stage))
    meta = json.loads((model / "model.json").read_text())
    assert (meta["guidance_scale"], meta["guidance_chunks"]) == (2.5, "all")
    assert "forcing" not in events and "vae" not in events  # nothing retrained
    after = load_file(str(model / "dit.safetensors"))
    for k in before:
        torch.testing.assert_close(before[k], after[k], atol=0, rtol=0)
    assert json.loads((run / "train.json").read_text())["guidance_scale"] == 2.5


def _fake_latents(root, shots):
    """A latent shard folder with one story: ``shots`` = list of (chunks, entities, location);
    every latent frame's value is its frame index, so a clip shows which frames it took."""
    from safetensors.torch import save_file

    root.mkdir(parents=True, exist_ok=True)
    meta = []
    for n, ents, loc in shots:
        for i in range(n):
            meta.append({"prompt": f"chunk {len(meta)}", "entities": list(ents), "location": loc, "cut": i == 0 and bool(meta), "switch": False})
    f = 3
    lat = torch.arange(len(meta) * f, dtype=torch.float16)[:, None, None, None].expand(len(meta) * f, 2, 2, 2).contiguous()
    save_file({"story000000": lat}, str(root / "latents-00000.safetensors"), metadata={"chunks": json.dumps({"story000000": meta})})
    (root / "index.json").write_text(json.dumps({"shards": ["latents-00000.safetensors"], "stories": 1, "latent_frames": f}))


def test_memory_clip_takes_earlier_shots_that_show_the_same_entities(tmp_path):
    """[shot sink | memory | chunks]: the sink is the first chunk of the trained chunks' shot,
    the memory frames are first frames of chunks from earlier shots that show the same
    entities (ann and the kitchen here, not bob in the park), in time order."""
    import numpy as np

    from longtake.train.data import LatentClips

    # chunks 0-3: ann in the kitchen; 4-7: bob in the park; 8-12: ann in the kitchen again
    _fake_latents(tmp_path, [(4, ["ann"], "kitchen"), (4, ["bob"], "park"), (5, ["ann"], "kitchen")])
    clips = LatentClips(tmp_path, latent_frames=3)
    rng = np.random.default_rng(0)
    sinks = set()
    for _ in range(30):
        x, prompts = clips.memory_clip(rng, 3, 3)
        frames = x[0, :, 0, 0].long().tolist()  # the frame index each clip frame came from
        assert len(frames) == 3 + 3 + 9 and len(prompts) == 5
        s = frames[0] // 3
        assert s in (4, 8) and frames[:3] == [3 * s, 3 * s + 1, 3 * s + 2]  # a shot's first chunk
        sinks.add(s)
        mem = frames[3:6]
        assert all(m % 3 == 0 and m // 3 < s for m in mem) and mem == sorted(mem)  # first frames, earlier shots
        if s == 8:  # ann in the kitchen again: her chunks 0-3, not bob's 4-7
            assert all(m // 3 < 4 for m in mem)
        j = frames[6] // 3
        assert j > s and frames[6:] == list(range(3 * j, 3 * j + 9))
        assert prompts[0] == f"chunk {s}" and prompts[1] == f"chunk {mem[0] // 3}" and prompts[2:] == [f"chunk {c}" for c in range(j, j + 3)]
    assert sinks == {4, 8}
    with pytest.raises(TrainError, match="multiple"):
        clips.memory_clip(rng, 3, 2)


def test_cut_clip_is_a_cut_chunk_after_memory_of_its_entities(tmp_path):
    """[memory | a shot's first chunk]: the chunk is a cut with enough chunks before it, the
    memory frames are first frames of earlier chunks that show its entities, in time order."""
    import numpy as np

    from longtake.train.data import LatentClips

    _fake_latents(tmp_path, [(4, ["ann"], "kitchen"), (4, ["bob"], "park"), (5, ["ann"], "kitchen")])
    clips = LatentClips(tmp_path, latent_frames=3)
    rng = np.random.default_rng(1)
    cuts = set()
    for _ in range(30):
        x, prompts = clips.cut_clip(rng, 3)
        frames = x[0, :, 0, 0].long().tolist()
        assert len(frames) == 3 + 3 and len(prompts) == 2
        mem, s = frames[:3], frames[3] // 3
        assert s in (4, 8) and frames[3:] == [3 * s, 3 * s + 1, 3 * s + 2]
        cuts.add(s)
        assert all(m % 3 == 0 and m // 3 < s for m in mem) and mem == sorted(mem)
        if s == 8:  # ann in the kitchen: her earlier chunks, not bob's
            assert all(m // 3 < 4 for m in mem)
        assert prompts == [f"chunk {mem[0] // 3}", f"chunk {s}"]
    assert cuts == {4, 8}
    xb, pb = clips.cut_batch(rng, 4, 3)
    assert xb.shape[:3] == (4, 2, 6) and len(pb) == 4
    with pytest.raises(TrainError, match="multiple"):
        clips.cut_clip(rng, 2)
    _fake_latents(tmp_path, [(2, ["ann"], "kitchen"), (4, ["bob"], "park")])  # a cut after 2 chunks only
    with pytest.raises(TrainError, match="cut clip"):
        LatentClips(tmp_path, latent_frames=3).cut_clip(rng, 3)


def test_memory_batch_trains(tmp_path):
    """A forcing step with memory clips runs and gives a finite loss with gradients in the DiT."""
    import numpy as np

    from longtake.model.tokenizer import Tokenizer
    from longtake.train.data import LatentClips
    from longtake.train.dit_stage import build_models, forcing_loss

    _fake_latents(tmp_path, [(4, ["ann"], "kitchen"), (4, ["bob"], "park"), (5, ["ann"], "kitchen")])
    clips = LatentClips(tmp_path, latent_frames=3)
    cfg = get_train_preset("smoke").replace(memory_batch=2, dit_changes={**get_train_preset("smoke").dit_changes, "in_channels": 2, "out_channels": 2, "abs_pos_tokens": [1, 1], "patch_size": [1, 2, 2],
                                                                         "layout_channels": 0, "paint_hidden": 0, "paint_rank": 0})
    dit, text = build_models(cfg, Tokenizer.build(clips.prompts()), 2)
    loss, metrics = forcing_loss(dit, text, clips, cfg, np.random.default_rng(0), torch.Generator().manual_seed(0), 1)
    loss.backward()
    assert np.isfinite(metrics["forcing"]) and metrics["forcing"] > 0 and "attr" not in metrics
    assert dit.pos_embed.grad is not None and dit.pos_embed.grad.abs().sum() > 0
    # cut clips alone (no memory clips) give a different, finite loss from the same draws
    dit.zero_grad()
    loss_cut, m_cut = forcing_loss(dit, text, clips, cfg.replace(memory_batch=0, cut_batch=2), np.random.default_rng(0), torch.Generator().manual_seed(0), 1)
    loss_none, m_none = forcing_loss(dit, text, clips, cfg.replace(memory_batch=0), np.random.default_rng(0), torch.Generator().manual_seed(0), 1)
    loss_cut.backward()
    assert np.isfinite(m_cut["forcing"]) and m_cut["forcing"] != m_none["forcing"]
    assert dit.pos_embed.grad.abs().sum() > 0
    with pytest.raises(TrainError, match="cut_batch"):
        cfg.replace(cut_batch=-1)


def test_euler_sampler_sets_the_schedule_rollouts_and_export(tmp_path):
    """sampler="euler": inference sigmas evenly spaced (shifted), the rollout phase samples with
    Euler, and the exported model.json says euler with those sigmas."""
    from longtake.sample.schedules import linear_sigmas
    from longtake.train.dit_stage import inference_sigmas

    cfg = get_train_preset("smoke").replace(sampler="euler", sample_steps=3, sample_shift=1.0)
    assert torch.allclose(inference_sigmas(cfg), linear_sigmas(3))
    with pytest.raises(TrainError, match="sampler"):
        cfg.replace(sampler="ddim")
    with pytest.raises(TrainError, match="shift"):
        cfg.replace(sample_shift=0.0)
    model = train(tmp_path / "run", cfg)
    meta = json.loads((model / "model.json").read_text())
    assert meta["sampler"] == "euler"
    assert meta["sigmas"] == pytest.approx(linear_sigmas(3).tolist())


def test_character_map_is_the_fraction_of_character_pixels_per_latent_frame():
    """Labels (N, H, W) -> (F, H/4, W/4): the max over the pixel frames a latent frame encodes
    (1 for the first chunk's first, then 4) of the fraction of labelled pixels per 4x4 block."""
    import numpy as np

    from longtake.train.data import character_map

    lab = np.zeros((9, 8, 8), np.uint8)
    lab[0, 0:4, 0:4] = 1  # frame 0: block (0, 0) full -> latent frame 0 only
    lab[3, 4:8, 4:6] = 2  # frame 3: half of block (1, 1) -> latent frame 1 (frames 1-4)
    lab[8, 0:1, 4:5] = 1  # frame 8: 1 of 16 pixels of block (0, 1) -> latent frame 2 (frames 5-8)
    m = character_map(lab, temporal=4, spatial=4, first_chunk=True)
    assert m.shape == (3, 2, 2) and m.dtype == torch.uint8
    want = torch.zeros(3, 2, 2, dtype=torch.uint8)
    want[0, 0, 0], want[1, 1, 1], want[2, 0, 1] = 255, 128, 16
    assert torch.equal(m, want)
    later = character_map(np.concatenate([lab[1:], lab[:4]]), temporal=4, spatial=4, first_chunk=False)  # 12 frames -> 3
    assert later.shape == (3, 2, 2) and later[0, 1, 1] == 128 and later[2, 0, 0] == 255


def test_frame_error_weights_character_pixels_and_keeps_the_scale():
    from longtake.train.dit_stage import frame_error

    err = torch.ones(1, 2, 1, 4, 4)
    chars = torch.zeros(1, 1, 4, 4)
    chars[0, 0, 0, 0] = 1.0
    assert torch.allclose(frame_error(err, chars, 5.0), torch.ones(1, 1))  # uniform error: same value
    err[0, :, 0, 0, 0] = 17.0  # the error sits on the character pixel
    plain = frame_error(err, None, 5.0)
    assert torch.allclose(plain, torch.tensor([[2.0]]))  # (15 + 17) / 16
    assert torch.allclose(frame_error(err, chars, 0.0), plain)
    assert torch.allclose(frame_error(err, chars, 5.0), torch.tensor([[(15 + 6 * 17) / 21]]))


def test_latent_clips_carry_character_maps_and_refuse_shards_without(tmp_path):
    import numpy as np
    from safetensors.torch import load_file, save_file

    from longtake.train.data import CHARS_SUFFIX, LatentClips, split_maps

    _fake_latents(tmp_path, [(4, ["ann"], "kitchen"), (4, ["bob"], "park")])
    with pytest.raises(TrainError, match="no character maps"):
        LatentClips(tmp_path, latent_frames=3, with_chars=True)
    shard = tmp_path / "latents-00000.safetensors"
    from safetensors import safe_open

    with safe_open(str(shard), framework="pt") as fh:
        meta = fh.metadata()
    t = load_file(str(shard))
    n = t["story000000"].shape[0]
    t["story000000" + CHARS_SUFFIX] = (torch.arange(n, dtype=torch.int32) * 10 % 256).to(torch.uint8)[:, None, None].expand(n, 2, 2).contiguous()
    save_file(t, str(shard), metadata=meta)
    assert LatentClips(tmp_path, latent_frames=3).stories[0].latents.shape[1] == 2  # without: latents only
    clips = LatentClips(tmp_path, latent_frames=3, with_chars=True)
    x, _ = clips.batch(np.random.default_rng(0), 2, 3)
    lat, chars, attrs = split_maps(x, True)
    assert lat.shape == (2, 2, 9, 2, 2) and chars.shape == (2, 9, 2, 2) and attrs is None
    frames = lat[:, 0, :, 0, 0].long()  # the frame index each clip frame came from
    assert torch.allclose(chars[:, :, 0, 0].float(), (frames * 10 % 256).float() / 255, atol=1e-3)


def test_train_cli_prints_plain_progress_lines_when_not_on_a_terminal(tmp_path):
    """Under nohup or in a log file there is no live bar: each stage prints plain lines
    (the first event and its end at least), then "done in"."""
    from typer.testing import CliRunner

    from longtake.cli import app

    res = CliRunner().invoke(app, ["train", "--preset", "smoke", "--out", str(tmp_path / "run")])
    assert res.exit_code == 0, res.output
    text = res.output + (res.stderr if res.stderr_bytes is not None else "")
    lines = text.splitlines()
    cfg = get_train_preset("smoke")
    total = cfg.forcing_steps + cfg.rollout_steps
    assert any(line.startswith("forcing 1/") for line in lines)
    assert any(line.startswith(f"rollout {total}/{total} forcing=") for line in lines)
    assert any(line.startswith("export 1/1") for line in lines) and "done in" in text
    assert "━" not in text  # no progress bar drawn into the log


def test_smoke_model_places_the_prompts_characters(smoke_run):
    """The smoke preset trains a layout DiT with a figure painter: the exported model.json
    holds a prior learnt from the latents' slot maps, the generator loads it, and a render's
    chunks pass a layout whose boxes are the prior's, painted."""
    from longtake.generate.builtin import builtin_generator
    from longtake.model.layout import slot_names
    from longtake.plan import plan
    from longtake.train.data import latent_story

    _, model = smoke_run
    meta = json.loads((model / "model.json").read_text())
    assert meta["dit"]["layout_channels"] > 0 and meta["layout_prior"]
    gen = builtin_generator(model, precision="float32")
    assert gen.layout_prior is not None and gen.info().settings["layout_prior"] == meta["layout_prior"]
    story = latent_story(get_train_preset("smoke"), 0)
    timeline = plan(story, frames_per_chunk=gen.frames_per_chunk, first_chunk_frames=gen.first_chunk_frames)
    seen = []
    orig = gen.dit.forward

    def spy(*args, **kwargs):
        seen.append(kwargs.get("layout"))
        return orig(*args, **kwargs)

    gen.dit.forward = spy
    frames = [fc.frames for fc in gen.stream(timeline, seed=1)]
    assert frames and all(f.dtype.name == "uint8" for f in frames)
    with_people = [c for c in timeline.chunks if slot_names(c.prompt)]
    assert with_people, "the smoke stories introduce characters"
    assert all(lay is not None for lay in seen) and any(float(lay.abs().sum()) > 0 for lay in seen)
    # the smoke DiT has a figure painter: its channels ride on the layout and paint the placed figures
    cfg = gen.dit.config
    assert cfg.paint_hidden > 0 and all(lay.shape[1] == cfg.layout_width for lay in seen)
    assert any(float(lay[:, cfg.layout_channels :].abs().sum()) > 0 for lay in seen)
    from longtake.train.checkpoint import load_checkpoint

    ckpt = load_checkpoint(smoke_run[0] / "dit" / "ckpt.pt")
    paint = ckpt["losses"]["paint"]  # its loss was logged at every step
    smoke = get_train_preset("smoke")
    assert len(paint) == smoke.forcing_steps + smoke.rollout_steps and all(0 < v < float("inf") for _, v in paint)
    # the painter learns at its own rate (paint_lr) on the DiT's schedule: the last optimiser group
    groups = ckpt["opt"]["param_groups"]
    assert len(groups[-1]["params"]) == len([n for n in ckpt["dit"] if n.startswith("paint.")])
    assert groups[-1]["lr"] == pytest.approx(smoke.paint_lr * groups[0]["lr"] / smoke.lr)


def test_paint_composite_is_an_export_setting_that_puts_the_painted_figures_into_the_render(smoke_run, tmp_path):
    """--set paint_composite=T on a finished run writes T into model.json without retraining;
    the generator then replaces the sampled latents with the painter's where its coverage
    exceeds T, before the cache and the decoder see them. Bad values are one-line errors."""
    import shutil

    from longtake.generate.builtin import builtin_generator
    from longtake.generate.causal import CausalGenerator, GenerateError
    from longtake.model.builtin import load_builtin
    from longtake.model.errors import ModelError
    from longtake.model.dit import CausalWanDiT
    from longtake.model.layout import composite_paint
    from longtake.plan import plan
    from longtake.train.data import latent_story

    src, off_model = smoke_run
    run = tmp_path / "run"
    shutil.copytree(src, run)
    events = []
    on_model = train(run, get_train_preset("smoke").replace(paint_composite=0.3), on_event=lambda ev: events.append(ev.stage))
    assert json.loads((on_model / "model.json").read_text())["paint_composite"] == 0.3 and "forcing" not in events
    story = latent_story(get_train_preset("smoke"), 0)
    videos, written = {}, {}
    for name, folder in (("off", off_model), ("on", on_model)):
        gen = builtin_generator(folder, precision="float32")
        assert gen.info().settings["paint_composite"] == (0.3 if name == "on" else 0.0)
        timeline = plan(story, frames_per_chunk=gen.frames_per_chunk, first_chunk_frames=gen.first_chunk_frames)
        seen = []
        write = gen.dit.forward

        def spy(x, sigma, *args, seen=seen, write=write, **kwargs):  # the cache write pass runs at sigma 0
            if kwargs.get("layout") is not None and float(torch.as_tensor(sigma).max()) == 0.0:
                seen.append((x.clone(), kwargs["layout"].clone()))
            return write(x, sigma, *args, **kwargs)

        gen.dit.forward = spy
        videos[name] = [fc.frames for fc in gen.stream(timeline, seed=1)]
        written[name] = seen
    # with compositing on, every chunk the cache takes in already holds the painted figures
    assert written["on"] and all(torch.equal(composite_paint(x, lay, 0.3), x) for x, lay in written["on"])
    assert not all(torch.equal(composite_paint(x, lay, 0.3), x) for x, lay in written["off"])
    assert any((a != b).any() for a, b in zip(videos["off"], videos["on"]))
    # bad values: in model.json, and for the generator of a DiT without a painter
    meta = json.loads((on_model / "model.json").read_text())
    meta["paint_composite"] = 1.5
    (on_model / "model.json").write_text(json.dumps(meta))
    with pytest.raises(ModelError, match="'paint_composite' must be 0 or"):
        load_builtin(on_model)
    with pytest.raises(TrainError, match="paint_composite must be in"):
        get_train_preset("smoke").replace(paint_composite=-0.1)
    m = load_builtin(off_model)
    cfg = m.dit.config.replace(paint_hidden=0, paint_rank=0)
    with pytest.raises(GenerateError, match="paint_composite must be 0"):
        CausalGenerator(CausalWanDiT(cfg), m.vae, m.text_encoder, sigmas=m.settings.sigmas, layout_prior=m.settings.layout_prior, paint_composite=0.3)


def test_init_from_fine_tunes_a_model_folder(smoke_run, tmp_path):
    """init_from: the model's VAE and vocabulary become the run's, the DiT and text encoder start
    from its weights (a few small steps stay near them, unlike a fresh start); a folder that is
    not a model, or a run whose DiT differs from the model's, is a one-line TrainError."""
    from longtake.model.builtin import load_builtin
    from longtake.train.checkpoint import load_checkpoint

    _, model = smoke_run
    smoke = get_train_preset("smoke")
    cfg = smoke.replace(init_from=str(model), dit_stories=2, forcing_steps=2, rollout_steps=0, lr=1e-6, paint_lr=1e-6, text_lr=1e-6, warmup=1)
    out = train(tmp_path / "ft", cfg)
    assert (tmp_path / "ft" / "vae" / "vae.safetensors").read_bytes() == (model / "vae.safetensors").read_bytes()
    assert not (tmp_path / "ft" / "data" / "vae_shards").exists()  # no VAE trained
    assert (tmp_path / "ft" / "dit" / "vocab.json").read_text() == (model / "text" / "vocab.json").read_text()
    start = load_builtin(model)
    ck = load_checkpoint(tmp_path / "ft" / "dit" / "ckpt.pt")
    fresh = train(tmp_path / "fresh", smoke.replace(dit_stories=2, forcing_steps=2, rollout_steps=0, lr=1e-6, paint_lr=1e-6, text_lr=1e-6, warmup=1))
    fresh_ck = load_checkpoint(tmp_path / "fresh" / "dit" / "ckpt.pt")
    for name in ("blocks.0.attn1.to_q.weight", "proj_out.weight"):
        w0 = start.dit.state_dict()[name]
        assert (ck["dit"][name] - w0).abs().max() < 1e-3 < (fresh_ck["dit"][name] - w0).abs().max()
    text0 = start.text_encoder.state_dict()
    assert ck["text"].keys() == text0.keys()
    for name, w0 in text0.items():
        torch.testing.assert_close(ck["text"][name], w0, atol=1e-3, rtol=0)
    assert load_builtin(out).dit.config == start.dit.config
    with pytest.raises(TrainError, match="init_from: built-in model folder not found"):
        train(tmp_path / "bad", cfg.replace(init_from=str(tmp_path / "nowhere")))
    other = cfg.replace(dit_changes={**smoke.dit_changes, "ffn_dim": 32})
    with pytest.raises(TrainError, match="init_from .* differs from the model's in ffn_dim"):
        train(tmp_path / "other", other)
