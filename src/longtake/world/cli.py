"""``longtake world ...``: render, sample, shards, bench, vocab.

The lead CLI mounts :data:`world_app` as ``longtake world``. Commands only wire library calls
together and draw progress bars; bad input (any :class:`~longtake.errors.LongtakeError`,
e.g. a word outside StoryWorld's vocabulary) prints one red line per problem on stderr and
exits with status 2, never a traceback.
"""

from __future__ import annotations

import json
import sys
from pathlib import Path
from typing import Annotated

import typer
from rich.console import Console
from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeElapsedColumn, TimeRemainingColumn
from rich.table import Table

from longtake.cli_common import TYPER_DEFAULTS, err, out, user_errors
from longtake.world.errors import WorldError

world_app = typer.Typer(
    name="world",
    help="StoryWorld: procedural stories with exact ground truth (render, sample, shards, bench, vocab).",
    **TYPER_DEFAULTS,
)


def _progress(console: Console, unit: str) -> Progress:
    return Progress(
        TextColumn("[bold]{task.description}"), BarColumn(), MofNCompleteColumn(), TextColumn(unit),
        TextColumn("{task.fields[info]}"), TimeElapsedColumn(), TextColumn("ETA"), TimeRemainingColumn(),
        console=console, transient=False,
    )


# -- render ----------------------------------------------------------------------------------


@world_app.command()
@user_errors
def render(
    story_path: Annotated[Path, typer.Argument(metavar="STORY", help="Script in StoryWorld's vocabulary.")],
    output: Annotated[Path, typer.Option("--output", "-o", help="Output .mp4; <stem>.truth.jsonl and <stem>.json go next to it.")] = Path("out.mp4"),
    width: Annotated[int | None, typer.Option(help="Frame width (default: the script's).")] = None,
    height: Annotated[int | None, typer.Option(help="Frame height (default: the script's).")] = None,
    fps: Annotated[int | None, typer.Option(help="Frames per second (default: the script's).")] = None,
    frames_per_chunk: Annotated[int, typer.Option(min=1, help="Frames per timeline chunk.")] = 12,
) -> None:
    """Render a script with StoryWorld's procedural renderer, with its exact ground truth."""
    from longtake.world.render_files import render_to_files

    with _progress(err, "chunks") as bar:
        task = bar.add_task("render", total=None, info="")

        def update(done: int, total: int, frames: int, frames_total: int) -> None:
            bar.update(task, completed=done, total=total, info=f"{frames}/{frames_total} frames")

        result = render_to_files(story_path, output, width=width, height=height, fps=fps, frames_per_chunk=frames_per_chunk, on_chunk=update)
    out.print(
        f"[green]wrote[/green] {result['video']} ({result['frames']} frames, {result['seconds']:.1f} s, "
        f"{result['width']}x{result['height']} at {result['fps']} fps); truth {result['truth']}"
        + (f"; manifest {result['manifest']}" if result.get("manifest") else ""),
        highlight=False,
        soft_wrap=True,
    )


# -- sample ----------------------------------------------------------------------------------


@world_app.command()
@user_errors
def sample(
    seed: Annotated[int, typer.Option(min=0, help="Sampler seed (with the split, it decides the story).")] = 0,
    duration: Annotated[float, typer.Option(help="Length in seconds (10 s to 10 min is typical).")] = 60.0,
    split: Annotated[str, typer.Option(help="train or heldout: the held-out split never overlaps training.")] = "train",
    characters: Annotated[str, typer.Option(help="Cast size: N or MIN-MAX.")] = "1-4",
    width: Annotated[int, typer.Option(help="Frame width written in the script.")] = 128,
    height: Annotated[int, typer.Option(help="Frame height written in the script.")] = 128,
    fps: Annotated[int, typer.Option(help="Frames per second written in the script.")] = 16,
    output: Annotated[Path | None, typer.Option("--output", "-o", help="Write the script here (.yaml/.json); default: print YAML.")] = None,
) -> None:
    """Draw a random StoryWorld story (a valid v1 script)."""
    from longtake.world.sampler import returns, revisited_locations, sample_story

    story = sample_story(seed, duration, split=_split(split), num_characters=_range(characters, "--characters"), fps=fps, size=(width, height))  # type: ignore[arg-type]
    if output is None:
        from longtake.script.load import story_to_data
        import yaml

        sys.stdout.write(yaml.safe_dump(story_to_data(story), sort_keys=False, allow_unicode=True, width=100))
        return
    story.save(output)
    back = returns(story, min_gap=15.0)
    out.print(
        f"[green]wrote[/green] {output}: '{story.title}', {story.duration:g} s, {len(story.characters)} characters, "
        f"{len(story.scenes)} scenes, {len(story.shots())} shots, {len(back)} returns after >= 15 s, "
        f"revisited: {', '.join(revisited_locations(story)) or 'none'}",
        highlight=False,
        soft_wrap=True,
    )


def _split(value: str) -> str:
    if value not in ("train", "heldout"):
        raise WorldError(f"--split '{value}' unknown; expected train or heldout")
    return value


def _range(value: str, name: str) -> tuple[int, int]:
    try:
        lo, _, hi = value.partition("-")
        a, b = int(lo), int(hi or lo)
    except ValueError:
        raise WorldError(f"{name} '{value}' is not N or MIN-MAX (e.g. 2 or 1-4)") from None
    return a, b


def _frange(value: str, name: str) -> tuple[float, float]:
    try:
        lo, _, hi = value.partition("-")
        return float(lo), float(hi or lo)
    except ValueError:
        raise WorldError(f"{name} '{value}' is not SECONDS or MIN-MAX (e.g. 10-60)") from None


