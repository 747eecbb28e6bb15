"""The table of ``longtake bench memory`` and its files: JSON, markdown, PNG bar chart.

:func:`table` turns a bench result (:func:`longtake.bench_memory.run_memory_bench`) into
headers and rows of strings; the CLI prints them with rich, :func:`markdown` writes them,
:func:`write_outputs` writes ``memory_bench.json``, ``memory_bench.md`` and
``memory_bench.png`` atomically (a temporary file beside each, then a rename).
"""

from __future__ import annotations

import json
import math
from collections.abc import Mapping
from pathlib import Path
from typing import Any

from longtake.atomic import atomic_output, write_text_atomic

TRUTH = "ground truth"
TRUTH_LABEL = "ground truth (StoryWorld renderer; ceiling)"
FILES = ("memory_bench.json", "memory_bench.md", "memory_bench.png")


def _num(v: float | None, digits: int = 3) -> str:
    return "-" if v is None or (isinstance(v, float) and math.isnan(v)) else f"{v:.{digits}f}"


def _pct(v: float | None) -> str:
    return "-" if v is None else f"{100 * v:.0f}%"


def _pct_ci(v: float | None, ci: Any) -> str:
    """A share with its 95% interval: ``51% [38-64]`` (no interval when there is none)."""
    if v is None or not ci:
        return _pct(v)
    return f"{100 * v:.0f}% [{100 * ci[0]:.0f}-{100 * ci[1]:.0f}]"


def _retrieval(r: Mapping[str, Any] | None) -> str:
    """``62% / 40% (55% / 30%)``: memory frames showing the chunk's place / one of its characters, then at cuts."""
    sh = (r or {}).get("shares") or {}
    if sh.get("same_place") is None:
        return "-"
    return (f"{_pct(sh['same_place'])} / {_pct(sh.get('same_character'))} "
            f"({_pct(sh.get('cut_same_place'))} / {_pct(sh.get('cut_same_character'))})")


def _points(d: Mapping[str, Any], *, percent: bool = True) -> str:
    """A paired difference: ``+12 pts [-5, +30] (n=7)`` (``percent``: a share, else ``+0.041 [...]``)."""
    if d.get("diff") is None:
        return "no shared case"
    ci = d.get("ci")
    if percent:
        band = f" [{100 * ci[0]:+.0f}, {100 * ci[1]:+.0f}]" if ci else ""
        return f"{100 * d['diff']:+.0f} pts{band} (n={d['n']})"
    band = f" [{ci[0]:+.3f}, {ci[1]:+.3f}]" if ci else ""
    return f"{d['diff']:+.3f}{band} (n={d['n']})"


def _part(merged: Mapping[str, Any]) -> str:
    files = (merged.get("settings") or {}).get("stories_from")
    if isinstance(files, list):  # --story files, not bench stories
        return f"{merged['stories']} from --story files"
    return f"{merged['stories']} from story {merged['first'] or 0}"


def title(result: Mapping[str, Any]) -> str:
    rows = result["rows"]
    any_row = next(iter(rows.values()))
    settings = result.get("settings") or {}
    which = ""
    if settings.get("merged_from"):
        which = " (merged: " + ", ".join(_part(m) for m in settings["merged_from"]) + ")"
    elif settings.get("first"):
        which = f" (stories {settings['first']}-{settings['first'] + result['num_stories'] - 1})"
    return (f"longtake bench memory: {result['bench']}, {result['num_stories']} "
            f"{'story' if result['num_stories'] == 1 else 'stories'}{which}, seed {result['seed']}; "
            f"{any_row['returns']} returns (absence >= {result['min_return_gap_s']:g} s), "
            f"{any_row['revisits']} revisits; identity threshold {result['identity_threshold']:g}")


