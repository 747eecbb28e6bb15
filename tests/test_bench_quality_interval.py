"""bench/bench_quality.py's story-level bootstrap interval (a bench script; its pure part tested here)."""

from __future__ import annotations

import importlib.util
from pathlib import Path

_spec = importlib.util.spec_from_file_location("bench_quality", Path(__file__).resolve().parents[1] / "bench" / "bench_quality.py")
bq = importlib.util.module_from_spec(_spec)
_spec.loader.exec_module(bq)


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