# -- shards ----------------------------------------------------------------------------------


@world_app.command()
@user_errors
def shards(
    out_dir: Annotated[Path, typer.Argument(metavar="OUT_DIR", help="Dataset folder (created; resumed if it holds a run with the same settings).")],
    stories: Annotated[int, typer.Option("--stories", "-n", min=1, help="Number of stories.")] = 16,
    seed: Annotated[int, typer.Option(min=0, help="Dataset seed.")] = 0,
    split: Annotated[str, typer.Option(help="train or heldout.")] = "train",
    durations: Annotated[str, typer.Option(help="Story length range in seconds, MIN-MAX.")] = "10-60",
    characters: Annotated[str, typer.Option(help="Cast size range, MIN-MAX.")] = "1-4",
    width: Annotated[int, typer.Option(help="Frame width.")] = 128,
    height: Annotated[int, typer.Option(help="Frame height.")] = 128,
    fps: Annotated[int, typer.Option(help="Frames per second.")] = 16,
    clip_chunks: Annotated[int, typer.Option(min=1, help="Chunks per training clip.")] = 4,
    stories_per_shard: Annotated[int, typer.Option(min=1, help="Stories per shard file.")] = 16,
) -> None:
    """Render sampled stories into webdataset-style tar shards (deterministic, resumable)."""
    from longtake.world.shards import ShardProgress, write_shards

    kept: set[int] = set()
    bar = _progress(err, "stories")
    task = bar.add_task("shards", total=stories, info="")

    def update(p: ShardProgress) -> None:
        if not bar.live.is_started:  # the bar appears with the first story, after the settings are checked
            bar.start()
        if p.skipped:
            kept.add(p.shard)
        bar.update(task, completed=p.stories_done, info=f"shard {p.shard + 1}/{p.shards_total}, {p.clips_done} clips" + (" (kept)" if p.skipped else ""))

    try:
        index = write_shards(out_dir, num_stories=stories, seed=seed, split=_split(split), duration_range=_frange(durations, "--durations"),
                             size=(width, height), fps=fps, clip_chunks=clip_chunks, stories_per_shard=stories_per_shard,
                             num_characters=_range(characters, "--characters"), on_progress=update)
    finally:
        bar.stop()
    data = json.loads(index.read_text())
    note = f" ({len(kept)} kept from an earlier run)" if kept else ""
    out.print(f"[green]wrote[/green] {len(data['shards'])} shard{'s' if len(data['shards']) != 1 else ''}{note}, {data['num_clips']} clips of {data['clip_frames']} frames; index {index}", highlight=False, soft_wrap=True)


# -- bench -----------------------------------------------------------------------------------


@world_app.command()
@user_errors
def bench(
    out_dir: Annotated[Path, typer.Argument(metavar="OUT_DIR", help="Folder for story_NNN.yaml and index.json.")],
    n: Annotated[int, typer.Option("--n", min=1, help="Number of stories.")] = 50,
    seed: Annotated[int, typer.Option(min=0, help="Benchmark seed (candidate sampler seeds seed*100000 + k).")] = 0,
    check: Annotated[bool, typer.Option("--check", help="Only check an existing benchmark folder.")] = False,
    long: Annotated[bool, typer.Option("--long", help="Write storyworld-bench-long instead: 180 s stories with a return after >= 65 s (--n up to 16 is the set `longtake bench memory --long-returns` runs).")] = False,
) -> None:
    """Write (or --check) storyworld-bench: 60 s held-out stories, six 10 s prompt segments (--long: 180 s, eighteen)."""
    from longtake.world.bench_set import check_bench, write_bench

    if check:
        problems = check_bench(out_dir)
        if problems:
            raise WorldError("\n".join(problems))
        out.print(f"[green]ok[/green] {out_dir}: every story follows the protocol", highlight=False)
        return
    index = write_bench(out_dir, n=n, seed=seed, long=long)
    out.print(f"[green]wrote[/green] {n} stories and {index}", highlight=False)


# -- vocab -----------------------------------------------------------------------------------


@world_app.command()
@user_errors
def vocab(json_out: Annotated[bool, typer.Option("--json", help="Print the vocabulary as JSON.")] = False) -> None:
    """Print every word StoryWorld understands."""
    from longtake.world.vocab import vocabulary

    v = vocabulary()
    if json_out:
        sys.stdout.write(json.dumps(v, indent=2) + "\n")
        return
    table = Table("kind", "words", title="StoryWorld vocabulary", show_lines=True)
    table.add_row("locations", "\n".join(f"{k}: {d}" for k, d in v["locations"].items()))
    table.add_row("location words", ", ".join(f"{w}->{k}" if w != k else w for w, k in v["location_words"].items()))
    table.add_row("actions", "\n".join(f"{k}: {p}" for k, p in v["actions"].items()))
    table.add_row("action phrases", ", ".join(v["action_phrases"]))
    for key, words in v["appearance"].items():
        table.add_row(key.replace("_", " "), ", ".join(f"{a}->{b}" for a, b in words.items()) if isinstance(words, dict) else ", ".join(words))
    table.add_row("camera moves", ", ".join(v["camera_moves"]))
    table.add_row("transitions", ", ".join(v["transitions"]))
    table.add_row("filler words", " ".join(v["filler_words"]))
    table.add_row("hidden details", ", ".join(v["hidden_details"]["fields"]) + "\n(never captioned; drawn per character per story)")
    out.print(table)
