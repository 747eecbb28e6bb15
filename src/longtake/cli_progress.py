"""A rich progress bar for renders: chunks, frames, generation fps and ETA."""

from __future__ import annotations

from types import TracebackType

from rich.console import Console
from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeElapsedColumn, TimeRemainingColumn

from longtake.pipeline import RenderProgress
from longtake.plan.timeline import Timeline


class RenderProgressBar:
    """Context manager; pass :meth:`update` as the render's ``on_progress`` callback."""

    def __init__(self, console: Console, timeline: Timeline):
        self.timeline = timeline
        self.progress = Progress(
            TextColumn("[bold]{task.description}"),
            BarColumn(),
            MofNCompleteColumn(),
            TextColumn("chunks"),
            TextColumn("{task.fields[frames]} frames"),
            TextColumn("{task.fields[fps]:.1f} fps"),
            TextColumn("{task.fields[rt]:.2f}x real time"),
            TimeElapsedColumn(),
            TextColumn("ETA"),
            TimeRemainingColumn(),
            console=console,
            transient=False,
        )
        self.task = self.progress.add_task("render", total=len(timeline), frames=0, fps=0.0, rt=0.0)

    def update(self, p: RenderProgress) -> None:
        fps = p.frames_done / p.elapsed if p.elapsed > 0 else 0.0
        self.progress.update(self.task, completed=p.chunks_done, frames=f"{p.frames_done}/{p.frames_total}", fps=fps, rt=fps / self.timeline.fps)

    def __enter__(self) -> "RenderProgressBar":
        self.progress.start()
        return self

    def __exit__(self, et: type[BaseException] | None, ev: BaseException | None, tb: TracebackType | None) -> None:
        self.progress.stop()
