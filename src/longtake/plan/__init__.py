"""Planning: Story -> Timeline of fixed-size chunks (no torch here)."""

from longtake.plan.planner import DEFAULT_FRAMES_PER_CHUNK, PlanError, plan
from longtake.plan.prompt import CAMERA_PHRASES, expand_prompt
from longtake.plan.timeline import Chunk, DialogueCue, ShotSpan, Timeline

__all__ = ["CAMERA_PHRASES", "DEFAULT_FRAMES_PER_CHUNK", "Chunk", "DialogueCue", "PlanError", "ShotSpan", "Timeline", "expand_prompt", "plan"]
