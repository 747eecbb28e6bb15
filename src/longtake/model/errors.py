"""Errors raised by ``longtake.model`` for bad input (unknown preset, wrong tensor shapes, a
cache used against the wrong model). One type for the package, per DESIGN.md "Errors"."""

from __future__ import annotations

from longtake.errors import LongtakeError


class ModelError(LongtakeError):
    """Bad input to the model package; the message says what, where and what was expected."""
