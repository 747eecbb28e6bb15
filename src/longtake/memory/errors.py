"""Errors raised by ``longtake.memory`` for bad input (a damaged saved memory, entries of
another model, a bad setting). One type for the package, per DESIGN.md "Errors"."""

from __future__ import annotations

from longtake.errors import LongtakeError


class MemoryBankError(LongtakeError):
    """Bad input to the memory package; the message says what, where and what was expected."""
