"""The one error type of ``longtake.video`` (DESIGN.md, "Errors")."""

from __future__ import annotations

from longtake.errors import LongtakeError


class VideoError(LongtakeError):
    """A video file cannot be written or read as asked: bad frames, a bad path, a bad file,
    or metadata that would misrepresent where the video came from."""
