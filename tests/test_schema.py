"""Schema v1: structure, cross-references, JSON Schema, save/load round trip."""

import json

import pytest

from longtake.script import CAMERA_MOVES, build_story, ScriptError, Story, load_story, loads_story, story_json_schema
from longtake.script.schema import MAX_SHOT_SECONDS


def minimal(**over):
    data = {
        "title": "t",
        "characters": [{"id": "mia", "name": "Mia", "description": "a woman"}],
        "locations": [{"id": "office"}],
        "scenes": [{"location": "office", "shots": [{"prompt": "Mia sits", "characters": ["mia"], "duration": 2}]}],
    }
    data.update(over)
    return data


def test_defaults_and_duration():
    s = Story.model_validate(minimal())
    assert (s.fps, s.size.width, s.size.height, s.seed) == (16, 128, 128, 0)
    assert s.duration == 2
    assert s.scenes[0].shots[0].camera == "static" and s.scenes[0].shots[0].transition == "cut"


def test_example_loads(example_path):
    s = load_story(example_path)
    assert s.title == "Mia's long day"
    assert [c.id for c in s.characters] == ["mia", "leo"]
    assert s.duration == 20


@pytest.mark.parametrize(
    "mutate, path, needle",
    [
        (lambda d: d["scenes"][0]["shots"][0].update(characters=["zoe"]), "scenes[0].shots[0].characters[0]", "unknown character 'zoe'"),
        (lambda d: d["scenes"][0].update(location="parc"), "scenes[0].location", "unknown location 'parc'"),
        (lambda d: d["locations"].append({"id": "mia"}), "locations[1].id", "duplicate id 'mia'"),
        (lambda d: d["scenes"][0]["shots"][0].update(characters=["mia", "mia"]), "scenes[0].shots[0].characters[1]", "listed twice"),
        (lambda d: d["scenes"][0]["shots"][0].update(dialogue=[{"speaker": "bob", "text": "hi"}]), "scenes[0].shots[0].dialogue[0].speaker", "unknown speaker 'bob'"),
    ],
)
def test_reference_errors_name_the_field(mutate, path, needle):
    data = minimal()
    mutate(data)
    with pytest.raises(ScriptError) as info:
        Story.model_validate(data)
    assert any(needle in str(i) and path in str(i) for i in info.value.issues), info.value.lines()


def test_camera_typo_suggests():
    text = json.dumps(minimal(scenes=[{"location": "office", "shots": [{"prompt": "x", "duration": 1, "camera": "pan_lft"}]}]))
    with pytest.raises(ScriptError) as info:
        loads_story(text, format="json", name="s.json")
    line = info.value.lines()[0]
    assert "s.json" in line and "scenes[0].shots[0].camera" in line and "did you mean 'pan_left'" in line


def test_duration_limits():
    for bad in (0, -1, MAX_SHOT_SECONDS + 1):
        with pytest.raises(ScriptError, match="duration"):
            loads_story(json.dumps(minimal(scenes=[{"location": "office", "shots": [{"prompt": "x", "duration": bad}]}])), format="json")


def test_yaml_errors_carry_line_numbers():
    text = "title: t\nlocations:\n  - id: office\nscenes:\n  - location: office\n    shots:\n      - prompt: hi\n        duration: -3\n"
    with pytest.raises(ScriptError) as info:
        loads_story(text, name="x.yaml")
    issue = info.value.issues[0]
    assert (issue.file, issue.line) == ("x.yaml", 8)
    assert str(issue).startswith("x.yaml:8:")


def test_unknown_field_points_at_key_and_suggests():
    text = "title: t\nlocations:\n  - id: office\ncharaters: []\nscenes:\n  - location: office\n    shots: [{prompt: hi, duration: 1}]\n"
    with pytest.raises(ScriptError) as info:
        loads_story(text, name="x.yaml")
    assert info.value.issues[0].line == 4
    assert "did you mean 'characters'" in str(info.value)


def test_missing_reference_image(tmp_path):
    data = minimal()
    data["characters"][0]["refs"] = ["mia.png"]
    with pytest.raises(ScriptError, match="reference image not found"):
        build_story(data, base_dir=tmp_path)
    (tmp_path / "mia.png").write_bytes(b"\x89PNG")
    s = build_story(data, base_dir=tmp_path)
    assert s.characters[0].refs[0] == (tmp_path / "mia.png").resolve()


def test_json_schema_lists_camera_vocabulary():
    schema = story_json_schema()
    text = json.dumps(schema)
    assert all(move in text for move in CAMERA_MOVES)
    assert set(schema["required"]) >= {"title", "locations", "scenes"}


@pytest.mark.parametrize("suffix", [".yaml", ".json"])
def test_save_load_round_trip(tmp_path, example_path, suffix):
    s = load_story(example_path)
    out = tmp_path / f"story{suffix}"
    s.save(out)
    again = load_story(out)
    assert again == s and again.content_hash() == s.content_hash()
    assert not [p for p in tmp_path.iterdir() if p.name.startswith(".")]  # no temp files left
