"""Streaming generation: the Generator protocol and the loop over a Timeline (writes no files).

``CausalGenerator`` (and its ``GenerateError``) are imported lazily so that importing the
protocol (the render loop, the CLI) does not import torch.
"""

from typing import Any

from longtake.generate.protocol import FrameChunk, Generator, GeneratorInfo

__all__ = ["CausalGenerator", "FrameChunk", "GenerateError", "Generator", "GeneratorInfo", "chunk_seed"]

_LAZY = {"CausalGenerator", "GenerateError", "chunk_seed"}


def __getattr__(name: str) -> Any:
    if name in _LAZY:
        from longtake.generate import causal

        return getattr(causal, name)
    raise AttributeError(f"module 'longtake.generate' has no attribute {name!r}")
