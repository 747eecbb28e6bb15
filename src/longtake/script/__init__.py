"""Story scripts: the v1 schema, importers and validation (no torch here)."""

from longtake.script.errors import ScriptError, ScriptIssue
from longtake.script.load import FORMATS, build_story, load_story, loads_story, save_story
from longtake.script.schema import (
    CAMERA_MOVES,
    TRANSITIONS,
    Character,
    DialogueLine,
    Location,
    Scene,
    Shot,
    Size,
    Story,
    story_json_schema,
)

__all__ = [
    "CAMERA_MOVES",
    "FORMATS",
    "TRANSITIONS",
    "Character",
    "DialogueLine",
    "Location",
    "Scene",
    "ScriptError",
    "ScriptIssue",
    "Shot",
    "Size",
    "Story",
    "build_story",
    "load_story",
    "loads_story",
    "save_story",
    "story_json_schema",
]
