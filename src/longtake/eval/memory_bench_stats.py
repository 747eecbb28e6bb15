"""How sure a ``longtake bench memory`` table is: intervals, paired differences, merged runs.

A 10-story table judges 16 returns and 10 revisits; the means over *found* returns rest on
3-8 cases, so one case moves a column by 6-33 points (docs/memory.md). The numbers here say
so in the table itself:

* **intervals** (95%): a Wilson score interval for every share of cases (returns found,
  identity >= threshold, location the same on a revisit), and a percentile bootstrap over the
  found returns for the means of per-return fractions (attributes =, hidden =);
* **hidden = (all returns)**: the hidden-detail match over *every* return, a return the probes
  do not find counting as no match. The issue's target reads "in at least 90% of cases"; the
  mean over found returns alone rewards a mode for finding fewer;
* **paired against sink**: each mode against sink-only on the *same* cases, the returns both
  found (hidden =, attributes =, identity) and every revisit (location the same), as a mean
  difference with a bootstrap interval over the cases. Side by side on the same returns is
  the comparison the issue's "+20 points over sink" asks for;
* **merging** (:func:`merge_results`): runs over disjoint story subsets (``--first``), e.g.
  two halves run at once on two cores, become one table, as if run in one go: per-story
  results are concatenated, the rows summarised again, fps from the summed frames and seconds.

Bootstraps use a fixed seed, so a table is reproducible from its JSON.
"""

from __future__ import annotations

import math
from collections.abc import Mapping, Sequence
from typing import Any

import numpy as np

from longtake.eval.memory_bench import summarise
from longtake.eval.memory_bench_report import TRUTH

#: Normal quantile of a two-sided 95% interval.
Z95 = 1.959964
#: Bootstrap resamples and their seed.
BOOTSTRAP = 2000
BOOTSTRAP_SEED = 0


class MergeError(ValueError):
    """Bench results that cannot be merged: other modes, settings or weights, or shared stories."""


def wilson(k: int, n: int, z: float = Z95) -> tuple[float, float] | None:
    """Wilson score interval of a share of ``k`` successes in ``n`` trials (None when n = 0)."""
    if n <= 0:
        return None
    if not 0 <= k <= n:
        raise ValueError(f"wilson: expected 0 <= k <= n, got k={k}, n={n}")
    p = k / n
    den = 1.0 + z * z / n
    mid = (p + z * z / (2 * n)) / den
    half = z * math.sqrt(p * (1 - p) / n + z * z / (4 * n * n)) / den
    return max(0.0, mid - half), min(1.0, mid + half)


def bootstrap_mean(values: Sequence[float], *, resamples: int = BOOTSTRAP, seed: int = BOOTSTRAP_SEED) -> tuple[float, float] | None:
    """95% percentile-bootstrap interval of the mean of ``values`` (None with fewer than 2)."""
    v = np.asarray([x for x in values if x is not None], dtype=np.float64)
    if v.size < 2:
        return None
    rng = np.random.default_rng(seed)
    means = v[rng.integers(0, v.size, size=(resamples, v.size))].mean(axis=1)
    lo, hi = np.percentile(means, [2.5, 97.5])
    return float(lo), float(hi)


def _returns(stories: Sequence[Mapping[str, Any]]) -> list[Mapping[str, Any]]:
    return [r for s in stories for r in s["returns"]]


def intervals(stories: Sequence[Mapping[str, Any]]) -> dict[str, Any]:
    """The intervals and the all-returns hidden-detail match of one row (its per-story scores)."""
    rets = _returns(stories)
    revs = [r for s in stories for r in s["revisits"]]
    found = [r for r in rets if r["found"]]
    n = len(rets)
    hidden_all_values = [r["hidden_equal"] if r["found"] else 0.0 for r in rets]  # a return not found scores 0
    return {
        "returns_found_ci": wilson(len(found), n),
        "identity_pass_ci": wilson(sum(bool(r["passes"]) for r in rets), n),
        "location_consistent_ci": wilson(sum(bool(r["consistent"]) for r in revs), len(revs)),
        "attributes_equal_ci": bootstrap_mean([r["attributes_equal"] for r in found]),
        "hidden_equal_ci": bootstrap_mean([r["hidden_equal"] for r in found]),
        "hidden_equal_all": float(np.mean(hidden_all_values)) if n else None,
        "hidden_equal_all_ci": bootstrap_mean(hidden_all_values),
    }


