"""Intervals, paired differences and merged runs of ``longtake bench memory`` (eval/memory_bench_stats.py)."""

from __future__ import annotations

import json
import math

import pytest
from typer.testing import CliRunner

from longtake.cli import app
from longtake.eval.memory_bench_report import markdown
from longtake.eval.memory_bench_stats import MergeError, bootstrap_mean, intervals, merge_results, paired, summary_rows, wilson

runner = CliRunner()
TRUTH = "ground truth"
MODES = ["sink", "entity"]


def ret(hidden: float | None, sim: float = 0.7, attrs: float = 0.6) -> dict:
    """One judged return; ``hidden=None``: the probes did not find the character."""
    found = hidden is not None
    return {"found": found, "similarity": sim if found else None, "passes": found and sim >= 0.68,
            "attributes_equal": attrs if found else None, "hidden_equal": hidden, "same_location": True}


def rev(consistent: bool) -> dict:
    return {"consistent": consistent, "right": consistent, "background": 0.8}


def scores(returns: list[dict], revisits: list[dict], alignment: float = 0.3) -> dict:
    return {"returns": returns, "revisits": revisits, "segments": [{"alignment": alignment}]}


def story(title: str, seed: int, per_row: dict[str, dict]) -> dict:
    return {"index": 0, "title": title, "seed": seed, "num_frames": 100, "chunks": 5, "frames_read": 10, "scores": per_row}


def result(stories: list[dict], *, frames: int = 100, seconds: float = 4.0, first: int = 0) -> dict:
    rows = [TRUTH, *MODES]
    n = len(stories)
    return {"bench": "storyworld-bench", "num_stories": n, "seed": first, "modes": MODES, "min_return_gap_s": 15.0,
            "identity_threshold": 0.68, "settings": {"first": first}, "generators": {m: {"name": "builtin"} for m in MODES},
            "rows": summary_rows(stories, rows, MODES, dict.fromkeys(rows, frames * n), dict.fromkeys(rows, seconds * n),
                                 dict.fromkeys(MODES, 640)),
            "stories": stories}


def two_stories() -> tuple[dict, dict]:
    a = story("a", 0, {TRUTH: scores([ret(1.0), ret(0.9)], [rev(True)]),
                       "sink": scores([ret(0.5), ret(None)], [rev(False)]),
                       "entity": scores([ret(0.8), ret(0.6)], [rev(True)], alignment=0.25)})
    b = story("b", 1, {TRUTH: scores([ret(1.0)], [rev(True), rev(True)]),
                       "sink": scores([ret(0.4)], [rev(True), rev(True)]),
                       "entity": scores([ret(None)], [rev(True), rev(False)])})
    return a, b


def test_wilson_interval_closed_forms():
    z2 = 1.959964 ** 2
    assert wilson(0, 10) == (0.0, pytest.approx(z2 / (10 + z2)))  # k = 0: upper bound z^2 / (n + z^2)
    lo, hi = wilson(10, 10)
    assert hi == pytest.approx(1.0) and lo == pytest.approx(10 / (10 + z2))
    lo, hi = wilson(7, 16)
    assert lo < 7 / 16 < hi
    assert (lo, hi) == pytest.approx((1 - wilson(9, 16)[1], 1 - wilson(9, 16)[0]))  # k and n - k mirror each other
    lo10, hi10 = wilson(70, 160)
    assert lo < lo10 < 7 / 16 < hi10 < hi  # ten times the cases: narrower around the same share
    assert wilson(0, 0) is None
    with pytest.raises(ValueError):
        wilson(3, 2)


def test_bootstrap_interval_holds_the_mean_and_is_reproducible():
    assert bootstrap_mean([0.5, 0.5, 0.5]) == (0.5, 0.5)
    assert bootstrap_mean([0.4]) is None and bootstrap_mean([]) is None
    values = [0.0, 0.2, 0.5, 0.9, 1.0, 0.3]
    lo, hi = bootstrap_mean(values)
    assert lo < sum(values) / len(values) < hi and 0.0 <= lo and hi <= 1.0
    assert bootstrap_mean(values) == (lo, hi)  # fixed seed


