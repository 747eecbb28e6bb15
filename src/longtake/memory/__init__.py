"""Long-range memory for the streaming generator (MemFlow's NAM and SMA, entity memory).

``config`` (MemoryConfig, the modes) imports without torch; the rest is imported lazily:
``entry`` (MemoryEntry, install, nam_scores), ``bank`` (NarrativeMemory), ``sma``
(SparseMemoryActivation), ``entity`` (EntityMemory), ``cast`` (CastMember, reference images).
The generator that uses them is :class:`longtake.generate.memory.MemoryGenerator`.
"""

from typing import Any

from longtake.memory.config import MEMORY_MODES, MemoryConfig, MemoryMode
from longtake.memory.errors import MemoryBankError

__all__ = [
    "MEMORY_MODES", "CastMember", "EntityMemory", "MemoryBankError", "MemoryConfig", "MemoryEntry", "MemoryMode",
    "NarrativeMemory", "SparseMemoryActivation", "install", "nam_scores",
]

_LAZY = {"MemoryEntry": "entry", "install": "entry", "nam_scores": "entry", "NarrativeMemory": "bank",
         "SparseMemoryActivation": "sma", "EntityMemory": "entity", "CastMember": "cast"}


def __getattr__(name: str) -> Any:
    if name in _LAZY:
        import importlib

        return getattr(importlib.import_module(f"longtake.memory.{_LAZY[name]}"), name)
    raise AttributeError(f"module 'longtake.memory' has no attribute {name!r}")