def paired(stories: Sequence[Mapping[str, Any]], reference: Sequence[Mapping[str, Any]]) -> dict[str, Any]:
    """A row against ``reference`` (sink-only) on the same cases: per-story scores of the
    same stories in the same order. Returns per measure ``{"n", "diff", "ci"}`` (diff = row
    minus reference, None when no case is shared); ``alignment`` over the segments (shots)."""
    if len(stories) != len(reference):
        raise ValueError(f"paired: {len(stories)} stories against {len(reference)}")
    both = [(a, b) for s, t in zip(stories, reference) for a, b in zip(s["returns"], t["returns"]) if a["found"] and b["found"]]
    revs = [(a, b) for s, t in zip(stories, reference) for a, b in zip(s["revisits"], t["revisits"])]
    segs = [(a, b) for s, t in zip(stories, reference) for a, b in zip(s.get("segments", []), t.get("segments", []))]

    def measure(pairs: Sequence[tuple[Mapping[str, Any], Mapping[str, Any]]], key: str) -> dict[str, Any]:
        d = [float(a[key]) - float(b[key]) for a, b in pairs]
        return {"n": len(d), "diff": float(np.mean(d)) if d else None, "ci": bootstrap_mean(d)}

    return {"hidden_equal": measure(both, "hidden_equal"), "attributes_equal": measure(both, "attributes_equal"),
            "identity": measure(both, "similarity"), "location_consistent": measure(revs, "consistent"),
            "alignment": measure(segs, "alignment")}


def retrieval_shares(counts: Mapping[str, int]) -> dict[str, float | None]:
    """Shares of installed memory frames that show the chunk's place / one of its characters,
    in all chunks and at shot starts (``cut_``), from :class:`~longtake.bench_memory.RetrievalCount` counts."""
    out: dict[str, float | None] = {}
    for p in ("", "cut_"):
        n, nc = counts.get(p + "frames", 0), counts.get(p + "frames_with_cast", 0)
        out[p + "same_place"] = counts.get(p + "same_place", 0) / n if n else None
        out[p + "same_character"] = counts.get(p + "same_character", 0) / nc if nc else None
    return out


def summary_rows(per_story: Sequence[Mapping[str, Any]], rows: Sequence[str], modes: Sequence[str],
                 frames: Mapping[str, int], seconds: Mapping[str, float], attended: Mapping[str, int],
                 retrieval: Mapping[str, Mapping[str, int]] | None = None) -> dict[str, dict[str, Any]]:
    """The table's rows (mode or :data:`TRUTH` -> numbers) from the per-story scores, the
    frames and seconds each row took, each mode's peak attended tokens and its retrieval
    counts (what its memory frames showed; absent in results of older versions)."""
    summary: dict[str, dict[str, Any]] = {}
    for row in rows:
        scores = [st["scores"][row] for st in per_story]
        s = summarise(scores) | intervals(scores)
        fps = frames[row] / seconds[row] if seconds[row] > 0 else None
        summary[row] = s | {"frames": frames[row], "seconds": seconds[row], "fps": fps}
        if row in attended:
            summary[row]["attended_tokens_max"] = attended[row]
        if retrieval is not None and row in retrieval:
            summary[row]["retrieval"] = dict(retrieval[row]) | {"shares": retrieval_shares(retrieval[row])}
        kept = [k for sc in scores for k in (sc.get("looks_kept") or [])]
        if any(sc.get("looks_kept") is not None for sc in scores):  # modes of a generator with looks (session 27 on)
            summary[row]["looks_kept"] = [sum(kept), len(kept)]
    sink = summary.get("sink", {}).get("fps")
    ref = [st["scores"]["sink"] for st in per_story] if "sink" in modes else None
    for row in modes:
        fps = summary[row]["fps"]
        summary[row]["slowdown_vs_sink_pct"] = (100.0 * (sink / fps - 1.0)) if sink and fps else None
        if ref is not None and row != "sink":
            summary[row]["paired_vs_sink"] = paired([st["scores"][row] for st in per_story], ref)
    summary[TRUTH]["slowdown_vs_sink_pct"] = None
    return summary


