"""What every ``longtake`` sub-command shares: consoles, the bad-input handler, Typer defaults."""

from __future__ import annotations

import functools
from collections.abc import Callable
from typing import Any, TypeVar

import typer
from rich.console import Console
from rich.markup import escape

from longtake.errors import LongtakeError

out = Console()
err = Console(stderr=True)

F = TypeVar("F", bound=Callable[..., Any])

TYPER_DEFAULTS: dict[str, Any] = {
    "no_args_is_help": True,
    "add_completion": False,
    "pretty_exceptions_enable": False,
    "context_settings": {"help_option_names": ["-h", "--help"]},
}


def print_error(line: str) -> None:
    # escape: messages quote user text such as "[6s]", which rich would read as markup
    err.print(f"[red]error:[/red] {escape(line)}", highlight=False, soft_wrap=True)


def fail(lines: list[str]) -> typer.Exit:
    for line in lines:
        print_error(line)
    return typer.Exit(2)


def user_errors(fn: F) -> F:
    """Turn LongtakeError into one line per problem and exit status 2; Ctrl-C exits 130."""

    @functools.wraps(fn)
    def wrapper(*args: Any, **kwargs: Any) -> Any:
        try:
            return fn(*args, **kwargs)
        except LongtakeError as exc:
            raise fail(exc.lines()) from None
        except KeyboardInterrupt:
            err.print("interrupted")
            raise typer.Exit(130) from None

    return wrapper  # type: ignore[return-value]
