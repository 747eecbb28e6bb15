"""Validation errors: every bad script fails with one ScriptError naming file, line and field.

``tests/data/bad/_expected.yaml`` maps each bad script to a substring of its first error and
the line that error must point at; ``tests/data/good/`` holds one good script per format.
"""

import re
from pathlib import Path

import pytest
import yaml

from longtake.script import FORMATS, ScriptError, Story, load_story, loads_story
from longtake.script.load import MAX_SCRIPT_BYTES

from conftest import DATA

BAD = DATA / "bad"
GOOD = DATA / "good"
EXPECTED: dict[str, dict] = yaml.safe_load((BAD / "_expected.yaml").read_text(encoding="utf-8"))
#: file[:line[:col]]: [field.path: ]message
ERROR_LINE = re.compile(r"^(?P<file>[^:]+)(?::(?P<line>\d+)(?::(?P<col>\d+))?)?: (?P<rest>.+)$")


def test_every_bad_file_has_an_expectation():
    on_disk = {p.name for p in BAD.iterdir() if p.name != "_expected.yaml"}
    assert on_disk == set(EXPECTED), (on_disk ^ set(EXPECTED))
    assert len(on_disk) >= 28


@pytest.mark.parametrize("name", sorted(EXPECTED))
def test_bad_script(name):
    spec = EXPECTED[name]
    path = BAD / name
    with pytest.raises(ScriptError) as info:
        load_story(path)
    err = info.value
    assert type(err) is ScriptError
    first = err.issues[0]
    text = str(first)
    assert spec["message"] in text, text
    assert first.line == spec["line"], text
    assert first.file == str(path)
    match = ERROR_LINE.match(text)
    assert match and match["file"] == str(path), text
    if spec["line"] is not None:
        assert int(match["line"]) == spec["line"]
    for line in err.lines():  # every issue is one self-contained line naming the file
        assert "\n" not in line and line.startswith(str(path))


def test_field_path_and_column_are_reported():
    err = _error(BAD / "unknown_camera.yaml")
    issue = err.issues[0]
    assert issue.path == ("scenes", 0, "shots", 0, "camera")
    assert (issue.line, issue.column) == (14, 17)
    assert str(issue).startswith(f"{BAD / 'unknown_camera.yaml'}:14:17: scenes[0].shots[0].camera: unknown camera move")


def test_expected_values_are_listed():
    assert "expected one of: static, pan_left" in str(_error(BAD / "unknown_camera.yaml"))
    assert "expected one of: cut, fade" in str(_error(BAD / "unknown_transition.yaml"))
    assert "expected one of: mia" in str(_error(BAD / "unknown_character.yaml"))


def _error(path: Path, **kw) -> ScriptError:
    with pytest.raises(ScriptError) as info:
        load_story(path, **kw)
    return info.value


def test_file_over_size_cap(tmp_path):
    path = tmp_path / "huge.yaml"
    with path.open("wb") as fh:
        fh.write(b"title: huge\n# " + b"x" * (MAX_SCRIPT_BYTES + 1) + b"\n")
    err = _error(path)
    assert f"scripts are limited to {MAX_SCRIPT_BYTES} bytes" in str(err)
    assert str(path) in str(err)


def test_file_at_size_cap_is_read(tmp_path):
    path = tmp_path / "big.txt"
    line = b"A long shot of the sea\n"
    path.write_bytes(b"# " + b"y" * (MAX_SCRIPT_BYTES - len(line) - 3) + b"\n" + line)
    assert path.stat().st_size == MAX_SCRIPT_BYTES
    assert load_story(path).scenes[0].shots[0].prompt == "A long shot of the sea"


@pytest.mark.parametrize("suffix", [".yaml", ".json", ".txt", ".jsonl", ".fountain"])
def test_binary_junk_in_any_format(tmp_path, suffix):
    path = tmp_path / f"junk{suffix}"
    path.write_bytes(bytes(range(256)) * 4)
    err = _error(path)
    assert "binary data" in str(err) and err.issues[0].line == 1


def test_missing_file_and_directory(tmp_path):
    assert "file not found" in str(_error(tmp_path / "nope.yaml"))
    folder = tmp_path / "dir.yaml"
    folder.mkdir()
    assert "is a directory" in str(_error(folder))


def test_unknown_format_argument():
    err = _error(GOOD / "story.yaml", format="docx")
    assert "unknown format 'docx'" in str(err)


def test_no_suffix():
    with pytest.raises(ScriptError, match=r"unknown script format '\(no suffix\)'"):
        load_story(Path("story"))


def test_crlf_line_numbers_match_lf():
    text = (BAD / "unknown_camera.yaml").read_text()
    for fmt_text, fmt in ((text, "yaml"), ("title: t\r\nfine\r\nbad [pan_lft]\r\n", "text")):
        lf = _loads_error(fmt_text.replace("\r\n", "\n"), fmt)
        crlf = _loads_error(fmt_text.replace("\r\n", "\n").replace("\n", "\r\n"), fmt)
        assert lf.issues[0].line == crlf.issues[0].line


def _loads_error(text: str, fmt: str) -> ScriptError:
    with pytest.raises(ScriptError) as info:
        loads_story(text, format=fmt, name="s")
    return info.value


def test_several_issues_are_all_reported():
    text = (BAD / "unknown_character.yaml").read_text().replace("duration: 4", "duration: -1") + "        camera: zoom\n"
    err = _loads_error(text, "yaml")
    messages = "\n".join(err.lines())
    assert "duration" in messages and "camera" in messages
    assert all(line.startswith("s:") for line in err.lines())


# --- good scripts ----------------------------------------------------------------------------

GOOD_FILES = sorted(p for p in GOOD.iterdir())


def test_good_scripts_cover_every_format():
    formats = {name for p in GOOD_FILES for name, suffixes in FORMATS.items() if p.suffix in suffixes}
    assert formats == set(FORMATS)
    assert any("mode: per-second" in p.read_text() for p in GOOD_FILES if p.suffix == ".txt")


@pytest.mark.parametrize("path", GOOD_FILES, ids=lambda p: p.name)
def test_good_script_loads(path):
    story = load_story(path)
    assert isinstance(story, Story)
    assert story.duration > 0 and story.scenes and story.locations


def test_yaml_and_json_good_scripts_are_the_same_story():
    assert load_story(GOOD / "story.yaml").content_hash() == load_story(GOOD / "story.json").content_hash()
