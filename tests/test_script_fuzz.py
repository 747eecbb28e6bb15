"""Property tests: whatever bytes or text a script holds, loading gives a Story or a ScriptError.

Random text, random bytes, mutations of the good examples (lines deleted, duplicated,
swapped, characters flipped, junk inserted) and random data in place of story fields, for
every format. Any other exception is a crash a user would see as a traceback.
"""

import json
import tempfile
from pathlib import Path

from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from longtake.script import FORMATS, ScriptError, Story, build_story, load_story, loads_story
from longtake.script.load import decode_text

from conftest import DATA

GOOD = DATA / "good"
SUFFIX = {name: suffixes[0] for name, suffixes in FORMATS.items()}
SAMPLES = {fmt: [(p, p.read_text(encoding="utf-8")) for p in sorted(GOOD.iterdir()) if p.suffix in FORMATS[fmt]] for fmt in FORMATS}
FUZZ = settings(max_examples=150, deadline=None, suppress_health_check=[HealthCheck.too_slow])

formats = st.sampled_from(sorted(FORMATS))
# Text that looks a little like scripts: their punctuation is likelier than arbitrary unicode.
script_chars = st.one_of(
    st.sampled_from(list("\n\n\n  :-[]{}\"',#@.!>()*/_=^~0123456789sxINTEXT")),
    st.characters(codec="utf-8"),
)
script_text = st.text(script_chars, max_size=300)
junk = st.text(script_chars, min_size=1, max_size=12)


def check(load, *args, **kwargs) -> None:
    """Run a loader; only a Story or a ScriptError of one-line, file-naming issues may come out."""
    try:
        result = load(*args, **kwargs)
    except ScriptError as err:
        assert err.issues
        for line in err.lines():
            assert line.strip()
        return
    assert isinstance(result, Story)


@FUZZ
@given(fmt=formats, text=script_text)
def test_random_text(fmt, text):
    check(loads_story, text, format=fmt, name="fuzz")


@FUZZ
@given(fmt=formats, data=st.binary(max_size=300))
def test_random_bytes(fmt, data):
    # what load_story does after reading the file
    try:
        text = decode_text(data, "fuzz")
    except ScriptError:
        return
    check(loads_story, text, format=fmt, name="fuzz")


@settings(max_examples=20, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(fmt=formats, data=st.binary(max_size=200))
def test_random_files(fmt, data):
    with tempfile.TemporaryDirectory() as tmp:
        path = Path(tmp) / f"script{SUFFIX[fmt]}"
        path.write_bytes(data)
        check(load_story, path)


def mutate(text: str, ops: list[tuple[str, int, int, str]]) -> str:
    lines = text.split("\n")
    for op, i, j, extra in ops:
        if not lines:
            lines = [extra]
            continue
        i, j = i % len(lines), j % len(lines)
        if op == "delete":
            del lines[i]
        elif op == "duplicate":
            lines.insert(i, lines[i])
        elif op == "swap":
            lines[i], lines[j] = lines[j], lines[i]
        elif op == "flip" and lines[i]:
            k = j % len(lines[i])
            lines[i] = lines[i][:k] + extra[0] + lines[i][k + 1 :]
        elif op == "insert":
            k = j % (len(lines[i]) + 1)
            lines[i] = lines[i][:k] + extra + lines[i][k:]
    return "\n".join(lines)


mutations = st.lists(
    st.tuples(st.sampled_from(["delete", "duplicate", "swap", "flip", "insert"]), st.integers(0, 200), st.integers(0, 200), junk),
    min_size=1,
    max_size=6,
)


@settings(max_examples=200, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(fmt=formats, pick=st.integers(0, 10), ops=mutations)
def test_mutated_good_scripts(fmt, pick, ops):
    path, text = SAMPLES[fmt][pick % len(SAMPLES[fmt])]
    check(loads_story, mutate(text, ops), format=fmt, name=path.name, base_dir=path.parent)


json_values = st.recursive(
    st.none() | st.booleans() | st.integers() | st.floats() | st.text(max_size=20),
    lambda inner: st.lists(inner, max_size=4) | st.dictionaries(st.text(max_size=10), inner, max_size=4),
    max_leaves=12,
)


def _replace_at(data, path: list[int], value):
    """Replace one node of nested data, chosen by a list of child indices."""
    if not path or not isinstance(data, (dict, list)) or not data:
        return value
    keys = list(data) if isinstance(data, dict) else list(range(len(data)))
    key = keys[path[0] % len(keys)]
    data[key] = _replace_at(data[key], path[1:], value)
    return data


@FUZZ
@given(path=st.lists(st.integers(0, 50), max_size=6), value=json_values)
def test_random_values_in_a_good_story(path, value):
    data = json.loads((GOOD / "story.json").read_text())
    check(build_story, _replace_at(data, path, value), {}, file="fuzz", base_dir=GOOD)


@FUZZ
@given(value=json_values)
def test_random_top_level_data(value):
    check(build_story, value, {}, file="fuzz")
