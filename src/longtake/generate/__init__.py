"""Streaming generation: the Generator protocol and the loop over a Timeline (writes no files).

``CausalGenerator`` (and its ``GenerateError``), ``builtin_generator`` and the state files
(``save_state``/``load_state``) are imported lazily so that importing the protocol (the
render loop, the CLI) does not import torch.
"""

from typing import Any

from longtake.generate.protocol import FrameChunk, Generator, GeneratorInfo

__all__ = ["CausalGenerator", "FrameChunk", "GenerateError", "Generator", "GeneratorInfo", "builtin_generator", "chunk_seed", "load_state", "save_state"]

_LAZY = {"CausalGenerator": "causal", "GenerateError": "causal", "chunk_seed": "causal",
         "builtin_generator": "builtin", "save_state": "state", "load_state": "state"}


def __getattr__(name: str) -> Any:
    if name in _LAZY:
        import importlib

        return getattr(importlib.import_module(f"longtake.generate.{_LAZY[name]}"), name)
    raise AttributeError(f"module 'longtake.generate' has no attribute {name!r}")
