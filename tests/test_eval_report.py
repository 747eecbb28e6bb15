"""`longtake eval` end to end: a StoryWorld render in, report.json + index.html out.

Also: compare mode, the one-line exit-2 errors, the optional real-world models on tiny random
configs, and the probe sections (identity matrix and flags) with a stub of the probes.
"""

from __future__ import annotations

import json
import string
from pathlib import Path

import numpy as np
import pytest
from typer.testing import CliRunner

from longtake.cli import app

EXAMPLE = Path(__file__).resolve().parent.parent / "examples" / "office_day.yaml"
SIZE = 64  # rendered smaller than the script's 128 px: the CLI tests only need the plumbing

runner = CliRunner()


@pytest.fixture(scope="module")
def rendered(tmp_path_factory: pytest.TempPathFactory) -> Path:
    from longtake.world.render_files import render_to_files

    out = tmp_path_factory.mktemp("render") / "office.mp4"
    render_to_files(EXAMPLE, out, width=SIZE, height=SIZE)
    return out


@pytest.fixture(scope="module")
def flickery(rendered: Path) -> Path:
    """The same render with a brightness flicker added to every other frame."""
    from longtake.video import VideoWriter
    from longtake.video.reader import read_video

    frames = read_video(rendered)
    frames[1::2] = np.clip(frames[1::2].astype(int) + 14, 0, 255).astype(np.uint8)
    out = rendered.with_name("flicker.mp4")
    with VideoWriter(out, fps=16, width=SIZE, height=SIZE) as w:
        w.write(frames)
    return out


def invoke(*args: str) -> object:
    return runner.invoke(app, ["eval", *map(str, args)])


def test_eval_with_script_writes_json_and_html(rendered: Path, tmp_path: Path) -> None:
    out = tmp_path / "report"
    res = invoke(rendered, "--script", EXAMPLE, "-o", out, "--no-probes")
    assert res.exit_code == 0, res.output
    rep = json.loads((out / "report.json").read_text())
    assert rep["video"]["frames"] == 324 and rep["video"]["fps"] == 16
    assert rep["script"]["title"] == "Mia's long day" and rep["script"]["shot_frames_from"] == "plan 12/12"
    s = rep["summary"]
    # a ground-truth render: stable, smooth, no drift, the cuts where the script puts them
    assert s["flicker"] > 0.97 and s["smoothness"] > 0.97 and s["warp_error"] < 0.03
    assert s["colour_drift_end"] < 5
    assert s["cut_precision"] == 1.0 and s["cut_recall"] == 1.0
    assert [x["start"] for x in rep["shots"]] == [0, 60, 132, 180, 240]
    assert [x["location"] for x in rep["shots"]] == ["office", "office", "office", "park", "office"]
    assert len(rep["segments"]) == 3 and rep["segments"][-1]["end"] == 324
    assert all(len(rep["series"][k]) == 324 for k in ("flicker", "smoothness", "background", "colour_drift", "sharpness"))
    assert rep["probes"] == {"skipped": "disabled (--no-probes)"}
    html = (out / "index.html").read_text()
    assert "Summary" in html and "temporal flicker score" in html
    for name in [rep["files"]["drift_curves"], rep["files"]["segments"], *rep["files"]["contact_sheets"]]:
        assert (out / name).stat().st_size > 1000 and name in html
    assert not list(out.glob(".*")), "no temporary files left behind"


def test_eval_without_script_detects_the_shots(rendered: Path, tmp_path: Path) -> None:
    res = invoke(rendered, "-o", tmp_path / "r")
    assert res.exit_code == 0, res.output
    rep = json.loads((tmp_path / "r" / "report.json").read_text())
    assert rep["script"] is None and rep["shot_source"] == "detected"
    assert rep["cuts"]["detected"] == [60, 132, 180, 240]
    assert rep["probes"] == {"skipped": "no script"}
    assert "cut_f1" not in rep["summary"]


