"""Actions over time: where a character stands and which pose it has at a point of its shot.

A shot's actions for one character (``parse_actions``) share the shot evenly and in order;
inside its segment an action has a local phase ``p`` in [0, 1). Everything is a pure
function of (actions, state at the start of the shot, shot progress), so any chunk can be
rendered on its own.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

from longtake.world.characters import Pose

WALKS_IN = ("walk_in_left", "walk_in_right")
WALKS_OUT = ("walk_out_left", "walk_out_right")
SIT_FRACTION = 0.3  # part of a sit / stand segment spent getting down / up


@dataclass(frozen=True)
class ActorState:
    """A character at one frame: pose, feet x in world pixels, lift above the ground."""

    pose: Pose
    x: float
    lift: float
    action: str
    phase: float
    seated: bool


def seated_after(actions: list[str], seated: bool) -> bool:
    """Whether a character is seated after doing ``actions`` starting ``seated``."""
    for a in actions:
        if a == "sit":
            seated = True
        elif a in ("stand", "jump", "walk") or a in WALKS_IN or a in WALKS_OUT:
            seated = False
    return seated


def _walk_phase(x: float, fig_h: float) -> int:
    # the leg cycle is tied to the distance walked, so feet do not slide
    return int(math.floor(x / (0.55 * fig_h) * 8)) % 8


def actor_state(
    actions: list[str], start_seated: bool, u: float, shot_seconds: float, t_abs: float,
    slot: float, left: float, right: float, fig_h: float, frame_w: float,
) -> ActorState:
    """State at shot progress ``u`` in [0, 1).

    ``slot``: the character's resting x; ``left``/``right``: world x just outside the
    current view (where walks begin and end); ``t_abs``: seconds from the video start
    (drives cyclic motions: waving, talking); ``shot_seconds``: length of the shot.
    """
    n = len(actions)
    idx = min(int(u * n), n - 1)
    p = min(max(u * n - idx, 0.0), 1.0)
    seg_seconds = shot_seconds / n
    action = actions[idx]
    seated = seated_after(actions[:idx], start_seated)
    gone = None  # a character that walked out stays out
    for a in actions[:idx]:
        if a in WALKS_OUT:
            gone = left if a == "walk_out_left" else right
        elif a in WALKS_IN:
            gone = None
    x = gone if gone is not None else slot
    lift = 0.0
    pose = Pose(legs="sit", sit_level=4) if seated else Pose()
    if action in WALKS_IN or action in WALKS_OUT:
        start = {"walk_in_left": left, "walk_in_right": right}.get(action, slot if gone is None else gone)
        end = {"walk_out_left": left, "walk_out_right": right}.get(action, slot)
        k = min(1.0, p / 0.85) if action in WALKS_IN else p
        x = start + (end - start) * k
        moving = k < 1.0
        pose = Pose("walk", _walk_phase(x, fig_h), arms="swing") if moving else Pose()
        seated = False
    elif action == "walk":
        cycles = max(1, round(seg_seconds / 4))
        x = slot + 0.18 * frame_w * math.sin(2 * math.pi * cycles * p)
        pose = Pose("walk", _walk_phase(x, fig_h), arms="swing")
        seated = False
    elif action == "sit":
        level = 4 if seated else min(4, int(p / SIT_FRACTION * 5))
        pose = Pose("sit", sit_level=level)
        seated = True
    elif action == "stand":
        if seated and p < SIT_FRACTION:
            pose = Pose("sit", sit_level=4 - min(4, int(p / SIT_FRACTION * 5)))
        else:
            pose = Pose()
            seated = False
    elif action == "jump":
        jumps = max(1, round(seg_seconds * 1.2))
        lift = abs(math.sin(math.pi * jumps * p)) * 0.22 * fig_h
        pose = Pose("jump", arms="up") if lift > 0.03 * fig_h else Pose()
        seated = False
    elif action == "wave":
        pose = Pose(pose.legs, sit_level=pose.sit_level, arms="wave", arm_level=int(t_abs * 6) % 6)
    elif action == "drink":
        level = 4 * min(1.0, p / 0.25, (1.0 - p) / 0.25)
        pose = Pose(pose.legs, sit_level=pose.sit_level, arms="drink", arm_level=int(round(level)), cup=True)
    elif action == "talk":
        pose = Pose(pose.legs, sit_level=pose.sit_level, arms="talk", arm_level=int(t_abs * 1.5) % 2, mouth_open=bool(int(t_abs * 5) % 2))
    return ActorState(pose, x, lift, action, p, seated)
