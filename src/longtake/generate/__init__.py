"""Streaming generation: the Generator protocol and the loop over a Timeline (writes no files).

``CausalGenerator`` (and its ``GenerateError``) and ``builtin_generator`` are imported
lazily so that importing the protocol (the render loop, the CLI) does not import torch.
Generator state *files* are written at the entry level (:mod:`longtake.render_state`),
since this package writes no files (DESIGN.md).
"""

from typing import Any

from longtake.generate.protocol import FrameChunk, Generator, GeneratorInfo

__all__ = ["CausalGenerator", "FrameChunk", "GenerateError", "Generator", "GeneratorInfo", "builtin_generator", "chunk_seed"]

_LAZY = {"CausalGenerator": "causal", "GenerateError": "causal", "chunk_seed": "causal",
         "builtin_generator": "builtin"}


def __getattr__(name: str) -> Any:
    if name in _LAZY:
        import importlib

        return getattr(importlib.import_module(f"longtake.generate.{_LAZY[name]}"), name)
    raise AttributeError(f"module 'longtake.generate' has no attribute {name!r}")
