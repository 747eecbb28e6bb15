"""Rich tables for ``longtake plan`` (kept apart so cli.py stays wiring only)."""

from __future__ import annotations

from rich.table import Table

from longtake.plan.timeline import Timeline

MIN_PROMPT = 12


def _marks(cut: bool, switch: bool, transition: str, first: bool) -> str:
    marks = []
    if cut:
        marks.append("CUT")
    if (cut or first) and transition == "fade":
        marks.append("FADE")
    if switch:
        marks.append("SWITCH")
    return " ".join(marks)


def _table(title: str, header: list[str], rows: list[list[str]], width: int) -> Table:
    """Every column keeps its full width; the last (the prompt) gets what is left."""
    fixed = [max(len(h), *(len(r[i]) for r in rows)) if rows else len(h) for i, h in enumerate(header[:-1])]
    # each column costs its width plus 3 (padding and border); plus the outer border
    room = max(MIN_PROMPT, width - sum(w + 3 for w in fixed) - 4)
    table = Table(title=title)
    for h, w in zip(header[:-1], fixed):
        table.add_column(h, no_wrap=True, min_width=w)
    table.add_column(header[-1], no_wrap=True, max_width=room)
    for r in rows:
        prompt = r[-1] if len(r[-1]) <= room else r[-1][: room - 1] + "…"
        table.add_row(*r[:-1], prompt)
    return table


def chunk_table(timeline: Timeline, width: int = 120) -> Table:
    rows = [
        [
            str(c.index),
            f"{c.start_frame}-{c.end_frame - 1}",
            f"{c.start_frame / timeline.fps:.2f}",
            f"{c.scene}.{c.shot_in_scene}",
            c.location,
            ",".join(c.characters) or "-",
            c.camera,
            _marks(c.cut, c.switch, c.transition, c.index == 0),
            c.prompt,
        ]
        for c in timeline.chunks
    ]
    header = ["chunk", "frames", "t (s)", "sc.sh", "location", "on screen", "camera", "marks", "prompt"]
    return _table(f"{timeline.title}: {len(timeline)} chunks", header, rows, width)


def shot_table(timeline: Timeline, width: int = 120) -> Table:
    rows = []
    for i, s in enumerate(timeline.shots):
        c = timeline.chunks[s.first_chunk]
        rows.append(
            [
                str(i),
                f"{s.scene}.{s.shot_in_scene}",
                f"{s.first_chunk}+{s.num_chunks}",
                f"{s.start_frame / timeline.fps:.2f}",
                f"{s.num_frames / timeline.fps:.2f} ({s.requested_seconds:g})",
                c.location,
                ",".join(c.characters) or "-",
                c.camera,
                c.prompt,
            ]
        )
    header = ["shot", "sc.sh", "chunks", "t (s)", "secs (script)", "location", "on screen", "camera", "prompt"]
    return _table(f"{timeline.title}: {len(timeline.shots)} shots", header, rows, width)