def test_hidden_over_all_returns_counts_a_return_not_found_as_no_match():
    a, b = two_stories()
    iv = intervals([a["scores"]["sink"], b["scores"]["sink"]])  # hidden 0.5, not found, 0.4
    assert iv["hidden_equal_all"] == pytest.approx((0.5 + 0.4) / 3)
    assert iv["returns_found_ci"] == wilson(2, 3)
    assert iv["location_consistent_ci"] == wilson(2, 3)
    assert iv["hidden_equal_ci"] is not None and iv["hidden_equal_ci"][0] <= 0.45 <= iv["hidden_equal_ci"][1]


def test_paired_difference_uses_only_returns_found_by_both():
    a, b = two_stories()
    p = paired([a["scores"]["entity"], b["scores"]["entity"]], [a["scores"]["sink"], b["scores"]["sink"]])
    # shared found returns: story a's first only (sink misses a's second, entity misses b's)
    assert p["hidden_equal"]["n"] == 1 and p["hidden_equal"]["diff"] == pytest.approx(0.8 - 0.5)
    assert p["hidden_equal"]["ci"] is None  # one case: no interval
    assert p["location_consistent"]["n"] == 3 and p["location_consistent"]["diff"] == pytest.approx((1 + 0 - 1) / 3)
    assert p["alignment"]["n"] == 2 and p["alignment"]["diff"] == pytest.approx((-0.05 + 0) / 2)  # every segment, found or not
    with pytest.raises(ValueError):
        paired([a["scores"]["entity"]], [])


def test_merge_equals_one_run_over_all_stories():
    a, b = two_stories()
    whole = result([a, b])
    merged = merge_results([result([a]), result([b], first=1)])
    assert merged["num_stories"] == 2 and [s["index"] for s in merged["stories"]] == [0, 1]
    for row in (TRUTH, *MODES):
        for key in ("returns", "returns_found", "hidden_equal", "hidden_equal_all", "identity_pass", "location_consistent", "fps"):
            assert merged["rows"][row][key] == pytest.approx(whole["rows"][row][key]), (row, key)
    assert merged["rows"]["entity"]["paired_vs_sink"] == whole["rows"]["entity"]["paired_vs_sink"]
    assert merged["rows"]["entity"]["slowdown_vs_sink_pct"] == pytest.approx(0.0)
    md = markdown(merged)
    assert "merged: 1 from story 0, 1 from story 1" in md and "entity - sink: hidden = +30 pts (n=1)" in md
    assert "; alignment per segment -0.025 [" in md and "(n=2)" in md
    custom = [result([x]) for x in (a, b)]  # --story files: every run starts at 0, so the title names the files, not a story 0
    for r, name in zip(custom, ("a.yaml", "b.yaml")):
        r["settings"]["stories_from"] = [name]
    assert "merged: 1 from --story files, 1 from --story files" in markdown(merge_results(custom))


def test_merge_refuses_overlapping_or_different_runs():
    a, b = two_stories()
    with pytest.raises(MergeError, match="more than one result"):
        merge_results([result([a]), result([a, b])])
    other = result([b])
    other["identity_threshold"] = 0.5
    with pytest.raises(MergeError, match="identity_threshold"):
        merge_results([result([a]), other])
    broken = result([b])
    del broken["rows"]["sink"]["frames"]
    with pytest.raises(MergeError, match="row 'sink' has no frames"):
        merge_results([result([a]), broken])
    with pytest.raises(MergeError, match="at least 2"):
        merge_results([result([a])])


