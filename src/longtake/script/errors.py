"""Errors raised while reading and validating story scripts.

A :class:`ScriptError` holds one or more :class:`ScriptIssue`; each issue knows the file, the
line and column (where the parser knows them), the field path inside the script and what was
expected, so the CLI can print one self-contained line per problem::

    story.yaml:12:9: scenes[0].shots[1].camera: unknown camera move 'pan_lft'; expected one of ...
"""

from __future__ import annotations

from dataclasses import dataclass, replace
from pathlib import Path

from longtake.errors import LongtakeError

FieldPath = tuple[str | int, ...]


def format_path(path: FieldPath) -> str:
    """``("scenes", 0, "shots", 1, "camera")`` -> ``"scenes[0].shots[1].camera"``."""
    out = ""
    for part in path:
        if isinstance(part, int):
            out += f"[{part}]"
        else:
            out += f".{part}" if out else str(part)
    return out


@dataclass(frozen=True)
class ScriptIssue:
    """One problem in a script."""

    message: str
    path: FieldPath = ()
    file: str | None = None
    line: int | None = None
    column: int | None = None

    def located(self, file: str | Path | None = None, line: int | None = None, column: int | None = None) -> "ScriptIssue":
        """A copy with location fields filled in where they were unknown."""
        return replace(
            self,
            file=self.file if self.file is not None else (str(file) if file is not None else None),
            line=self.line if self.line is not None else line,
            column=self.column if self.column is not None else column,
        )

    def __str__(self) -> str:
        where = self.file or "<script>"
        if self.line is not None:
            where += f":{self.line}"
            if self.column is not None:
                where += f":{self.column}"
        field = format_path(self.path)
        return f"{where}: {field + ': ' if field else ''}{self.message}"


class ScriptError(LongtakeError):
    """A script could not be read or is not a valid story. Carries every issue found."""

    def __init__(self, issues: list[ScriptIssue] | ScriptIssue | str):
        if isinstance(issues, str):
            issues = [ScriptIssue(issues)]
        elif isinstance(issues, ScriptIssue):
            issues = [issues]
        if not issues:
            raise ValueError("ScriptError needs at least one issue")
        self.issues: list[ScriptIssue] = list(issues)
        super().__init__("\n".join(str(i) for i in self.issues))

    def located(self, file: str | Path | None = None, line: int | None = None, column: int | None = None) -> "ScriptError":
        return ScriptError([i.located(file, line, column) for i in self.issues])

    def lines(self) -> list[str]:
        return [str(i) for i in self.issues]
