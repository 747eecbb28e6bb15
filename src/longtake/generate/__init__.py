"""Streaming generation: the Generator protocol and the loop over a Timeline (writes no files)."""

from longtake.generate.protocol import FrameChunk, Generator, GeneratorInfo

__all__ = ["FrameChunk", "Generator", "GeneratorInfo"]