def table(result: Mapping[str, Any], *, compact: bool = False) -> tuple[list[str], list[list[str]]]:
    """Headers and one row of strings per mode (then the ground truth, labelled as the ceiling).
    ``compact``: the per-segment alignments in one column (for a terminal), else one each."""
    rows = result["rows"]
    nseg = max(len(r["alignment_segments"]) for r in rows.values())
    thr = result["identity_threshold"]
    seg_headers = [f"align s1-s{nseg}"] if compact else [f"align s{k + 1}" for k in range(nseg)]
    headers = ["mode", "returns found", "identity", f"identity >= {thr:g}", "attributes =", "hidden =",
               "hidden = (all returns)", "memory: place / cast (at cuts)", "location = (right)", "background", *seg_headers, "fps", "vs sink"]
    out = []
    for name in [*result["modes"], TRUTH]:
        r = rows[name]
        seg = list(r["alignment_segments"]) + [None] * (nseg - len(r["alignment_segments"]))
        slow = r.get("slowdown_vs_sink_pct")
        out.append([
            TRUTH_LABEL if name == TRUTH else name,
            f"{r['returns_found']}/{r['returns']}",
            _num(r["identity"]),
            _pct_ci(r["identity_pass"], r.get("identity_pass_ci")),
            _pct_ci(r["attributes_equal"], r.get("attributes_equal_ci")),
            _pct_ci(r["hidden_equal"], r.get("hidden_equal_ci")),
            _pct_ci(r.get("hidden_equal_all"), r.get("hidden_equal_all_ci")),
            _retrieval(r.get("retrieval")),
            f"{_pct_ci(r['location_consistent'], r.get('location_consistent_ci'))} ({_pct(r['location_right'])})",
            _num(r["background"]),
            *([" ".join(_num(v, 2) for v in seg)] if compact else [_num(v) for v in seg]),
            _num(r["fps"], 1),
            "-" if slow is None else f"{slow:+.1f}%",
        ])
    return headers, out


def paired_lines(result: Mapping[str, Any]) -> list[str]:
    """One line per mode against sink-only on the same cases (the returns both found, every revisit)."""
    lines = []
    for name in result["modes"]:
        p = result["rows"][name].get("paired_vs_sink")
        if not p:
            continue
        lines.append(f"{name} - sink: hidden = {_points(p['hidden_equal'])}; attributes = {_points(p['attributes_equal'])}; "
                     f"identity {_points(p['identity'], percent=False)}; location = on revisits {_points(p['location_consistent'])}"
                     + (f"; alignment per segment {_points(p['alignment'], percent=False)}" if p.get("alignment") else ""))
    return lines


def _readings(row: Mapping[str, Any]) -> str:
    if "hidden_readings" not in row:  # a result of an older version
        return "-"
    e, n = row["hidden_readings_equal"], row["hidden_readings"]
    misses = ", ".join(f"{k.replace('_', ' ')} {v}" for k, v in row["hidden_misses"].items())
    return f"{e}/{n}" + (f" ({100 * e / n:.1f}%)" if n else "") + (f"; misses: {misses}" if misses else "")


def looks_line(result: Mapping[str, Any]) -> str | None:
    """How many returns got their look back in the figure layer, per mode (None: no mode has looks)."""
    kept = {name: row["looks_kept"] for name, row in result["rows"].items() if row.get("looks_kept")}
    if not kept:
        return None
    return ("Looks kept at returns (the figure layer drew the character with her first appearance's look; the generator's "
            "state, not the video): " + ", ".join(f"{name} {k}/{n}" for name, (k, n) in kept.items()))


