"""The one exception type of ``longtake.world`` (DESIGN.md, "Errors")."""

from __future__ import annotations

from longtake.errors import LongtakeError


class WorldError(LongtakeError):
    """A story or request StoryWorld cannot render: words outside its vocabulary, bad sizes.

    ``str(err)`` holds one line per problem, each with the field path it concerns.
    """
