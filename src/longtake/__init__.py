"""longtake: long, consistent, multi-shot video from a story script.

Quick start::

    import longtake
    story = longtake.Story.load("examples/office_day.yaml")
    timeline = longtake.plan(story)
"""

from importlib.metadata import PackageNotFoundError, version

try:
    __version__ = version("longtake")
except PackageNotFoundError:  # running from a source tree without an install
    __version__ = "0.0.0+unknown"

from longtake.errors import LongtakeError
from longtake.plan import Chunk, Timeline, plan
from longtake.script import ScriptError, Story

__all__ = ["Chunk", "LongtakeError", "ScriptError", "Story", "Timeline", "__version__", "plan"]
