"""The ``longtake`` command line: validate | plan | schema | render (+ world, ...).

The CLI only wires library calls together and turns their events into rich progress bars.
Bad input (any :class:`~longtake.errors.LongtakeError`) prints one line per problem on
stderr and exits with status 2, never a traceback.
"""

from __future__ import annotations

import json
import logging
import os
import sys
from pathlib import Path
from typing import Annotated

import typer
from rich.table import Table

from longtake import __version__
from longtake.cli_common import TYPER_DEFAULTS, err, fail, out, print_error, user_errors
from longtake.errors import LongtakeError

# libgomp's default lets idle OpenMP threads spin; when another process shares the cores, torch
# with 2 threads on a 2-core CPU then runs ~5x slower than with 1 (bench/bench_dit.py under a
# concurrent training run: 3190 ms per chunk; with OMP_WAIT_POLICY=PASSIVE 593 ms, 1 thread
# 603 ms). Read when torch loads, which the commands do lazily, after this line; a value the
# user set wins.
os.environ.setdefault("OMP_WAIT_POLICY", "PASSIVE")

app = typer.Typer(
    name="longtake",
    help="Long, consistent, multi-shot video from a story script. Every output is labelled AI-generated.",
    **TYPER_DEFAULTS,
)

#: Files a directory argument of ``validate`` picks up (a leading ``_`` or ``.`` skips one).
SCRIPT_SUFFIXES = (".yaml", ".yml", ".json", ".txt", ".jsonl", ".fountain", ".spmd")


def _version(value: bool) -> None:
    if value:
        out.print(f"longtake {__version__}")
        raise typer.Exit()


@app.callback()
def main_callback(
    version: Annotated[bool, typer.Option("--version", callback=_version, is_eager=True, help="Print the version and exit.")] = False,
    verbose: Annotated[int, typer.Option("--verbose", "-v", count=True, help="More log output (-vv for debug).")] = 0,
) -> None:
    logging.basicConfig(level=[logging.WARNING, logging.INFO, logging.DEBUG][min(verbose, 2)], format="%(levelname)s %(name)s: %(message)s")


FormatOpt = Annotated[str | None, typer.Option("--format", help="Script format: yaml, json, text, prompts, fountain (default: from the suffix).")]


def _expand(paths: list[Path]) -> list[Path]:
    files: list[Path] = []
    for p in paths:
        if p.is_dir():
            files.extend(sorted(f for f in p.rglob("*") if f.is_file() and f.suffix.lower() in SCRIPT_SUFFIXES and not f.name.startswith(("_", "."))))
        else:
            files.append(p)
    return files


@app.command()
def validate(
    paths: Annotated[list[Path], typer.Argument(help="Script files or folders of scripts.", show_default=False)],
    format: FormatOpt = None,
    quiet: Annotated[bool, typer.Option("--quiet", "-q", help="Print only errors.")] = False,
) -> None:
    """Check scripts: one line per error (file:line:col: field: message), exit 2 if any is bad."""
    from longtake.script import load_story

    files = _expand(paths)
    if not files:
        raise fail([f"{', '.join(map(str, paths))}: no script files found; expected files ending in {', '.join(SCRIPT_SUFFIXES)}"])
    bad = 0
    for f in files:
        try:
            story = load_story(f, format=format)
        except LongtakeError as exc:
            bad += 1
            for line in exc.lines():
                print_error(line)
            continue
        if not quiet:
            n_shots = len(story.shots())
            out.print(f"[green]ok[/green] {f}: '{story.title}', {len(story.scenes)} scenes, {n_shots} shots, {story.duration:.1f} s", highlight=False)
    if bad:
        if len(files) > 1 and not quiet:
            err.print(f"{bad} of {len(files)} scripts are invalid")
        raise typer.Exit(2)


@app.command()
@user_errors
def schema() -> None:
    """Print the JSON Schema of story script format v1."""
    from longtake.script import story_json_schema

    sys.stdout.write(json.dumps(story_json_schema(), indent=2) + "\n")


@app.command("plan")
@user_errors
def plan_cmd(
    story_path: Annotated[Path, typer.Argument(metavar="STORY", help="Script file.")],
    json_out: Annotated[bool, typer.Option("--json", help="Print the timeline as JSON.")] = False,
    frames_per_chunk: Annotated[int, typer.Option(min=1, help="Output frames per generation chunk.")] = 12,
    by_shot: Annotated[bool, typer.Option("--shots", help="One row per shot instead of per chunk.")] = False,
    format: FormatOpt = None,
) -> None:
    """Cut a story into generation chunks and print them."""
    from longtake.plan import plan
    from longtake.script import load_story

    timeline = plan(load_story(story_path, format=format), frames_per_chunk=frames_per_chunk)
    if json_out:
        sys.stdout.write(timeline.to_json() + "\n")
        return
    from longtake.cli_tables import chunk_table, shot_table

    out.print(shot_table(timeline, out.width) if by_shot else chunk_table(timeline, out.width))
    out.print(
        f"{len(timeline)} chunks of {timeline.frames_per_chunk} frames, {timeline.num_frames} frames, "
        f"{timeline.duration:.2f} s at {timeline.fps} fps, {timeline.width}x{timeline.height}",
        highlight=False,
    )