def test_compare_puts_videos_side_by_side(rendered: Path, flickery: Path, tmp_path: Path) -> None:
    out = tmp_path / "cmp"
    res = invoke("--compare", rendered, flickery, "--script", EXAMPLE, "-o", out, "--no-probes")
    assert res.exit_code == 0, res.output
    rep = json.loads((out / "report.json").read_text())
    assert rep["compare"]["videos"] == ["office.mp4", "flicker.mp4"]
    rows = {r["metric"]: r["values"] for r in rep["compare"]["rows"]}
    clean, flick = rows["flicker"]
    assert clean - flick > 0.03  # 14 grey levels every other frame
    assert rows["smoothness"][0] > rows["smoothness"][1]
    for sub in rep["reports"]:
        assert (out / sub / "report.json").is_file() and (out / sub / "index.html").is_file()
    html = (out / "index.html").read_text()
    assert "office.mp4" in html and "flicker.mp4" in html and (out / "drift_curves.png").is_file()


@pytest.mark.parametrize("case", ["missing", "not_video", "bad_script", "one_compare", "bad_dino", "bad_chunking"])
def test_bad_input_is_one_line_and_exit_2(case: str, rendered: Path, tmp_path: Path) -> None:
    junk = tmp_path / "junk.mp4"
    junk.write_text("this is not a video\n")
    bad = tmp_path / "bad.yaml"
    bad.write_text("title: x\nscenes: [\n")
    args = {
        "missing": [tmp_path / "nope.mp4"],
        "not_video": [junk],
        "bad_script": [rendered, "--script", bad],
        "one_compare": ["--compare", rendered],
        "bad_dino": [rendered, "--dino", tmp_path / "no_such_dino"],
        "bad_chunking": [rendered, "--script", EXAMPLE, "--plan-chunk-frames", "twelve"],
    }[case]
    res = invoke(*args, "-o", tmp_path / "out")
    assert res.exit_code == 2, res.output
    lines = [line for line in res.output.splitlines() if line.strip()]
    assert lines and all(line.startswith("error:") for line in lines), res.output
    assert "Traceback" not in res.output


# -- real-world models on tiny random configs ----------------------------------------------


def _tiny_dino(folder: Path) -> Path:
    from transformers import Dinov2Config, Dinov2Model

    cfg = Dinov2Config(hidden_size=32, num_hidden_layers=1, num_attention_heads=2, intermediate_size=64, image_size=32, patch_size=8)
    Dinov2Model(cfg).save_pretrained(folder)
    return folder


def _tiny_clip(folder: Path) -> Path:
    from transformers import CLIPConfig, CLIPModel, CLIPTokenizer

    vocab = {"<|startoftext|>": 0, "<|endoftext|>": 1}
    for c in string.ascii_lowercase + string.digits + ".,()'-:":
        vocab.setdefault(c, len(vocab))
        vocab.setdefault(c + "</w>", len(vocab))
    text = dict(vocab_size=len(vocab), hidden_size=32, intermediate_size=64, num_hidden_layers=1, num_attention_heads=2,
                max_position_embeddings=77, bos_token_id=0, eos_token_id=1, pad_token_id=1)
    vision = dict(hidden_size=32, intermediate_size=64, num_hidden_layers=1, num_attention_heads=2, image_size=32, patch_size=8)
    CLIPModel(CLIPConfig(text_config=text, vision_config=vision, projection_dim=16)).save_pretrained(folder)
    CLIPTokenizer(vocab=vocab, merges=[]).save_pretrained(folder)
    return folder


def test_realworld_dino_and_clip_from_tiny_random_configs(rendered: Path, tmp_path: Path) -> None:
    import torch

    from longtake.eval.run import EvalOptions, evaluate_video

    torch.manual_seed(0)
    opts = EvalOptions(script=EXAMPLE, use_probes=False, dino=_tiny_dino(tmp_path / "dino"), clip=_tiny_clip(tmp_path / "clip"), model_fps=2.0)
    rep = evaluate_video(rendered, opts).report
    dino = rep["realworld"]["subject_consistency_dino"]
    clip = rep["realworld"]["background_consistency_clip"]
    for sec in (dino, clip):
        assert 0.0 <= sec["value"] <= 1.0
        assert len(sec["shots"]) == 5 and len(sec["segments"]) == 3
        assert len(sec["series"]) == len(sec["t"]) > 20
    assert 0.0 <= clip["clip_score"]["value"] <= 100.0 and len(clip["clip_score"]["segments"]) == 3