def test_cli_merges_two_runs_and_writes_the_table(tmp_path):
    a, b = two_stories()
    paths = []
    for i, res in enumerate([result([a]), result([b], first=1)]):
        p = tmp_path / f"r{i}.json"
        p.write_text(json.dumps(res))
        paths += ["--merge", str(p)]
    out = tmp_path / "merged"
    r = runner.invoke(app, ["bench", "memory", *paths, "--out", str(out)], terminal_width=250)
    assert r.exit_code == 0, r.output
    assert "entity - sink: hidden = +30 pts" in r.output
    res = json.loads((out / "memory_bench.json").read_text())
    assert res["num_stories"] == 2 and not math.isnan(res["rows"]["sink"]["fps"])
    assert "| entity |" in (out / "memory_bench.md").read_text()


@pytest.mark.parametrize("args, message", [
    (["--first", "45", "--stories", "10"], "--first 45 --stories 10: expected 0 <= first and first + stories <= 50"),
    (["--first", "-1"], "--first -1"),
    (["--merge", "{tmp}/nothing.json", "--merge", "{tmp}/nothing.json"], "cannot read it"),
    (["--merge", "{tmp}/bad.json", "--merge", "{tmp}/bad.json"], "not JSON (line 1"),
    (["--merge", "{tmp}/list.json", "--merge", "{tmp}/list.json"], "not a memory bench result"),
])
def test_bad_merge_or_subset_is_one_line_and_exit_2(tmp_path, args, message):
    (tmp_path / "bad.json").write_text("{oops")
    (tmp_path / "list.json").write_text("[1, 2]")
    r = runner.invoke(app, ["bench", "memory", *[a.format(tmp=tmp_path) for a in args]])
    assert r.exit_code == 2, r.output
    lines = [ln for ln in r.output.splitlines() if ln.strip()]
    assert len(lines) == 1 and message in lines[0] and lines[0].startswith("error:")


def test_retrieval_counts_what_memory_frames_show_in_all_chunks_and_at_cuts():
    from types import SimpleNamespace

    from longtake.bench_memory import RetrievalCount
    from longtake.eval.memory_bench_stats import retrieval_shares

    rc = RetrievalCount()
    cut = SimpleNamespace(cut=True, location="park", characters=("mia",))
    later = SimpleNamespace(cut=False, location="park", characters=())
    rc.add(cut, [("park", ("park", "leo")), ("office", ("office", "mia")), ("office", ("office",))])
    rc.add(later, [("park", ("park",))])
    rc.add(later, [])
    c = rc.counts
    assert (c["frames"], c["same_place"], c["frames_with_cast"], c["same_character"]) == (4, 2, 3, 1)
    assert (c["cut_frames"], c["cut_same_place"], c["cut_frames_with_cast"], c["cut_same_character"]) == (3, 1, 3, 1)
    sh = retrieval_shares(c)
    assert sh == {"same_place": 0.5, "same_character": pytest.approx(1 / 3), "cut_same_place": pytest.approx(1 / 3),
                  "cut_same_character": pytest.approx(1 / 3)}
    assert retrieval_shares(RetrievalCount().counts)["same_place"] is None  # no memory frames (sink, none)


def test_merge_adds_retrieval_counts():
    a, b = two_stories()
    ra, rb = result([a]), result([b], first=1)
    for r, n in ((ra, 3), (rb, 5)):
        for m in MODES:
            r["rows"][m]["retrieval"] = {"frames": n, "same_place": n - 1, "frames_with_cast": n, "same_character": 1,
                                         "cut_frames": 1, "cut_same_place": 0, "cut_frames_with_cast": 1, "cut_same_character": 1,
                                         "shares": {}}
    merged = merge_results([ra, rb])["rows"]["entity"]["retrieval"]
    assert merged["frames"] == 8 and merged["same_place"] == 6 and merged["shares"]["same_place"] == pytest.approx(6 / 8)
    assert "retrieval" not in merge_results([result([a]), result([b], first=1)])["rows"]["entity"]  # older results: none
