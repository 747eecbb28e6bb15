"""Training: the smoke preset runs every stage, exports a loadable model, and resumes exactly."""

from __future__ import annotations

import json

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
