"""``longtake world ...``: exit codes, output files, frame counts, one-line errors."""

import json
from pathlib import Path

import yaml
from typer.testing import CliRunner

from longtake.plan import plan
from longtake.script.schema import Story
from longtake.video import probe
from longtake.world.cli import world_app
from longtake.world.vocab import check_story

runner = CliRunner()
BENCH = Path(__file__).resolve().parents[1] / "benchmarks" / "storyworld-bench"


def run(*args):
    return runner.invoke(world_app, [str(a) for a in args])


def _tiny_story(tmp_path: Path, seed: int = 2, duration: float = 4.0) -> Path:
    path = tmp_path / f"s{seed}.yaml"
    r = run("sample", "--seed", seed, "--duration", duration, "--width", 32, "--height", 32, "-o", path)
    assert r.exit_code == 0, r.output
    return path


def test_vocab_table_and_json():
    r = run("vocab")
    assert r.exit_code == 0 and "walks in from the left" in r.output and "street_night" in r.output
    r = run("vocab", "--json")
    data = json.loads(r.stdout)
    assert "park" in data["locations"] and "walk_out_left" in data["actions"]


def test_sample_writes_a_valid_deterministic_script(tmp_path):
    a = _tiny_story(tmp_path, seed=9, duration=30.0)
    story = Story.load(a)
    check_story(story)
    assert story.duration == 30.0
    b = tmp_path / "b.yaml"
    assert run("sample", "--seed", 9, "--duration", 30, "--width", 32, "--height", 32, "-o", b).exit_code == 0
    assert a.read_bytes() == b.read_bytes()
    r = run("sample", "--seed", 9, "--duration", 30, "--split", "heldout")
    assert r.exit_code == 0
    held = yaml.safe_load(r.stdout)
    assert held["title"] == "StoryWorld heldout 9"


def test_sample_bad_input_exits_2_without_traceback():
    for args in (["--split", "test"], ["--characters", "two"], ["--duration", "0"]):
        r = run("sample", *args)
        assert r.exit_code == 2, (args, r.output)
        assert "error:" in r.stderr and "Traceback" not in r.output


def test_render_writes_video_truth_and_manifest(tmp_path):
    script = _tiny_story(tmp_path)
    video = tmp_path / "out" / "v.mp4"
    r = run("render", script, "-o", video)
    assert r.exit_code == 0, r.output
    timeline = plan(Story.load(script))
    assert probe(video).num_frames == timeline.num_frames
    for name in ("v.truth.jsonl", "v.masks.npz", "v.json"):
        assert (video.parent / name).is_file(), name
    lines = (video.parent / "v.truth.jsonl").read_text().splitlines()
    assert sum(json.loads(line)["type"] == "frame" for line in lines) == timeline.num_frames
    manifest = json.loads((video.parent / "v.json").read_text())
    assert manifest["generator"]["name"] == "storyworld" and manifest["provenance"]["ai_generated"]
    assert not [p for p in video.parent.iterdir() if p.name.startswith(".")]


def test_render_size_and_fps_overrides(tmp_path):
    script = _tiny_story(tmp_path, duration=3.0)
    video = tmp_path / "small.mp4"
    r = run("render", script, "-o", video, "--width", 48, "--height", 16, "--fps", 8)
    assert r.exit_code == 0, r.output
    info = probe(video)
    story = Story.load(script)
    expected = plan(story.model_copy(update={"fps": 8})).num_frames
    assert (info.width, info.height, info.num_frames) == (48, 16, expected)


def test_render_bad_input_is_one_clear_error(tmp_path):
    script = tmp_path / "bad.yaml"
    script.write_text(
        "title: bad\nsize: {width: 32, height: 32}\ncharacters:\n- {id: mia, name: Mia, description: a woman with red hair}\n"
        "locations:\n- {id: park}\nscenes:\n- location: park\n  shots:\n  - {prompt: Mia wavs, characters: [mia], duration: 1}\n"
    )
    r = run("render", script, "-o", tmp_path / "x.mp4")
    assert r.exit_code == 2 and "Traceback" not in r.output
    assert "wavs" in r.stderr and "waves" in r.stderr
    assert not (tmp_path / "x.mp4").exists()
    r = run("render", tmp_path / "missing.yaml", "-o", tmp_path / "x.mp4")
    assert r.exit_code == 2 and "file not found" in r.stderr
    r = run("render", _tiny_story(tmp_path), "-o", tmp_path / "x.avi")
    assert r.exit_code == 2 and ".mp4" in r.stderr
    r = run("render", _tiny_story(tmp_path), "-o", tmp_path / "x.mp4", "--width", 30)
    assert r.exit_code == 2 and "multiples of 8" in r.stderr


def test_shards_command_writes_and_resumes(tmp_path):
    args = ["shards", tmp_path / "ds", "--stories", 2, "--seed", 1, "--durations", "10-12", "--width", 32, "--height", 32,
            "--clip-chunks", 2, "--stories-per-shard", 1]
    r = run(*args)
    assert r.exit_code == 0, r.output
    index = json.loads((tmp_path / "ds" / "index.json").read_text())
    assert len(index["shards"]) == 2 and index["num_clips"] > 0
    before = (tmp_path / "ds" / "shard-00001.tar").read_bytes()
    (tmp_path / "ds" / "shard-00001.tar").unlink()
    assert run(*args).exit_code == 0
    assert (tmp_path / "ds" / "shard-00001.tar").read_bytes() == before
    r = run(*args[:-2], "--stories-per-shard", 2)
    assert r.exit_code == 2 and "other settings" in r.stderr


def test_bench_check_and_write(tmp_path):
    r = run("bench", BENCH, "--check")
    assert r.exit_code == 0, r.output
    r = run("bench", tmp_path / "b", "--n", 2)
    assert r.exit_code == 0
    assert sorted(p.name for p in (tmp_path / "b").iterdir()) == ["index.json", "story_000.yaml", "story_001.yaml"]
    assert (tmp_path / "b" / "story_001.yaml").read_bytes() == (BENCH / "story_001.yaml").read_bytes()


def test_mounted_under_longtake():
    from longtake.cli import app

    r = runner.invoke(app, ["world", "vocab", "--json"])
    assert r.exit_code == 0 and "locations" in json.loads(r.stdout)
