"""Memory files (a series keeps its cast), reference images from the script, CLI wiring."""

from __future__ import annotations

import json

import cv2
import pytest
import torch
import yaml
from memory_parts import SCENES, make_gen, make_story, plan_for, ref_image, tiny_parts
from typer.testing import CliRunner

from longtake.cli import app
from longtake.memory_files import cast_from_story, load_memory_file, save_memory_file
from longtake.model.builtin import save_builtin
from longtake.pipeline import RenderError
from longtake.render_state import load_state, save_state
from longtake.sample.schedules import self_forcing_sigmas

runner = CliRunner()


@pytest.fixture(scope="module")
def parts():
    return tiny_parts()


@pytest.fixture
def story_files(tmp_path):
    """A script with a reference image for Mia, as files."""
    cv2.imwrite(str(tmp_path / "mia.png"), ref_image(4)[:, :, ::-1])
    data = make_story().model_dump(mode="json")
    data["characters"][0]["refs"] = ["mia.png"]
    path = tmp_path / "story.yaml"
    path.write_text(yaml.safe_dump(data))
    return path


def test_cast_from_story_reads_the_refs(story_files):
    story = make_story(characters=[{"id": "mia", "name": "Mia", "description": "red coat", "refs": ["mia.png"]}, {"id": "tom", "name": "Tom"}],
                       context={"base_dir": story_files.parent})
    cast = {m.entity: m for m in cast_from_story(story)}
    assert set(cast) == {"mia", "tom", "room", "park"}
    assert cast["mia"].prompt == "Mia (red coat)." and cast["room"].kind == "location"
    assert len(cast["mia"].images) == 1 and (cast["mia"].images[0] == ref_image(4)).all()  # RGB kept through PNG


def _render_with_memory(parts, story, **kw):
    gen = make_gen(parts, "entity", cast=[m for m in cast_from_story(story)], **kw)
    for _ in gen.stream(plan_for(gen, story), seed=2):
        pass
    return gen


def test_memory_file_round_trip_into_another_render(parts, story_files, tmp_path):
    story = make_story(characters=[{"id": "mia", "name": "Mia", "refs": ["mia.png"]}, {"id": "tom", "name": "Tom"}],
                       context={"base_dir": story_files.parent})
    gen = _render_with_memory(parts, story)
    path = save_memory_file(gen, story, tmp_path / "ep1.memory")
    tree = load_state(path)
    saved = gen.export_memory()
    assert [e["frame"] for e in tree["entity"]["entries"]] == [e["frame"] for e in saved["entries"]]
    for a, b in zip(tree["entity"]["entries"], saved["entries"], strict=True):
        assert all(torch.equal(x, y) for x, y in zip(a["keys"], b["keys"], strict=True))

    episode2 = make_story(SCENES[1:], title="episode 2")  # same cast, no refs this time
    gen2 = make_gen(parts, "entity")
    state, digest = load_memory_file(path, episode2, gen2)
    gen2.preload_memory(state, f"sha256:{digest}")
    first = next(iter(gen2.stream(plan_for(gen2, episode2), seed=2)))
    assert first.chunk.characters == ("mia",)
    imported = {f for f, e in gen2.memory.entries.items() if e.kind == "import"}
    assert gen2.selected and set(gen2.selected) <= imported  # Mia and the park come from episode 1
    assert gen2.memory.of("mia")[0].keys[0].equal(gen.memory.of("mia")[0].keys[0])  # her ref is still her anchor
    assert gen2.info().settings["memory"]["from"] == f"sha256:{digest}"


