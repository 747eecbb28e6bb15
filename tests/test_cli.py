"""The CLI: exit codes, one-line errors, no tracebacks for bad input."""

import json
import subprocess
import sys

import pytest
import yaml
from typer.testing import CliRunner

from longtake import __version__
from longtake.cli import app

from conftest import DATA, EXAMPLES

runner = CliRunner()
BAD = DATA / "bad"


def run(*args):
    return runner.invoke(app, [str(a) for a in args])


def test_version():
    r = run("--version")
    assert r.exit_code == 0 and __version__ in r.output


def test_help_lists_commands():
    r = run("--help")
    assert r.exit_code == 0
    for cmd in ("validate", "plan", "schema", "render"):
        assert cmd in r.output


def test_validate_examples():
    r = run("validate", EXAMPLES)
    assert r.exit_code == 0, r.output
    assert "ok" in r.output


def test_schema_is_json():
    r = run("schema")
    assert r.exit_code == 0
    assert json.loads(r.stdout)["title"].startswith("longtake story script")


def test_plan_json_and_table(example_path):
    r = run("plan", example_path, "--json")
    assert r.exit_code == 0
    data = json.loads(r.stdout)
    assert len(data["chunks"]) == 27 and data["num_frames"] == 324
    r = run("plan", example_path)
    assert r.exit_code == 0 and "27 chunks of 12 frames" in r.output


def _bad_cases():
    expected = BAD / "_expected.yaml"
    if not expected.exists():
        return []
    return sorted(yaml.safe_load(expected.read_text()).items())


@pytest.mark.parametrize("name, spec", _bad_cases() or [pytest.param(None, None, marks=pytest.mark.skip(reason="no bad cases"))])
def test_validate_rejects_each_bad_script_in_one_line(name, spec):
    r = subprocess.run([sys.executable, "-m", "longtake.cli", "validate", str(BAD / name)], capture_output=True, text=True, timeout=60)
    assert r.returncode == 2, (name, r.stdout, r.stderr)
    assert "Traceback" not in r.stderr
    lines = [line for line in r.stderr.splitlines() if line.strip()]
    assert lines and all(line.startswith("error: ") for line in lines), lines
    needle = spec["message"] if isinstance(spec, dict) else str(spec)
    assert any(needle in line for line in lines), (needle, lines)
    assert all(name in line for line in lines), lines  # every line names the file


def test_validate_directory_of_bad_scripts_exits_2():
    if not BAD.exists():
        pytest.skip("no bad cases")
    r = run("validate", BAD)
    assert r.exit_code == 2


def test_missing_file_is_one_line(tmp_path):
    r = subprocess.run([sys.executable, "-m", "longtake.cli", "plan", str(tmp_path / "nope.yaml")], capture_output=True, text=True, timeout=60)
    assert r.returncode == 2 and "Traceback" not in r.stderr
    assert r.stderr.strip().count("\n") == 0 and "file not found" in r.stderr


def test_unknown_model_is_a_clear_error(example_path, tmp_path):
    r = run("render", example_path, "-o", tmp_path / "x.mp4", "--model", "nonexistent")
    assert r.exit_code == 2 and "unknown model 'nonexistent'" in r.output
    assert not (tmp_path / "x.mp4").exists()
