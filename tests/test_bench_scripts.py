"""Bench scripts: the pure parts (bench_quality's story-level interval, bench_memory_relevance's AUC and table) and bench_render end to end on random weights."""

from __future__ import annotations

import importlib.util
from pathlib import Path



def _load(name: str):
    spec = importlib.util.spec_from_file_location(name, Path(__file__).resolve().parents[1] / "bench" / f"{name}.py")
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


bq = _load("bench_quality")
br = _load("bench_memory_relevance")


def story(loc: list[bool], attrs: list[float]) -> dict:
    rows = [{"model_loc": v, "model_attr": [], "model_chance_attr": []} for v in loc]
    rows[0]["model_attr"] = attrs
    return {"rows": rows}


def test_interval_resamples_whole_stories():
    same = [story([True, False], [0.5, 1.0]), story([True, False], [0.5, 1.0])]
    assert bq.story_interval(same, "model") == ((50.0, 50.0), (75.0, 75.0))  # identical stories: no spread
    mixed = [story([True] * 4, [1.0]), story([False] * 4, [0.0])]
    (llo, lhi), (alo, ahi) = bq.story_interval(mixed, "model")
    assert llo == 0.0 and lhi == 100.0 and alo == 0.0 and ahi == 100.0  # two opposite stories: anything between
    assert bq.story_interval(same[:1], "model") == (None, None)
    loc, attr = bq.story_interval(mixed, "model_chance")  # no location for chance rows, no attribute pairs here
    assert loc is None and attr is None


def test_interval_holds_the_pooled_score():
    res = [story([True, True, False], [0.2, 0.4]), story([True], [0.9]), story([False, True], [0.6, 0.8, 1.0]), story([True], [])]
    rows = [r for s in res for r in s["rows"]]
    loc, attr, _ = bq.summarise(rows, "model")
    (llo, lhi), (alo, ahi) = bq.story_interval(res, "model")
    assert llo <= loc <= lhi and alo <= attr <= ahi
    assert bq.story_interval(res, "model") == bq.story_interval(res, "model")  # fixed seed


def test_auc_ranks_positives_over_negatives():
    assert br.auc([3.0, 2.0, 1.0, 0.0], [True, True, False, False]) == 1.0
    assert br.auc([0.0, 1.0, 2.0, 3.0], [True, True, False, False]) == 0.0  # the score prefers the wrong frames
    assert br.auc([1.0, 1.0], [True, False]) == 0.5  # a tie counts half
    assert br.auc([2.0, 0.0, 1.0], [True, False, True]) == 1.0
    assert br.auc([1.0, 2.0], [True, True]) is None


def test_relevance_table_splits_cuts_and_new_places():
    case = lambda cut, new, place, char, nam: {"cut": cut, "new_place": new, "cast": True, "place": place,  # noqa: E731
                                               "character": char, "nam": nam, "prev": None, "cur": -nam,
                                               "prompt": float(place)}
    cases = [case(False, False, True, True, 1.0), case(False, False, False, False, 0.0),
             case(True, False, True, False, 0.2), case(True, False, False, True, 0.9)]
    rows = br.table(cases)
    assert rows[2].startswith("| all with memory | 4 | 50% | 0.75 / - / 0.25 / 1.00 |")
    assert rows[3].startswith("| shot starts (cut) | 2 | 50% | 0.00 / - / 1.00 / 1.00 | 1.00 / - / 0.00 / 0.00 |")
    assert len(rows) == 4  # no cut to another place: no row


def test_bench_render_measures_each_memory_mode_and_refuses_unknown_ones():
    """bench_render.py end to end on random weights, a 2-second story, one short render per
    mode: one row per mode, the mode each child really ran, attended tokens reported."""
    import subprocess
    import sys

    script = Path(__file__).resolve().parents[1] / "bench" / "bench_render.py"
    out = subprocess.run([sys.executable, str(script), "--random-weights", "--skip-long", "--repeats", "1", "--short-seconds", "2",
                          "--threads", "1", "--memory", "sink", "entity"], capture_output=True, text=True, timeout=600)
    assert out.returncode == 0, out.stderr[-2000:]
    rows = [line.split("|")[1:-1] for line in out.stdout.splitlines() if line.startswith("| ") and "---" not in line][1:]
    assert [r[0].strip() for r in rows] == ["sink", "entity"]
    assert all(int(r[-1]) > 0 for r in rows)  # attended tokens
    held = [float(r[-2].split("(")[0]) for r in rows]  # state MB carried between chunks: KV cache at least
    assert all(h > 0 for h in held), rows
    bad = subprocess.run([sys.executable, str(script), "--memory", "bogus"], capture_output=True, text=True, timeout=120)
    assert bad.returncode == 2 and "unknown mode 'bogus'" in bad.stderr
