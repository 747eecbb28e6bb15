"""The one exception type of ``longtake.eval`` (DESIGN.md, "Errors")."""

from longtake.errors import LongtakeError


class EvalError(LongtakeError):
    """Bad input to an evaluation: a missing video or weights folder, a script that does not
    match the video, probes that are not installed. The message says what and where."""