def markdown(result: Mapping[str, Any]) -> str:
    headers, rows = table(result)
    lines = [f"**{title(result)}**", "", "| " + " | ".join(headers) + " |", "|" + "---|" * len(headers)]
    lines += ["| " + " | ".join(r) + " |" for r in rows]
    paired = paired_lines(result)
    if paired:
        lines += ["", "Paired against sink-only on the same cases (mean difference [95% bootstrap interval] (cases)):", ""]
        lines += [f"- {p}" for p in paired]
    lines += ["", "Hidden-detail readings equal on both sides, over the returns found, and the details read differently:", ""]
    lines += [f"- {name}: {_readings(result['rows'][name])}" for name in result["rows"]]
    looks = looks_line(result)
    if looks:
        lines += ["", looks]
    lines += ["", "Columns (docs/memory.md, \"Benchmark\"): returns found = returns where the probes found the character "
              "on both sides / returns judged; identity = mean cosine similarity of the identity embeddings (return vs "
              "first appearance); identity >= t = share of returns at or above the threshold (not found counts as below); "
              "attributes / hidden = share of captioned-attribute / hidden-detail readings equal on both sides, over the "
              "returns found; hidden = (all returns) = the same over every return, one not found counting as 0; "
              "memory: place / cast = share of the memory frames put in attention that show the chunk's location / "
              "one of its characters on screen (planner tags), over all chunks and (in brackets) at shot starts; "
              "[a-b] = 95% interval (Wilson for shares of cases, bootstrap over returns for means); "
              "location = share of revisits where the location probe reads the same as on the first visit (right: reads "
              "the script's location on the revisit); background = "
              "similarity of revisit and first-visit frames outside character boxes; align sK = alignment probe score of "
              "segment K with its prompt; fps = frames generated per wall-clock second, side by side; vs sink = "
              "slowdown against sink-only (positive = slower)."]
    return "\n".join(lines) + "\n"


#: Panels of the bar chart: (summary key, label, scale).
PANELS = (("identity", "identity similarity", 1.0), ("identity_pass", "identity >= threshold (%)", 100.0),
          ("attributes_equal", "attributes equal (%)", 100.0), ("hidden_equal", "hidden details equal (%)", 100.0),
          ("location_consistent", "location same on revisit (%)", 100.0), ("background", "background similarity", 1.0),
          ("alignment", "mean segment alignment", 1.0), ("fps", "frames per second", 1.0))


def bar_chart(result: Mapping[str, Any], path: str | Path) -> Path:
    """One panel per main column, one bar per mode (the ground truth hatched), as PNG."""
    import matplotlib

    matplotlib.use("Agg", force=False)
    import matplotlib.pyplot as plt

    names = [*result["modes"], TRUTH]
    rows = result["rows"]
    fig, axes = plt.subplots(2, 4, figsize=(16, 6.5))
    colours = plt.rcParams["axes.prop_cycle"].by_key()["color"]
    for ax, (key, label, scale) in zip(axes.ravel(), PANELS):
        vals = [rows[n].get(key) for n in names]
        if key == "fps":  # the renderer is not a model: its speed would flatten the modes' bars
            names_k, vals = names[:-1], vals[:-1]
        else:
            names_k = names
        heights = [0.0 if v is None else v * scale for v in vals]
        bars = ax.bar(range(len(names_k)), heights, color=[colours[i % len(colours)] for i in range(len(names_k))])
        for b, n, v in zip(bars, names_k, vals):
            if n == TRUTH:
                b.set_hatch("//")
                b.set_facecolor("white")
                b.set_edgecolor("black")
            ax.annotate("-" if v is None else f"{v * scale:.2f}" if scale == 1.0 else f"{v * scale:.0f}",
                        (b.get_x() + b.get_width() / 2, b.get_height()), ha="center", va="bottom", fontsize=7)
        ax.set_xticks(range(len(names_k)), ["truth" if n == TRUTH else n for n in names_k], rotation=30, fontsize=8)
        ax.set_title(label, fontsize=9)
    fig.suptitle(title(result), fontsize=9)
    fig.tight_layout()
    path = Path(path)
    with atomic_output(path) as tmp:
        fig.savefig(tmp, format="png", dpi=90)
    plt.close(fig)
    return path


def write_outputs(result: Mapping[str, Any], out_dir: str | Path) -> list[Path]:
    """``memory_bench.json``, ``.md`` and ``.png`` in ``out_dir`` (made if missing), each atomically."""
    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    paths = [write_text_atomic(out / FILES[0], json.dumps(result, indent=1, default=_plain) + "\n"),
             write_text_atomic(out / FILES[1], markdown(result))]
    paths.append(bar_chart(result, out / FILES[2]))
    return paths


def _plain(obj: Any) -> Any:
    if hasattr(obj, "tolist"):
        return obj.tolist()
    if hasattr(obj, "item"):
        return obj.item()
    return str(obj)
