"""Write a report folder: ``report.json``, ``index.html`` and the PNGs it shows.

Plots use matplotlib's Agg backend (no display needed): drift curves of every metric over
time with the shot boundaries, per-segment bars, the identity heat map and curves; the contact
sheet (first, middle and last frame of each shot) is tiled with numpy. Every file is written
atomically (:mod:`longtake.atomic`), so a crash never leaves half a report under its final
name. ``--compare`` puts several videos in one table and one set of plots, each video's full
report in a sub-folder.
"""

from __future__ import annotations

import html
import math
from pathlib import Path
from typing import Any

import cv2
import numpy as np

from longtake.atomic import atomic_output, write_text_atomic
from longtake.eval.report import BREAKDOWN, METRICS, comparison_table, to_json
from longtake.eval.run import EvalResult

#: Curves drawn over time: (series key, label).
CURVES = (("flicker", "flicker score"), ("smoothness", "motion smoothness"), ("warp_error", "flow warping error"),
          ("background", "background consistency"), ("colour_drift", "colour drift (delta E)"), ("sharpness", "sharpness"))
#: Shots per contact-sheet image (more go to further images).
SHEET_SHOTS = 24
LABEL_H = 14


def _plt() -> Any:
    import matplotlib

    matplotlib.use("Agg", force=False)
    import matplotlib.pyplot as plt

    return plt


def _save(fig: Any, path: Path) -> str:
    with atomic_output(path) as tmp:
        fig.savefig(tmp, format="png", dpi=90, bbox_inches="tight")
    _plt().close(fig)
    return path.name


def _smooth(v: np.ndarray, n: int) -> np.ndarray:
    """Mean over a centred window of n frames, NaN-aware."""
    n = min(n, v.size)
    if n <= 1:
        return v
    ok = np.isfinite(v)
    k = np.ones(n)
    num = np.convolve(np.where(ok, v, 0.0), k, "same")
    den = np.convolve(ok.astype(float), k, "same")
    with np.errstate(invalid="ignore", divide="ignore"):
        return np.where(den > 0, num / np.maximum(den, 1), np.nan)


def _series(report: dict[str, Any], key: str) -> np.ndarray:
    return np.array([np.nan if x is None else x for x in report["series"].get(key, [])], dtype=float)


def drift_plot(reports: list[dict[str, Any]], path: Path, *, cuts: list[float] | None = None, labels: list[str] | None = None) -> str:
    """One panel per metric over time; one line per report; dashed lines at ``cuts`` (s)."""
    plt = _plt()
    fig, axes = plt.subplots(len(CURVES), 1, figsize=(11, 1.7 * len(CURVES)), sharex=True)
    for ax, (key, label) in zip(axes, CURVES):
        for i, rep in enumerate(reports):
            v = _series(rep, key)
            fps = rep["series"]["fps"]
            t = np.arange(v.size) / fps
            name = labels[i] if labels else None
            if len(reports) == 1:
                ax.plot(t, v, lw=0.5, alpha=0.35, color="C0")
                ax.plot(t, _smooth(v, max(1, round(fps))), lw=1.2, color="C0", label="1 s mean")
            else:
                ax.plot(t, _smooth(v, max(1, round(fps))), lw=1.1, color=f"C{i}", label=name)
        for c in cuts or []:
            ax.axvline(c, color="k", lw=0.6, ls="--", alpha=0.5)
        ax.set_ylabel(label, fontsize=8)
        ax.tick_params(labelsize=7)
        ax.grid(alpha=0.2)
    axes[0].legend(fontsize=7, loc="lower left")
    axes[-1].set_xlabel("time (s); dashed: shot boundaries")
    return _save(fig, path)


