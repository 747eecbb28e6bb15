"""``longtake train``: train the built-in model on StoryWorld (resumable)."""

from __future__ import annotations

import json
import shlex
import sys
import time
from pathlib import Path
from typing import Annotated

import typer

from longtake.cli_common import err, out, user_errors

#: seconds between the plain progress lines printed when stderr is not a terminal
LOG_SECONDS = 30.0


def parse_sets(items: list[str] | None, *, known: set[str] | None = None) -> dict:
    """``--set KEY=JSON`` options -> {key: value}. Without ``known``, a value that is not JSON
    is kept as a string (``longtake train`` checks keys and types itself); with ``known``, an
    unknown key or a value that is not JSON is a TrainError (one line)."""
    from longtake.train.config import TrainError

    changes = {}
    for item in items or []:
        key, sep, value = item.partition("=")
        if not sep or (known is not None and key not in known):
            hint = f" with KEY one of {', '.join(sorted(known))}" if known is not None else ""
            raise TrainError(f"--set {item!r}: expected KEY=VALUE{hint}")
        try:
            changes[key] = json.loads(value)
        except ValueError:
            if known is not None:
                raise TrainError(f"--set {item!r}: the value must be JSON (a number, true/false, a list)") from None
            changes[key] = value
    return changes


@user_errors
def train_command(
    out_dir: Annotated[Path, typer.Option("--out", "-o", help="Run folder (created; a resumed run uses the same one).")] = Path("runs/builtin"),
    preset: Annotated[str, typer.Option("--preset", help="Training preset: builtin (the shipped model) or smoke (seconds, for tests).")] = "builtin",
    set_: Annotated[list[str] | None, typer.Option("--set", help="Override a setting, KEY=JSON (e.g. --set forcing_steps=2000).")] = None,
    threads: Annotated[int | None, typer.Option("--threads", help="torch threads (default: all cores).")] = None,
    device: Annotated[str | None, typer.Option("--device", help="Where the DiT trains: cpu (default), cuda or cuda:N.")] = None,
    workers: Annotated[int | None, typer.Option("--workers", help="Processes that write the latent shards side by side (default 1).")] = None,
    stop_after: Annotated[str | None, typer.Option("--stop-after", help="Stop after this stage: vae_data, vae, latents.")] = None,
    install: Annotated[Path | None, typer.Option("--install", help="Copy the exported model folder here when done (e.g. src/longtake/assets/builtin).")] = None,
) -> None:
    """Train the VAE, text encoder and causal DiT from scratch on StoryWorld.

    Kill it at any time and run the same command again: it continues from the last checkpoint.
    """
    from rich.progress import BarColumn, Progress, TextColumn, TimeElapsedColumn, TimeRemainingColumn

    from longtake.train.config import get_train_preset
    from longtake.train.runner import train

    cfg = get_train_preset(preset)
    changes = parse_sets(set_)
    if threads is not None:
        changes["threads"] = threads
    if device is not None:
        changes["device"] = device
    if workers is not None:
        changes["workers"] = workers
    cfg = cfg.replace(**changes) if changes else cfg
    command = "longtake train " + " ".join(shlex.quote(a) for a in sys.argv[2:])
    t0 = time.monotonic()
    # On a terminal: live bars. Otherwise (nohup, a log file, CI) the bars would only show at
    # the end, so print a plain line per stage every LOG_SECONDS and when a stage ends.
    live = err.is_terminal
    with Progress(TextColumn("{task.description:<9}"), BarColumn(), TextColumn("{task.completed}/{task.total}"),
                  TextColumn("{task.fields[info]}"), TimeElapsedColumn(), TimeRemainingColumn(), console=err, disable=not live) as bar:
        tasks: dict[str, int] = {}
        logged: dict[str, float] = {}

        def on_event(ev) -> None:
            info = " ".join(f"{k}={v:.4g}" for k, v in ev.metrics.items())
            if not live:
                now = time.monotonic()
                if ev.done >= ev.total or now - logged.get(ev.stage, -LOG_SECONDS) >= LOG_SECONDS:
                    logged[ev.stage] = now
                    err.print(" ".join(x for x in (ev.stage, f"{ev.done}/{ev.total}", info, f"[{now - t0:.0f} s]") if x), highlight=False, soft_wrap=True)
                return
            if ev.stage not in tasks:
                tasks[ev.stage] = bar.add_task(ev.stage, total=ev.total, info="")
            bar.update(tasks[ev.stage], completed=ev.done, total=ev.total, info=info)

        model = train(out_dir, cfg, on_event=on_event, stop_after=stop_after, command=command)
    out.print(f"done in {time.monotonic() - t0:.0f} s: {model}")
    if install is not None and (model / "model.json").is_file():
        import shutil

        install.parent.mkdir(parents=True, exist_ok=True)
        tmp = install.with_name(f".{install.name}.tmp")
        shutil.rmtree(tmp, ignore_errors=True)
        shutil.copytree(model, tmp)
        if install.exists():
            shutil.rmtree(install)
        tmp.rename(install)
        out.print(f"installed the model in {install}")