def test_a_memory_file_of_another_cast_model_or_size_is_refused(parts, tmp_path):
    story = make_story()
    gen = _render_with_memory(parts, story)
    path = save_memory_file(gen, story, tmp_path / "ep1.memory")
    other_cast = make_story([{"location": "beach", "shots": [{"prompt": "Ann", "characters": ["ann"], "duration": 1.0}]}],
                            characters=[{"id": "ann", "name": "Ann"}], locations=[{"id": "beach"}])
    cases = [
        (other_cast, make_gen(parts, "entity"), "from another cast: none of its characters \\(mia, tom\\)"),
        (make_story(characters=[{"id": "mia", "name": "Maya"}, {"id": "tom", "name": "Tom"}]), make_gen(parts, "entity"), "mia is 'Mia' there, 'Maya' here"),
        (story, make_gen(parts, "entity", weights={"dit.safetensors": "00" * 32}), "other model weights"),
        (story.model_copy(update={"size": type(story.size)(width=64, height=64)}), make_gen(parts, "entity"), "made at 32x32"),
    ]
    for st, g, match in cases:
        with pytest.raises(RenderError, match=match) as err:
            load_memory_file(path, st, g)
        assert len(err.value.lines()) == 1
    save_state({"not": "memory"}, tmp_path / "state.safetensors")
    with pytest.raises(RenderError, match="not a longtake memory file"):
        load_memory_file(tmp_path / "state.safetensors", story, make_gen(parts, "entity"))
    with pytest.raises(RenderError, match="no entity memory"):
        save_memory_file(make_gen(parts, "nam"), story, tmp_path / "x.memory")


@pytest.fixture(scope="module")
def folder(tmp_path_factory):
    dit, vae, text = tiny_parts()
    out = tmp_path_factory.mktemp("models") / "tiny"
    save_builtin(out, dit, vae, text, sigmas=self_forcing_sigmas(2), extra={"note": "random weights for memory tests"})
    return out


def test_cli_memory_modes_files_and_manifest(folder, story_files, tmp_path):
    base = ["--weights", str(folder), "--precision", "float32"]
    r = runner.invoke(app, ["render", str(story_files), "-o", str(tmp_path / "ep1.mp4"), *base, "--memory", "entity", "--memory-out", str(tmp_path / "ep1.memory")])
    assert r.exit_code == 0, r.output
    m = json.loads((tmp_path / "ep1.json").read_text())
    assert m["settings"]["memory"] == "entity" and m["generator"]["settings"]["memory"]["mode"] == "entity"
    assert m["generator"]["settings"]["memory"]["cast_refs"]  # Mia's ref image went in
    assert (tmp_path / "ep1.memory").is_file()

    r = runner.invoke(app, ["render", str(story_files), "-o", str(tmp_path / "ep2.mp4"), *base, "--memory-from", str(tmp_path / "ep1.memory")])
    assert r.exit_code == 0, r.output
    assert json.loads((tmp_path / "ep2.json").read_text())["generator"]["settings"]["memory"]["from"].startswith("sha256:")

    r = runner.invoke(app, ["render", str(story_files), "-o", str(tmp_path / "d.mp4"), *base])
    assert r.exit_code == 0, r.output
    assert json.loads((tmp_path / "d.json").read_text())["settings"]["memory"] == "entity"  # the default since session 18

    data = yaml.safe_load(story_files.read_text())
    data["characters"] = [{"id": "ann", "name": "Ann"}]
    data["scenes"] = [{"location": "beach", "shots": [{"prompt": "Ann", "characters": ["ann"], "duration": 1.0}]}]
    data["locations"] = [{"id": "beach"}]
    other = tmp_path / "other.yaml"
    other.write_text(yaml.safe_dump(data))
    for args, match in [
        ([str(other), "--memory-from", str(tmp_path / "ep1.memory")], "another cast"),
        ([str(story_files), "--memory", "bogus"], "unknown memory mode"),
        ([str(story_files), "--memory", "sink", "--memory-out", str(tmp_path / "x.memory")], "--memory entity"),
    ]:
        r = runner.invoke(app, ["render", *args, "-o", str(tmp_path / "bad.mp4"), *base])
        lines = [ln for ln in r.output.splitlines() if ln.strip()]
        assert r.exit_code == 2 and len(lines) == 1 and match in lines[0], r.output
