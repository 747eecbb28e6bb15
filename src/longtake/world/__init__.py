"""StoryWorld: a procedural story world with exact ground truth.

It renders any script written in its vocabulary (:mod:`longtake.world.vocab`) into frames
plus per-frame truth (character boxes, label masks, actions, captioned and hidden
attributes). It is the training data of the built-in model and the yardstick of long-range
consistency. See ``docs/storyworld.md``.
"""

from longtake.world.errors import WorldError

__all__ = ["WorldError"]