def _config_and_command(cls: type, sets: list[str] | None, threads: int | None, tuples: tuple[str, ...] = ()) -> tuple:
    """A training config from ``--set`` KEY=JSON overrides (``tuples``: fields JSON gives as
    lists), torch's threads set, and the command line as run (for provenance)."""
    import dataclasses

    import torch

    from longtake.train.config import TrainError

    changes = parse_sets(sets, known={f.name for f in dataclasses.fields(cls)})
    for name in tuples:
        if name in changes:
            changes[name] = tuple(changes[name])
    try:
        cfg = cls(**changes)
    except TypeError as exc:
        raise TrainError(f"--set: {exc}") from None
    if threads:
        torch.set_num_threads(threads)
    return cfg, "longtake " + " ".join(shlex.quote(a) for a in sys.argv[1:])


@user_errors
def train_sprites_command(
    model: Annotated[Path, typer.Option("--model", help="Built-in model folder: its text encoder is read, and --install writes the layer into it.")],
    out_dir: Annotated[Path, typer.Option("--out", "-o", help="Run folder (crops, checkpoint); the same command resumes.")] = Path("runs/sprites"),
    install: Annotated[bool, typer.Option("--install", help="Write sprites.safetensors and model.json's 'sprites' into --model when done.")] = False,
    set_: Annotated[list[str] | None, typer.Option("--set", help="Override a setting, KEY=JSON (e.g. --set steps=500); see train/sprites.py.")] = None,
    threads: Annotated[int | None, typer.Option("--threads", min=1, help="torch threads (default: all cores).")] = None,
) -> None:
    """Train the built-in model's figure layer (docs/training.md, "Session 19") on StoryWorld.

    Kill it at any time and run the same command again: it continues from the last checkpoint.
    """
    from longtake.train.sprites import SpriteTrainConfig, run

    cfg, command = _config_and_command(SpriteTrainConfig, set_, threads, tuples=("duration", "channels"))
    run(model, out_dir, cfg, install=install, log=lambda line: err.print(line, highlight=False), command=command)


@user_errors
def train_look_reader_command(
    crops: Annotated[list[Path] | None, typer.Option("--crops", help="Training crops: crops.pt of a `longtake train-sprites` run (repeat to add more); --set stories=N renders more.")] = None,
    model: Annotated[Path | None, typer.Option("--model", help="Built-in model folder --install writes looks.safetensors into.")] = None,
    out_dir: Annotated[Path, typer.Option("--out", "-o", help="Folder for metrics.json (held-out accuracy per part).")] = Path("runs/look_reader"),
    install: Annotated[bool, typer.Option("--install", help="Write looks.safetensors and model.json's 'look_reader' into --model when done.")] = False,
    set_: Annotated[list[str] | None, typer.Option("--set", help="Override a setting, KEY=JSON (e.g. --set steps=500); see train/look_reader.py.")] = None,
    threads: Annotated[int | None, typer.Option("--threads", min=1, help="torch threads (default: all cores).")] = None,
) -> None:
    """Train the look reader: reads a character's look off a reference image (docs/memory.md, "Reference images set a look")."""
    from longtake.train.look_reader import LookReaderTrainConfig, run

    cfg, command = _config_and_command(LookReaderTrainConfig, set_, threads)
    run(list(crops or []), out_dir, cfg, model=model, install=install, log=lambda line: err.print(line, highlight=False), command=command)