@app.command()
@user_errors
def render(
    story_path: Annotated[Path, typer.Argument(metavar="STORY", help="Script file.")],
    output: Annotated[Path, typer.Option("--output", "-o", help="Output .mp4 (a manifest .json is written next to it).")] = Path("out.mp4"),
    model: Annotated[str, typer.Option("--model", "-m", help="Generator: see `longtake models` (default: the built-in model).")] = "default",
    weights: Annotated[Path | None, typer.Option("--weights", help="A built-in model folder to use instead of the shipped weights (docs/models.md).")] = None,
    device: Annotated[str | None, typer.Option("--device", help="Where a learned model runs: cpu (default), cuda, cuda:1, mps.")] = None,
    precision: Annotated[str | None, typer.Option("--precision", help="auto (default: bfloat16 autocast where the CPU/GPU has native bf16, else float32; the built-in model on a GPU: float32), float32, bfloat16.")] = None,
    guidance: Annotated[float | None, typer.Option("--guidance", help="Classifier-free guidance scale of a learned model on the chunks that start a shot (default: the model's; 1.0 = off).")] = None,
    sprites: Annotated[bool | None, typer.Option("--sprites/--no-sprites", help="Draw the characters with the built-in model's figure layer when its folder has one (default: yes; docs/models.md).")] = None,
    seed: Annotated[int | None, typer.Option(help="Random seed (default: the script's).")] = None,
    threads: Annotated[int | None, typer.Option("--threads", min=1, help="CPU threads for torch (default: 1 on a machine with 2 cores or fewer, where it is faster than 2; else torch's default).")] = None,
    audio: Annotated[Path | None, typer.Option(help="A WAV file to mux into the video.")] = None,
    checkpoint_every: Annotated[int | None, typer.Option("--checkpoint-every", min=1, help="Save the render's state every N chunks in <output>.partial/ so it can be resumed.")] = None,
    resume: Annotated[bool, typer.Option("--resume", help="Continue the unfinished render in <output>.partial/ (starts afresh if there is none).")] = False,
    memory: Annotated[str | None, typer.Option("--memory", help="Long-range memory of a learned model: none, sink, nam, nam+sma, entity (default) (docs/memory.md).")] = None,
    memory_from: Annotated[Path | None, typer.Option("--memory-from", help="Start with the entity memory of an earlier render of the same cast (a file from --memory-out; implies --memory entity).")] = None,
    memory_out: Annotated[Path | None, typer.Option("--memory-out", help="After the render, save its entity memory to this file (--memory entity), for --memory-from.")] = None,
    format: FormatOpt = None,
) -> None:
    """Render a story to an mp4, chunk by chunk, with a progress bar."""
    from longtake.pipeline import load_generator, plan_for, render_story, set_render_threads
    from longtake.script import load_story

    story = load_story(story_path, format=format)
    set_render_threads(threads)
    generator = load_generator(model, story=story, weights=weights, device=device, precision=precision, memory=memory, memory_from=memory_from,
                               guidance=guidance, sprites=sprites)
    mem = generator.info().settings.get("memory")
    if memory_out is not None and (not isinstance(mem, dict) or mem.get("mode") != "entity"):
        raise fail(["--memory-out saves an entity memory; render with --memory entity"])
    settings = {"memory": mem.get("mode"), "memory_from": str(memory_from) if memory_from else None} if isinstance(mem, dict) else None
    timeline = plan_for(story, generator)
    from longtake.cli_progress import RenderProgressBar

    resumable = checkpoint_every is not None or resume
    try:
        with RenderProgressBar(out, timeline) as bar:
            result = render_story(
                story, timeline, generator, output, seed=seed, audio=audio, on_progress=bar.update,
                checkpoint_every=checkpoint_every, resume=resume, settings=settings,
            )
    except KeyboardInterrupt:
        if resumable:
            err.print(f"interrupted; continue with the same command and --resume ({output}.partial/ holds the work so far)", highlight=False)
        raise
    out.print(
        f"[green]wrote[/green] {result.video} ({result.frames} frames, {result.frames / timeline.fps:.1f} s) "
        f"in {result.wall_seconds:.1f} s = {result.realtime_factor:.2f}x real time; manifest {result.manifest}",
        highlight=False,
    )
    if memory_out is not None:
        from longtake.memory_files import save_memory_file

        out.print(f"[green]wrote[/green] entity memory {save_memory_file(generator, story, memory_out)}", highlight=False)


@app.command()
def models() -> None:
    """List the generators `render --model` accepts, and whether their weights are here."""
    from longtake.pipeline import DEFAULT_GENERATOR, available_generators, generator_status

    table = Table("name", "kind", "weights", "description")
    for name, (kind, desc) in available_generators().items():
        label = f"{name} (default)" if name == DEFAULT_GENERATOR else name
        table.add_row(label, kind, generator_status(name) or "-", desc)
    out.print(table)


def _mount_subcommands() -> None:
    from longtake.train.cli import train_command, train_look_reader_command, train_sprites_command

    app.command("train")(train_command)
    app.command("train-sprites")(train_sprites_command)
    app.command("train-look-reader")(train_look_reader_command)
    try:
        from longtake.world.cli import world_app
    except ImportError as exc:  # StoryWorld absent from a partial install
        logging.getLogger(__name__).debug("world commands unavailable: %s", exc)
        return
    app.add_typer(world_app, name="world", help="StoryWorld: procedural stories with exact ground truth.")


_mount_subcommands()
app.add_typer(__import__("longtake.eval.cli", fromlist=["eval_app"]).eval_app, name="eval", help="Consistency and quality report of any video (report.json + HTML).")
app.add_typer(__import__("longtake.cli_bench", fromlist=["bench_app"]).bench_app, name="bench", help="Benchmarks: `bench memory` compares the memory modes on storyworld-bench.")


def main() -> None:
    app()


if __name__ == "__main__":
    main()