def _check(result: Mapping[str, Any], i: int) -> None:
    """Raise :class:`MergeError` naming what result ``i`` lacks."""
    modes = result.get("modes")
    if not isinstance(modes, list) or not isinstance(result.get("rows"), dict) or not isinstance(result.get("stories"), list):
        raise MergeError(f"result {i}: expected 'modes', 'rows' and 'stories' of a memory bench result")
    for row in (TRUTH, *modes):
        r = result["rows"].get(row)
        if not isinstance(r, dict) or "frames" not in r or "seconds" not in r:
            raise MergeError(f"result {i}: row {row!r} has no frames and seconds")
    for k, st in enumerate(result["stories"]):
        if not isinstance(st, dict) or not {"title", "seed", "scores"} <= set(st) or set(st["scores"]) != {TRUTH, *modes}:
            raise MergeError(f"result {i}: story {k} lacks a title, a seed or the scores of every row")


#: Keys that must agree for results to be merged.
_SAME = ("bench", "modes", "min_return_gap_s", "identity_threshold", "generators")


def merge_results(results: Sequence[Mapping[str, Any]]) -> dict[str, Any]:
    """One bench result from several over disjoint stories (:func:`run_memory_bench`'s
    output, e.g. read back from ``memory_bench.json``): stories concatenated in the given
    order, every row summarised again. Raises :class:`MergeError` when the runs differ in
    modes, settings that change the scores, or weights, or share a story (same title and seed)."""
    if len(results) < 2:
        raise MergeError(f"merging needs at least 2 bench results, got {len(results)}")
    for i, r in enumerate(results, start=1):
        _check(r, i)
    first = results[0]
    for i, r in enumerate(results[1:], start=2):
        for key in _SAME:
            if r.get(key) != first.get(key):
                raise MergeError(f"result {i} differs from result 1 in {key!r}: {r.get(key)!r} against {first.get(key)!r}")
    stories: list[dict[str, Any]] = []
    seen: set[tuple[str, int]] = set()
    for r in results:
        for st in r["stories"]:
            key = (st["title"], int(st["seed"]))
            if key in seen:
                raise MergeError(f"story {st['title']!r} (seed {st['seed']}) is in more than one result; merge disjoint runs (--first)")
            seen.add(key)
            stories.append(dict(st) | {"index": len(stories)})
    modes = list(first["modes"])
    rows = [TRUTH, *modes]
    frames = {row: sum(int(r["rows"][row]["frames"]) for r in results) for row in rows}
    seconds = {row: sum(float(r["rows"][row]["seconds"]) for r in results) for row in rows}
    attended = {m: max(int(r["rows"][m].get("attended_tokens_max", 0)) for r in results) for m in modes}
    retrieval = None
    if all("retrieval" in r["rows"][m] for r in results for m in modes):
        retrieval = {m: {k: sum(int(r["rows"][m]["retrieval"].get(k, 0)) for r in results) for k in results[0]["rows"][m]["retrieval"]
                         if k != "shares"} for m in modes}
    settings = dict(first.get("settings") or {})
    settings["merged_from"] = [{"first": (r.get("settings") or {}).get("first"), "seed": r["seed"], "stories": r["num_stories"],
                                "settings": r.get("settings")} for r in results]
    return {
        "bench": first["bench"],
        "num_stories": len(stories),
        "seed": min(int(r["seed"]) for r in results),
        "modes": modes,
        "min_return_gap_s": first["min_return_gap_s"],
        "identity_threshold": first["identity_threshold"],
        "settings": settings,
        "generators": first["generators"],
        "rows": summary_rows(stories, rows, modes, frames, seconds, attended, retrieval),
        "stories": stories,
    }