def segment_plot(reports: list[dict[str, Any]], path: Path, *, labels: list[str] | None = None) -> str:
    """Per-segment bars of every breakdown metric (grouped by video when comparing)."""
    plt = _plt()
    extra = _segment_extras(reports)
    keys = [*BREAKDOWN, *extra]
    cols = 3
    rows = math.ceil(len(keys) / cols)
    fig, axes = plt.subplots(rows, cols, figsize=(12, 2.4 * rows), squeeze=False)
    width = 0.8 / len(reports)
    for ax, key in zip(axes.ravel(), keys):
        for i, rep in enumerate(reports):
            vals = extra[key][i] if key in extra else [s["metrics"].get(key) for s in rep["segments"]]
            x = np.arange(len(vals)) + i * width
            ax.bar(x, [np.nan if v is None else v for v in vals], width, color=f"C{i}", label=labels[i] if labels else None)
        ax.set_title(METRICS[key].label if key in METRICS else key, fontsize=9)
        ax.tick_params(labelsize=7)
        starts = [s["start_s"] for s in reports[0]["segments"]]
        step = max(1, len(starts) // 12)
        ax.set_xticks(np.arange(0, len(starts), step) + 0.4 - width / 2, [f"{t:g}" for t in starts[::step]])
        ax.set_xlabel(f"segment start (s), {reports[0]['segment_seconds']:g} s segments", fontsize=7)
    for ax in axes.ravel()[len(keys):]:
        ax.axis("off")
    if labels:
        axes[0, 0].legend(fontsize=7)
    fig.tight_layout()
    return _save(fig, path)


def _segment_extras(reports: list[dict[str, Any]]) -> dict[str, list[list[float | None]]]:
    """Per-segment values from the probes and the real-world models, when every report has them."""
    out: dict[str, list[list[float | None]]] = {}
    if all("segments" in r.get("probes", {}) for r in reports):
        out["probe alignment"] = [[s["alignment"] for s in r["probes"]["segments"]] for r in reports]
    for key in ("subject_consistency_dino", "background_consistency_clip"):
        if all(key in r.get("realworld", {}) for r in reports):
            out[key] = [r["realworld"][key]["segments"] for r in reports]
    if all("clip_score" in r.get("realworld", {}).get("background_consistency_clip", {}) for r in reports):
        out["CLIP score"] = [r["realworld"]["background_consistency_clip"]["clip_score"]["segments"] for r in reports]
    return {k: v for k, v in out.items() if any(x is not None for row in v for x in row)}


def identity_plots(report: dict[str, Any], folder: Path) -> list[str]:
    """Heat map (character x shot similarity to the first appearance) and curves over time."""
    ident = report.get("probes", {}).get("identity")
    if not ident or not ident["characters"]:
        return []
    plt = _plt()
    m = np.array([[np.nan if v is None else v for v in row] for row in ident["matrix"]], dtype=float)
    fig, ax = plt.subplots(figsize=(min(16, 2 + 0.35 * m.shape[1]), 0.9 + 0.45 * m.shape[0]))
    im = ax.imshow(m, vmin=0, vmax=1, cmap="viridis", aspect="auto", interpolation="nearest")
    ax.set_yticks(range(len(ident["names"])), ident["names"], fontsize=8)
    ax.set_xlabel("shot")
    for f in ident["flags"]:
        r = ident["characters"].index(f["character"])
        ax.scatter([f["shot"]], [r], marker="x", color="red", s=60)
    fig.colorbar(im, ax=ax, label="identity similarity to first appearance")
    names = [_save(fig, folder / "identity_matrix.png")]
    fig, ax = plt.subplots(figsize=(11, 3))
    for i, c in enumerate(ident["characters"]):
        cur = ident["curves"][c]
        ax.plot(cur["t"], cur.get("same_location", cur["similarity"]), marker=".", lw=1, color=f"C{i}", label=f"{ident['names'][i]} (same location)")
        ax.plot(cur["t"], cur["similarity"], lw=0.8, ls=":", color=f"C{i}", label=f"{ident['names'][i]} (first appearance)")
    ax.axhline(ident["threshold"], color="red", lw=0.8, ls="--", label="threshold")
    for f in ident["flags"]:
        ax.axvline(f["time_s"], color="red", lw=0.8)
    ax.set_xlabel("time (s)")
    ax.set_ylabel("identity similarity")
    ax.set_title("identity similarity to the first appearance at the same location (flags) and to the first appearance", fontsize=9)
    ax.legend(fontsize=7, ncol=4, loc="upper center", bbox_to_anchor=(0.5, -0.2))
    ax.grid(alpha=0.2)
    names.append(_save(fig, folder / "identity_curves.png"))
    return names


def contact_sheets(result: EvalResult, folder: Path) -> list[str]:
    """First, middle and last keyframe of each shot, one row per shot, labelled."""
    fps = result.report["video"]["fps"]
    rows: list[np.ndarray] = []
    names: list[str] = []
    for s in result.plan.shots:
        frames = sorted(k for k in result.keyframes if s.start <= k < s.end)
        if not frames:
            continue
        pick = [frames[0], frames[len(frames) // 2], frames[-1]] if len(frames) >= 3 else frames
        thumbs = [result.keyframes[k] for k in pick]
        h = max(t.shape[0] for t in thumbs)
        tiles = []
        for k, t in zip(pick, thumbs):
            tile = np.zeros((h + LABEL_H, t.shape[1], 3), np.uint8)
            tile[LABEL_H : LABEL_H + t.shape[0]] = t
            cv2.putText(tile, f"{k / fps:.1f}s", (2, LABEL_H - 3), cv2.FONT_HERSHEY_SIMPLEX, 0.35, (255, 255, 255), 1, cv2.LINE_AA)
            tiles.append(tile)
        label = np.zeros((h + LABEL_H, 150, 3), np.uint8)
        text = [f"shot {s.index}", f"{s.start / fps:.1f}-{s.end / fps:.1f} s"] + ([s.location] if s.location else []) + ([", ".join(s.characters)[:22]] if s.characters else [])
        for j, line in enumerate(text):
            cv2.putText(label, line, (4, 16 + 16 * j), cv2.FONT_HERSHEY_SIMPLEX, 0.4, (230, 230, 230), 1, cv2.LINE_AA)
        row = np.concatenate([label, *[_pad(t, 4) for t in tiles]], axis=1)
        rows.append(row)
    for i in range(0, len(rows), SHEET_SHOTS):
        part = rows[i : i + SHEET_SHOTS]
        w = max(r.shape[1] for r in part)
        sheet = np.concatenate([np.pad(r, ((0, 4), (0, w - r.shape[1]), (0, 0))) for r in part], axis=0)
        name = f"contact_sheet_{i // SHEET_SHOTS + 1}.png"
        ok, buf = cv2.imencode(".png", cv2.cvtColor(sheet, cv2.COLOR_RGB2BGR))
        assert ok
        with atomic_output(folder / name) as tmp:
            tmp.write_bytes(buf.tobytes())
        names.append(name)
    return names


def _pad(img: np.ndarray, right: int) -> np.ndarray:
    return np.pad(img, ((0, 0), (0, right), (0, 0)))


# -- HTML ------------------------------------------------------------------------------------

STYLE = """body{font-family:system-ui,sans-serif;margin:1.5em;max-width:1200px;color:#222}
table{border-collapse:collapse;margin:.5em 0 1.5em}td,th{border:1px solid #ccc;padding:3px 7px;font-size:13px;text-align:right}
th{background:#f3f3f3}td.l,th.l{text-align:left}.flag{color:#b00;font-weight:bold}img{max-width:100%;margin:.3em 0}
.note{color:#666;font-size:13px}"""


def _fmt(v: Any) -> str:
    if v is None:
        return "–"
    if isinstance(v, bool):
        return "yes" if v else "no"
    if isinstance(v, float):
        return f"{v:.4g}" if abs(v) < 1000 else f"{v:.0f}"
    return html.escape(str(v))


def _table(head: list[str], rows: list[list[Any]], left: int = 1) -> str:
    h = "".join(f"<th class='l'>{html.escape(x)}</th>" if i < left else f"<th>{html.escape(x)}</th>" for i, x in enumerate(head))
    body = "".join("<tr>" + "".join(f"<td class='l'>{_fmt(v)}</td>" if i < left else f"<td>{_fmt(v)}</td>" for i, v in enumerate(r)) + "</tr>" for r in rows)
    return f"<table><tr>{h}</tr>{body}</table>"


def _summary_rows(summary: dict[str, Any]) -> list[list[Any]]:
    rows = []
    for k, v in summary.items():
        info = METRICS.get(k)
        rows.append([info.label if info else k, v, info.range if info else "", info.better if info else "", info.description if info else ""])
    return rows


def _page(title: str, body: str) -> str:
    return f"<!doctype html><html><head><meta charset='utf-8'><title>{html.escape(title)}</title><style>{STYLE}</style></head><body>{body}</body></html>\n"


def _img(name: str) -> str:
    return f"<img src='{html.escape(name)}' alt='{html.escape(name)}'>"


def write_report(result: EvalResult, folder: str | Path) -> Path:
    """Write ``report.json``, the PNGs and ``index.html`` of one video into ``folder``."""
    folder = Path(folder)
    folder.mkdir(parents=True, exist_ok=True)
    rep = result.report
    fps = rep["video"]["fps"]
    cuts_s = [s.start / fps for s in result.plan.shots[1:]]
    images = {"drift": drift_plot([rep], folder / "drift_curves.png", cuts=cuts_s), "segments": segment_plot([rep], folder / "segments.png")}
    ident = identity_plots(rep, folder)
    sheets = contact_sheets(result, folder)
    rep["files"] = {"drift_curves": images["drift"], "segments": images["segments"], "identity": ident, "contact_sheets": sheets}
    write_text_atomic(folder / "report.json", to_json(rep))
    v = rep["video"]
    parts = [f"<h1>{html.escape(v['name'])}</h1>",
             f"<p class='note'>{v['frames']} frames, {v['duration_s']:.1f} s at {v['fps']:g} fps, {v['width']}x{v['height']}"
             + (f"; script '{html.escape(rep['script']['title'])}', {rep['script']['shots']} shots (frames from {html.escape(rep['script']['shot_frames_from'])})" if rep["script"] else "; no script: shots are the detected cuts")
             + f"; measured at {rep['timing']['frames_per_second'] or 0:.0f} frames/s. All numbers are in report.json.</p>",
             "<h2>Summary</h2>", _table(["metric", "value", "range", "better", "definition"], _summary_rows(rep["summary"]))]
    probes = rep.get("probes", {})
    if "summary" in probes:
        parts += ["<h2>StoryWorld probes</h2>", _table(["probe measure", "value"], [[k, x] for k, x in probes["summary"].items()])]
        flags = probes["identity"]["flags"]
        if flags:
            parts.append("<p class='flag'>" + "<br>".join(
                f"{html.escape(f['name'])}: identity drops to {f['similarity']:.2f} at {f['time_s']:.1f} s (shot {f['shot']})"
                + (f"; hidden details read differently: {html.escape(', '.join(f'{k} {a}→{b}' for k, (a, b) in f['hidden_changed'].items()))}" if f["hidden_changed"] else "")
                for f in flags) + "</p>")
        parts += [_img(n) for n in ident]
    elif probes.get("skipped"):
        parts.append(f"<p class='note'>StoryWorld probes skipped: {html.escape(probes['skipped'])}</p>")
    for key, sec in rep.get("realworld", {}).items():
        val = sec.get("value") if "value" in sec else None
        line = f"{key}: {_fmt(val)}" + (f"; CLIP score {_fmt(sec['clip_score']['value'])}" if "clip_score" in sec else "")
        parts.append(f"<p>{html.escape(line)}</p>")
    parts += ["<h2>Drift over time</h2>", _img(images["drift"]), "<h2>Per segment</h2>", _img(images["segments"])]
    parts += ["<h2>Shots</h2>", _shot_table(rep), "<h2>Contact sheet</h2>", *[_img(n) for n in sheets]]
    cuts = rep["cuts"]
    if "precision" in cuts:
        parts.append(f"<p>Cuts: {len(cuts['detected'])} detected, {len(cuts['planned'])} planned ({len(cuts['required'])} must be visible); "
                     f"precision {cuts['precision']:.3f}, recall {cuts['recall']:.3f}, F1 {cuts['f1']:.3f}; missed {cuts['missed']}, unplanned {cuts['unplanned']}.</p>")
    write_text_atomic(folder / "index.html", _page(f"longtake eval: {v['name']}", "".join(parts)))
    return folder


def _shot_table(rep: dict[str, Any]) -> str:
    probe_rows = {r["shot"]: r for r in rep.get("probes", {}).get("shots", [])}
    head = ["shot", "start s", "end s", "location", "characters", *[METRICS[k].label if k in METRICS else k for k in (*BREAKDOWN, "colour_drift_end")]]
    if probe_rows:
        head += ["location match", "attribute match", "alignment"]
    rows = []
    for s in rep["shots"]:
        r = [s["index"], s["start_s"], s["end_s"], s.get("location"), ", ".join(s.get("characters") or [])]
        r += [s["metrics"].get(k) for k in (*BREAKDOWN, "colour_drift_end")]
        if probe_rows:
            p = probe_rows.get(s["index"], {})
            attrs = [x for x in p.get("attributes", {}).values() if x is not None]
            r += [p.get("location_match"), float(np.mean(attrs)) if attrs else None, p.get("alignment")]
        rows.append(r)
    return _table(head, rows, left=1)


def write_comparison(results: list[EvalResult], folder: str | Path) -> Path:
    """Several videos: each full report in ``folder/<n>_<stem>/``, one table and plots on top."""
    folder = Path(folder)
    folder.mkdir(parents=True, exist_ok=True)
    subs = []
    for i, r in enumerate(results):
        sub = folder / f"{i + 1}_{Path(r.report['video']['name']).stem}"
        write_report(r, sub)
        subs.append(sub.name)
    reps = [r.report for r in results]
    labels = [f"{i + 1}: {r['video']['name']}" for i, r in enumerate(reps)]
    table = comparison_table(reps)
    cuts = [s.start / reps[0]["video"]["fps"] for s in results[0].plan.shots[1:]] if reps[0]["script"] else []
    drift = drift_plot(reps, folder / "drift_curves.png", cuts=cuts, labels=labels)
    seg = segment_plot(reps, folder / "segments.png", labels=labels)
    data = {"longtake_eval": reps[0]["longtake_eval"], "compare": table, "reports": subs, "videos": [r["video"] for r in reps],
            "summaries": [r["summary"] for r in reps], "probes": [r.get("probes", {}).get("summary") for r in reps],
            "files": {"drift_curves": drift, "segments": seg}}
    write_text_atomic(folder / "report.json", to_json(data))
    head = ["metric", "better", *labels]
    rows = [[row["metric"], row["better"], *row["values"]] for row in table["rows"]]
    probe_keys = sorted({k for r in reps for k in (r.get("probes", {}).get("summary") or {})})
    rows += [[f"probe {k}", "", *[(r.get("probes", {}).get("summary") or {}).get(k) for r in reps]] for k in probe_keys]
    links = "".join(f"<li><a href='{html.escape(s)}/index.html'>{html.escape(lab)}</a></li>" for s, lab in zip(subs, labels))
    body = ["<h1>longtake eval: comparison</h1>", _table(head, rows, left=2), f"<ul>{links}</ul>",
            "<h2>Drift over time (1 s means)</h2>", _img(drift), "<h2>Per segment</h2>", _img(seg)]
    write_text_atomic(folder / "index.html", _page("longtake eval: comparison", "".join(body)))
    return folder
