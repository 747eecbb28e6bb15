"""The root of longtake's user-facing errors.

Every package raises one exception type of its own for bad input (DESIGN.md, "Errors"), and
each of them derives from :class:`LongtakeError`. The CLI catches this one type, prints
:meth:`LongtakeError.lines` one per line and exits with status 2; anything else is a bug and
keeps its traceback.
"""

from __future__ import annotations


class LongtakeError(Exception):
    """Bad input that a user can fix. ``str(err)`` is a complete, actionable message."""

    def lines(self) -> list[str]:
        """One line per problem, each readable on its own."""
        return [line for line in str(self).splitlines() if line.strip()] or [type(self).__name__]
