"""``longtake bench ...``: benchmarks as commands. ``longtake bench memory`` compares the memory modes.

The command wires the parts together (:mod:`longtake.bench_memory` runs the generators,
:mod:`longtake.eval.memory_bench` scores, :mod:`longtake.eval.memory_bench_report` makes the
table and files) and draws one progress bar per mode on stderr; bad input prints one line
and exits 2.
"""

from __future__ import annotations

from pathlib import Path
from typing import Annotated

import typer
from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeElapsedColumn, TimeRemainingColumn
from rich.table import Table

from longtake.cli_common import TYPER_DEFAULTS, err, fail, out, user_errors

bench_app = typer.Typer(name="bench", help="Benchmarks: `longtake bench memory` compares the memory modes on storyworld-bench.", **TYPER_DEFAULTS)


@bench_app.callback()
def bench_callback() -> None:
    """Benchmarks of longtake's generators."""


@bench_app.command("memory")
@user_errors
def memory_cmd(
    more_modes: Annotated[list[str] | None, typer.Argument(metavar="MODE", help="More memory modes (so that `--memory none sink nam` works).", show_default=False)] = None,
    memory: Annotated[list[str] | None, typer.Option("--memory", help="Memory modes to compare: none sink nam nam+sma entity (default: all five; repeat, list after it, or comma-separate).", show_default=False)] = None,
    stories: Annotated[int, typer.Option("--stories", help="How many storyworld-bench stories (N from --first on; 60 s each, 180 s with --long-returns; ignored with --story).")] = 10,
    first: Annotated[int, typer.Option("--first", help="Index of the first storyworld-bench story (0-49; 0-15 with --long-returns): another subset, e.g. to run two halves at once and --merge them.")] = 0,
    weights: Annotated[Path | None, typer.Option("--weights", help="A built-in model folder (default: the shipped weights).")] = None,
    seed: Annotated[int, typer.Option("--seed", help="Render seed of the first bench story (storyworld-bench story i uses seed + i, in every mode).")] = 0,
    out_dir: Annotated[Path | None, typer.Option("--out", help="Write memory_bench.json, memory_bench.md and memory_bench.png here.")] = None,
    probes: Annotated[Path | None, typer.Option("--probes", help="Folder of StoryWorld probes (default: the ones shipped).")] = None,
    device: Annotated[str | None, typer.Option("--device", help="Where the model runs: cpu (default), cuda, ...")] = None,
    precision: Annotated[str, typer.Option("--precision", help="auto, float32 or bfloat16 (as render).")] = "auto",
    threads: Annotated[int | None, typer.Option("--threads", min=1, help="CPU threads for torch (default as render: 1 on a machine with 2 cores or fewer, else torch's default).")] = None,
    long_returns: Annotated[bool, typer.Option("--long-returns", help="Run storyworld-bench-long instead: 16 stories of 180 s whose characters come back after 65 s or more, beyond NAM's 60 s look-ahead (returns judged from 65 s).")] = False,
    story_files: Annotated[list[Path] | None, typer.Option("--story", help="StoryWorld scripts to run instead of storyworld-bench (quick checks).", show_default=False)] = None,
    entity_figures: Annotated[bool, typer.Option("--entity-figures", help="Entity mode keeps and composites each character's first figure (MemoryConfig.entity_figures, docs/memory.md).")] = False,
    no_shot_sink: Annotated[bool, typer.Option("--no-shot-sink", help="Memory modes keep sink and window at a cut within a place, as sink-only does, with memory added (MemoryConfig.shot_sink=False; LongLive/MemFlow's layout).")] = False,
    nam_score: Annotated[str, typer.Option("--nam-score", help="How NAM ranks its frames: prompt (default: the frames' prompts against the current one) or memflow (MemFlow's text keys . frame keys) (docs/memory.md).")] = "prompt",
    nam_gate: Annotated[float | None, typer.Option("--nam-gate", help="With --nam-score prompt: the relevance (cosine, -1 to 1) a NAM frame needs to be installed; -1 installs all (default: MemoryConfig's, 0.83).")] = None,
    nam_lookahead: Annotated[float | None, typer.Option("--nam-lookahead", help="With --nam-score prompt: seconds of the script ahead whose prompts NAM also ranks its frames by; 0 = the current prompt only, as MemFlow (default: MemoryConfig's, 60).")] = None,
    entity_gate: Annotated[float | None, typer.Option("--entity-gate", help="Entity mode installs a generated frame only when its prompt reaches this relevance (cosine, -1 to 1) to the chunk's; -1 installs all (default: MemoryConfig's, 0.83).")] = None,
    entity_place: Annotated[bool, typer.Option("--entity-place/--entity-any-place", help="Entity mode installs a generated frame only when it was made at the chunk's location (default), or from any place (MemoryConfig.entity_place).")] = True,
    min_return_gap: Annotated[float | None, typer.Option("--min-return-gap", hidden=True, help="Absence (s) that makes a return (default: the bench's 15 s).")] = None,
    merge: Annotated[list[Path] | None, typer.Option("--merge", help="Render nothing: merge these memory_bench.json files of disjoint runs (--first) into one table (repeat).", show_default=False)] = None,
) -> None:
    """Render storyworld-bench with every memory mode side by side; one table of returns, revisits, alignment and speed."""
    if merge:
        _show(_merged(merge), out_dir)
        return
    from longtake.bench_memory import MODES, TRUTH, BenchProgress, check_modes, run_memory_bench
    from longtake.world import bench_set

    modes = check_modes([m.strip() for v in [*(memory or []), *(more_modes or [])] for m in v.split(",") if m.strip()] or list(MODES))
    spec = bench_set.bench_spec(long_returns)
    if stories < 1:
        raise fail([f"--stories {stories}: expected at least 1"])
    if long_returns and story_files:
        raise fail(["--long-returns runs storyworld-bench-long; --story runs your own scripts: give one of them"])
    if first < 0 or (not story_files and first + stories > spec.size):
        raise fail([f"--first {first} --stories {stories}: expected 0 <= first and first + stories <= {spec.size} ({spec.name} has {spec.size} stories)"])
    if weights is not None and not weights.is_dir():
        raise fail([f"--weights {weights}: no such folder; expected a built-in model folder (docs/models.md)"])
    if nam_score not in ("prompt", "memflow"):
        raise fail([f"--nam-score {nam_score!r}: expected prompt or memflow"])
    if nam_gate is not None and (nam_score != "prompt" or not -1.0 <= nam_gate <= 1.0):
        raise fail([f"--nam-gate {nam_gate}: expected a cosine similarity from -1 to 1, with --nam-score prompt"])
    if nam_lookahead is not None and (nam_lookahead < 0 or (nam_lookahead > 0 and nam_score != "prompt")):
        raise fail([f"--nam-lookahead {nam_lookahead}: expected seconds >= 0 (above 0 only with --nam-score prompt)"])
    if entity_gate is not None and not -1.0 <= entity_gate <= 1.0:
        raise fail([f"--entity-gate {entity_gate}: expected a cosine similarity from -1 to 1"])
    if min_return_gap is not None and min_return_gap <= 0:
        raise fail([f"--min-return-gap {min_return_gap}: expected a positive number of seconds"])

    from longtake.eval.probes import StoryWorldProbes
    from longtake.generate.builtin import builtin_generator
    from longtake.memory.config import MEMORY_SEGMENT_MODES, MemoryConfig

    from longtake.pipeline import set_render_threads

    set_render_threads(threads)
    probe_set = StoryWorldProbes.load(probes)
    if story_files:
        from longtake.script import load_story

        chosen = [load_story(p) for p in story_files]
    else:
        chosen = [item.story for item in spec.make(first + stories)[first:]]
    if entity_figures and "entity" not in modes:
        raise fail(["--entity-figures changes the entity mode; add it to --memory"])
    configs = {m: MemoryConfig(mode=m, entity_figures=entity_figures and m == "entity",  # type: ignore[arg-type]
                               shot_sink=False if no_shot_sink and m in MEMORY_SEGMENT_MODES else None,
                               nam_score=nam_score, nam_gate=nam_gate, nam_lookahead=nam_lookahead, entity_gate=entity_gate,
                               entity_place=entity_place) for m in modes}  # type: ignore[arg-type]
    generators = {m: builtin_generator(weights, device=device or "cpu", precision=precision, memory=cfg) for m, cfg in configs.items()}
    rows = [TRUTH, *modes]
    with Progress(TextColumn("[bold]{task.description:>14}"), BarColumn(), MofNCompleteColumn(), TextColumn("chunks"),
                  TextColumn("story {task.fields[story]}"), TimeElapsedColumn(), TimeRemainingColumn(), console=err) as bar:
        tasks = {r: bar.add_task(r, total=None, story="-") for r in rows}

        def progress(p: BenchProgress) -> None:
            bar.update(tasks[p.row], completed=p.chunks_done, total=p.chunks_total, story=f"{p.story + 1}/{p.stories}")

        result = run_memory_bench(chosen, generators, probe_set, seed=seed + (0 if story_files else first), on_progress=progress,
                                  name="custom stories" if story_files else spec.name,
                                  min_return_gap=min_return_gap or spec.min_return_gap,
                                  settings={"weights": str(weights) if weights else "shipped", "device": device or "cpu",
                                            "precision": precision, "stories_from": [str(p) for p in story_files] if story_files else spec.name,
                                            "first": 0 if story_files else first, "shot_sink": not no_shot_sink,
                                            "nam": {"score": nam_score, "gate": configs[modes[0]].use_nam_gate, "lookahead_s": configs[modes[0]].use_nam_lookahead},
                                            "entity_gate": configs[modes[0]].use_entity_gate, "entity_place": entity_place})
    _show(result, out_dir)


