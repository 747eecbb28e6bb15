"""``longtake eval VIDEO [--script story.yaml] -o report_dir/``: the consistency report.

The lead CLI mounts :data:`eval_app` as ``longtake eval``. The command only wires library
calls together (:func:`longtake.eval.run.evaluate_video`, :mod:`longtake.eval.html`) and
draws a progress bar on stderr; bad input (a missing file, a file that is not a video, a
script that does not parse, a missing weights folder) prints one red line and exits 2.
"""

from __future__ import annotations

from pathlib import Path
from typing import Annotated

import typer

from longtake.cli_common import TYPER_DEFAULTS, err, out, user_errors

eval_app = typer.Typer(
    name="eval",
    help="Measure how consistent and stable a video is over time; write report.json and an HTML page.",
    # a group whose callback is the command (so that it mounts as `longtake eval VIDEO`):
    # click groups stop parsing options at the first argument unless told otherwise
    **{**TYPER_DEFAULTS, "context_settings": {**TYPER_DEFAULTS["context_settings"], "allow_interspersed_args": True}},
    subcommand_metavar="",  # no sub-commands: keep "COMMAND [ARGS]" out of the usage line
)


def _chunking(value: str | None) -> tuple[int, int] | None:
    from longtake.eval.errors import EvalError

    if value is None:
        return None
    try:
        parts = [int(p) for p in value.replace(",", "/").split("/")]
    except ValueError:
        parts = []
    if len(parts) not in (1, 2) or min(parts) < 1:
        raise EvalError(f"--plan-chunk-frames '{value}': expected N or N/FIRST, e.g. 12 or 12/9 (frames per chunk / frames of the first chunk)")
    return parts[0], parts[-1] if len(parts) == 2 else parts[0]


@eval_app.callback(invoke_without_command=True)
@user_errors
def eval_cmd(
    videos: Annotated[list[Path], typer.Argument(metavar="VIDEO...", help="Video file(s); several are compared side by side.", show_default=False)],
    output: Annotated[Path, typer.Option("--output", "-o", help="Report folder (report.json, index.html, PNGs).")] = Path("eval_report"),
    script: Annotated[Path | None, typer.Option("--script", "-s", help="The story script the video was made from: per-shot breakdown, cut F1, probes.")] = None,
    compare: Annotated[bool, typer.Option("--compare", help="Compare the videos in one table and one set of plots (implied by several videos).")] = False,
    plan_chunk_frames: Annotated[str | None, typer.Option(help="How the video was planned: frames per chunk, or N/FIRST (e.g. 12/9). Default: guessed from the length.")] = None,
    segment_seconds: Annotated[float, typer.Option(min=0.5, help="Length of the fixed segments of the per-segment breakdown.")] = 10.0,
    max_side: Annotated[int, typer.Option(min=32, help="Frames are shrunk to this longer side before measuring.")] = 256,
    probes: Annotated[Path | None, typer.Option(help="Folder of StoryWorld probes (default: the ones shipped).")] = None,
    no_probes: Annotated[bool, typer.Option("--no-probes", help="Skip the StoryWorld probes.")] = False,
    identity_threshold: Annotated[float | None, typer.Option(help="Identity similarity under which a character is flagged.")] = None,
    dino: Annotated[Path | None, typer.Option(help="Local DINOv2 folder (save_pretrained): subject consistency.")] = None,
    clip: Annotated[Path | None, typer.Option(help="Local CLIP folder (save_pretrained, with tokenizer): background consistency and CLIP score.")] = None,
    dlib: Annotated[Path | None, typer.Option(help="Folder with dlib's face model files: human face identity.")] = None,
    model_fps: Annotated[float, typer.Option(min=0.1, help="Frames per second the DINOv2/CLIP/dlib models read.")] = 4.0,
) -> None:
    """Evaluate VIDEO: flicker, smoothness, warping error, background consistency, colour drift,
    sharpness, cuts; with --script per shot and segment, identity, location, attributes, alignment."""
    from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeElapsedColumn, TimeRemainingColumn

    from longtake.eval.errors import EvalError
    from longtake.eval.html import write_comparison, write_report
    from longtake.eval.run import EvalOptions, evaluate_video, load_script

    if compare and len(videos) < 2:
        raise EvalError("--compare needs at least two videos")
    from longtake.video.reader import probe

    for v in videos:
        probe(v)  # every input is checked before any work starts: a bad one fails at once
    if output.exists() and not output.is_dir():
        raise EvalError(f"--output {output} exists and is not a folder")
    opts = EvalOptions(script=script, plan_chunk_frames=_chunking(plan_chunk_frames), segment_seconds=segment_seconds, max_side=max_side,
                       use_probes=not no_probes, probes=probes, identity_threshold=identity_threshold, dino=dino, clip=clip, dlib=dlib,
                       model_fps=model_fps)
    story = load_script(script) if script is not None else None
    from longtake.eval.realworld import check_paths

    check_paths(dino, clip, dlib)
    results = []
    with Progress(TextColumn("[bold]{task.description}"), BarColumn(), MofNCompleteColumn(), TextColumn("frames"),
                  TimeElapsedColumn(), TextColumn("ETA"), TimeRemainingColumn(), console=err, transient=False) as bar:
        for v in videos:
            task = bar.add_task(v.name, total=None)

            def update(done: int, total: int, _task: int = task) -> None:
                bar.update(_task, completed=done, total=total)

            results.append(evaluate_video(v, opts, story=story, on_progress=update))
    try:
        output.mkdir(parents=True, exist_ok=True)
    except OSError as exc:
        raise EvalError(f"--output {output}: cannot create the folder ({exc.strerror})") from None
    if len(results) > 1:
        write_comparison(results, output)
    else:
        write_report(results[0], output)
    for r in results:
        s = r.report["summary"]
        line = (f"{r.report['video']['name']}: flicker {_f(s['flicker'])}, smoothness {_f(s['smoothness'])}, background {_f(s['background'])}, "
                f"colour drift {_f(s['colour_drift'])}, {s['cuts']} cuts")
        if "cut_f1" in s:
            line += f" (F1 {s['cut_f1']:.2f})"
        p = r.report.get("probes", {}).get("summary")
        if p:
            line += f"; identity {_f(p['identity'])}, {p['identity_flags']} flagged"
        out.print(line, highlight=False, soft_wrap=True)
        for f in r.report.get("probes", {}).get("identity", {}).get("flags", []):
            out.print(f"  [red]flag[/red] {f['name']}: identity {f['similarity']:.2f} at {f['time_s']:.1f} s (shot {f['shot']})", highlight=False)
    out.print(f"[green]wrote[/green] {output / 'index.html'} and {output / 'report.json'}", highlight=False)


def _f(v: float | None) -> str:
    return "-" if v is None else f"{v:.4g}"