def test_realworld_consistency_formula() -> None:
    from longtake.eval.realworld import _Consistency

    c = _Consistency()
    e = np.eye(3)
    c.add(0, e[0], True)
    c.add(1, e[0], False)  # same as first and previous: 1
    c.add(2, e[1], False)  # orthogonal to both: 0
    c.add(3, -e[1], False)  # opposite of previous (clipped to 0), orthogonal to the first: 0
    c.add(4, e[2], True)  # a new shot: a new reference, no value
    assert c.values == [1.0, 0.0, 0.0] and c.t == [1, 2, 3]


def test_realworld_missing_paths_are_clear_errors(tmp_path: Path) -> None:
    from longtake.eval.errors import EvalError
    from longtake.eval.realworld import ClipModel, DinoModel, DlibFaces

    with pytest.raises(EvalError, match="no such folder"):
        DinoModel(tmp_path / "missing", 16, None)
    (tmp_path / "empty").mkdir()
    with pytest.raises(EvalError, match="no config.json"):
        ClipModel(tmp_path / "empty", 16, None)
    with pytest.raises(EvalError, match="dlib"):
        DlibFaces(tmp_path / "missing", 16, None)



def test_dlib_faces_groups_people_and_measures_their_drift(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """DlibFaces' own logic (sampling, online grouping within dlib's 0.6, distance to the first
    appearance, per-shot means) with a stand-in for the dlib package, whose wheels and face
    models are not installable here: the stand-in's descriptor is read from a frame's colour
    (red: who, green: drift), so the right answer is known."""
    import sys
    import types

    from longtake.eval.realworld import DLIB_FILES, DlibFaces
    from longtake.eval.shots import ShotPlan, ShotRange

    fake = types.ModuleType("dlib")
    fake.get_frontal_face_detector = lambda: (lambda img, upsample: [object()] if img.any() else [])  # type: ignore[attr-defined]
    fake.shape_predictor = lambda path: (lambda img, rect: img)  # type: ignore[attr-defined]

    class Encoder:
        def __init__(self, path: str) -> None:
            assert Path(path).name == DLIB_FILES[0]

        def compute_face_descriptor(self, img: np.ndarray, shape: np.ndarray) -> list[float]:
            d = [0.0] * 128
            d[0], d[1] = img[0, 0, 0] / 100, img[0, 0, 1] / 100
            return d

    fake.face_recognition_model_v1 = Encoder  # type: ignore[attr-defined]
    monkeypatch.setitem(sys.modules, "dlib", fake)
    for name in DLIB_FILES:
        (tmp_path / name).write_bytes(b"")

    def frames(red: int, green: int, n: int = 16) -> np.ndarray:
        f = np.zeros((n, 8, 8, 3), np.uint8)
        f[..., 0], f[..., 1] = red, green
        return f

    plan = ShotPlan(shots=(ShotRange(0, 0, 32), ShotRange(1, 32, 80)), source="durations", tolerance=0)
    faces = DlibFaces(tmp_path, 16, plan)  # samples every 4th frame (4 per second)
    faces.update(0, frames(0, 10), set())  # A
    faces.update(16, frames(200, 10), set())  # B, 2.0 away
    faces.update(32, frames(0, 40), {32})  # A, drifted by 0.3 (within 0.6: still A)
    faces.update(48, frames(0, 0), set())  # no face
    faces.update(64, frames(0, 110), set())  # 1.0 from A's first look: someone new
    out = faces.summary(80)
    rows = out["identities"]
    assert len(rows) == 3 and out["same_person_distance"] == 0.6
    a, b, c = rows
    assert a["samples"] == 8 and a["first_s"] == 0.0 and b["first_s"] == 1.0 and c["first_s"] == 4.0
    assert a["max_distance"] == pytest.approx(0.3) and a["mean_distance"] == pytest.approx(0.15)
    assert a["shots"] == [pytest.approx(0.0), pytest.approx(0.3)] and b["shots"] == [0.0, None]
    assert b["max_distance"] == 0.0 and c["samples"] == 4

# -- probe sections with a stub of the probes ------------------------------------------------


class StubProbes:
    """Reads a frame's "truth" from its pixels: the test paints one marker per character."""

    align = True

    def __init__(self, story, swap_at: int | None) -> None:
        from longtake.world.parse import location_kind, parse_appearance

        self.swap_at = swap_at
        self.look = {c.id: parse_appearance(c.description) for c in story.characters}
        self.kinds = [location_kind(loc) for loc in story.locations]
        rng = np.random.default_rng(0)
        self.emb = {c.id: _unit(rng.normal(size=16)) for c in story.characters}
        self.swapped = {c.id: _unit(rng.normal(size=16)) for c in story.characters}

    def locations(self, frames):
        return [self.kinds[int(f[0, 0, 0])] for f in frames]

    def instances(self, frames):
        from longtake.eval.probes import Instance, appearance_attributes

        out = []
        for f in frames:
            frame = int(f[0, 1, 0]) * 256 + int(f[0, 1, 1])
            found = []
            for k, cid in enumerate(self.look):
                if f[1, k, 0]:
                    emb = self.swapped[cid] if (cid == "mia" and self.swap_at is not None and frame >= self.swap_at) else self.emb[cid]
                    found.append(Instance((2, 1, 6, 7), 20, appearance_attributes(self.look[cid]), emb, hidden={"shoe_colour": "red" if emb is self.emb[cid] else "blue"}))
            out.append(found)
        return out

    def alignment(self, frames, texts):
        return np.linspace(0.9, 0.1, len(texts))


def _unit(v: np.ndarray) -> np.ndarray:
    return v / np.linalg.norm(v)


def _marked_frames(story, plan, n: int) -> np.ndarray:
    locs = [loc.id for loc in story.locations]
    cast = [c.id for c in story.characters]
    frames = np.zeros((n, 8, 8, 3), np.uint8)
    for s in plan.shots:
        frames[s.start : s.end, 0, 0, 0] = locs.index(s.location)
        for cid in s.characters:
            frames[s.start : s.end, 1, cast.index(cid), 0] = 1
    frames[:, 0, 1, 0] = np.arange(n) // 256
    frames[:, 0, 1, 1] = np.arange(n) % 256
    return frames


@pytest.mark.parametrize("swap_at", [None, 250])
def test_identity_matrix_flags_a_swapped_character_at_its_time(swap_at: int | None) -> None:
    pytest.importorskip("longtake.eval.probes")
    from longtake.eval.metrics_probes import ProbeSection
    from longtake.eval.shots import shots_from_story
    from longtake.script import load_story

    story = load_story(EXAMPLE)
    plan = shots_from_story(story, 324, 16)
    section = ProbeSection(StubProbes(story, swap_at), story, plan, 16)
    frames = _marked_frames(story, plan, 324)
    for start in range(0, 324, 64):
        section.update(start, frames[start : start + 64])
    out = section.finish()
    ident = out["identity"]
    assert ident["characters"] == ["mia", "leo"]
    assert out["summary"]["location_match"] == 1.0 and out["summary"]["attribute_match"] == 1.0
    # the stub ranks the story's first prompt first whatever the frames: 1 shot in 5 is top-1
    assert out["summary"]["alignment_top1"] == pytest.approx(0.2)
    leo = ident["matrix"][1]
    assert leo[0] is None and all(v == pytest.approx(1.0) for v in leo[1:] if v is not None)
    if swap_at is None:
        assert ident["flags"] == [] and out["summary"]["identity_min"] == pytest.approx(1.0)
        return
    (flag,) = ident["flags"]
    assert flag["character"] == "mia" and flag["shot"] == 4
    assert swap_at / 16 <= flag["time_s"] <= swap_at / 16 + 1.0  # samples every 0.5 s
    assert flag["hidden_changed"] == {"shoe_colour": ["red", "blue"]}
    assert ident["matrix"][0][0] == pytest.approx(1.0) and ident["matrix"][0][4] < 0.5


def test_report_with_probe_sections_draws_identity_plots(rendered: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    probes_mod = pytest.importorskip("longtake.eval.probes")
    from longtake.eval.html import write_report
    from longtake.eval.run import EvalOptions, evaluate_video
    from longtake.script import load_story

    story = load_story(EXAMPLE)

    class Everyone(StubProbes):
        """Every character of the cast in every frame, always the same embedding."""

        def locations(self, frames):
            return ["office"] * len(frames)

        def instances(self, frames):
            return [[probes_mod.Instance((10, 10, 30, 50), 20, probes_mod.appearance_attributes(self.look[c]), self.emb[c]) for c in self.look]
                    for _ in frames]

    monkeypatch.setattr(probes_mod.StoryWorldProbes, "load", classmethod(lambda cls, folder=None, device="cpu": Everyone(story, None)))
    result = evaluate_video(rendered, EvalOptions(script=EXAMPLE))
    write_report(result, tmp_path / "r")
    rep = json.loads((tmp_path / "r" / "report.json").read_text())
    p = rep["probes"]["summary"]
    assert p["identity"] == pytest.approx(1.0) and p["identity_flags"] == 0
    assert p["location_match"] == pytest.approx(0.8)  # 4 of 5 shots are in the office
    assert rep["files"]["identity"] == ["identity_matrix.png", "identity_curves.png"]
    html = (tmp_path / "r" / "index.html").read_text()
    assert "identity_matrix.png" in html and (tmp_path / "r" / "identity_curves.png").stat().st_size > 1000


# -- the check: ground truth vs a hidden detail swapped mid-way (real probes) ---------

SWAP_FRAME = 96  # 6.0 s, in the middle of shot 1 (frames 60-132), Mia seated and on screen
SWAP_SEED = 9  # Mia's hidden details drawn with another seed: other shoes, a badge, other skin


def render_with_swap(story, swap_frame: int | None, character: str = "mia", seed: int = SWAP_SEED) -> np.ndarray:
    """StoryWorld frames of ``story``; from ``swap_frame`` on, ``character``'s hidden details are
    those of another story seed (everything else identical)."""
    from longtake.plan import plan
    from longtake.world.characters import figure_height
    from longtake.world.renderer import WorldRenderer
    from longtake.world.vocab import draw_hidden

    truth = WorldRenderer(story)
    other = WorldRenderer(story)
    other.hidden[character] = draw_hidden(seed, character)
    other.fig_h[character] = figure_height(other.height, other.appearance[character], other.hidden[character])
    frames = []
    for chunk in plan(story).chunks:
        a = truth.render_chunk(chunk, masks=False)[0]
        if swap_frame is not None and chunk.end_frame > swap_frame:
            b = other.render_chunk(chunk, masks=False)[0]
            k = max(0, swap_frame - chunk.start_frame)
            a = np.concatenate([a[:k], b[k:]])
        frames.append(a)
    return np.concatenate(frames)


@pytest.fixture(scope="module")
def probes_or_skip():
    probes_mod = pytest.importorskip("longtake.eval.probes")
    from longtake.eval.errors import EvalError

    try:
        return probes_mod.StoryWorldProbes.load()
    except EvalError as exc:
        pytest.skip(f"StoryWorld probes not shipped yet: {exc}")


def test_ground_truth_is_consistent_and_a_swapped_hidden_detail_is_flagged(probes_or_skip, tmp_path: Path) -> None:
    from longtake.eval.run import EvalOptions, evaluate_video
    from longtake.script import load_story
    from longtake.video import VideoWriter

    story = load_story(EXAMPLE)
    reports = {}
    for name, swap in (("truth", None), ("swapped", SWAP_FRAME)):
        path = tmp_path / f"{name}.mp4"
        with VideoWriter(path, fps=story.fps, width=story.size.width, height=story.size.height) as w:
            w.write(render_with_swap(story, swap))
        reports[name] = evaluate_video(path, EvalOptions(script=EXAMPLE)).report
    truth, swapped = reports["truth"]["probes"], reports["swapped"]["probes"]
    s = truth["summary"]
    assert s["identity_flags"] == 0 and s["identity_same_location_min"] > truth["identity"]["threshold"], truth["identity"]
    assert s["location_match"] >= 0.95 and s["attribute_match"] >= 0.75
    flags = swapped["identity"]["flags"]
    assert [f["character"] for f in flags] == ["mia"], flags
    assert SWAP_FRAME / 16 - 0.01 <= flags[0]["time_s"] <= SWAP_FRAME / 16 + 1.5
    leo = swapped["identity"]["characters"].index("leo")
    assert min(v for v in swapped["identity"]["matrix"][leo] if v is not None) > swapped["identity"]["threshold"]