def _merged(paths: list[Path]) -> dict:
    """The bench results in ``paths`` merged into one (bad files: one line, exit 2)."""
    import json

    from longtake.eval.memory_bench_stats import MergeError, merge_results

    results = []
    for p in paths:
        try:
            data = json.loads(p.read_text())
        except OSError as e:
            raise fail([f"--merge {p}: cannot read it ({e.strerror or e}); expected a memory_bench.json of `longtake bench memory --out`"]) from None
        except json.JSONDecodeError as e:
            raise fail([f"--merge {p}: not JSON (line {e.lineno}: {e.msg}); expected a memory_bench.json of `longtake bench memory --out`"]) from None
        if not isinstance(data, dict) or not {"rows", "stories", "modes"} <= set(data):
            raise fail([f"--merge {p}: not a memory bench result (no rows, stories and modes); expected a memory_bench.json of `longtake bench memory --out`"])
        results.append(data)
    try:
        return merge_results(results)
    except MergeError as e:
        raise fail([f"--merge: {e}"]) from None


def _show(result: dict, out_dir: Path | None) -> None:
    """Print the table (and the paired differences) and write the files."""
    from longtake.eval.memory_bench_report import looks_line, paired_lines, table, title, write_outputs

    headers, body = table(result, compact=True)
    t = Table(*headers, title=title(result), title_justify="left")
    for row in body:
        t.add_row(*row)
    out.print(t)
    for line in [*paired_lines(result), looks_line(result)]:
        if line:
            out.print(line, highlight=False)
    if out_dir is not None:
        for p in write_outputs(result, out_dir):
            out.print(f"[green]wrote[/green] {p}", highlight=False)
