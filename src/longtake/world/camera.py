"""Camera moves as a 2D view transform of a world canvas wider and taller than the frame.

A view is a rectangle of the world canvas (``x0, y0, vw, vh`` in canvas pixels) that is
resampled to the frame with nearest neighbours. Moves are functions of the shot progress
``u`` (from ``chunk.shot_span``), eased with a smoothstep; handheld shake is a sum of
sines of absolute time with phases from the story seed, so it is continuous across chunks.

Approximations: pan and truck slide the view (truck further); tilt slides it vertically;
zoom and dolly scale it about the characters' chests (dolly less); orbit slides it while
zooming in and out a little. There is no parallax.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

from longtake.world.locations import GROUND, VIEW_TOP, WORLD_H, WORLD_W


@dataclass(frozen=True)
class View:
    """A view rectangle in canvas pixels and the camera state recorded in the ground truth."""

    x0: float
    y0: float
    vw: float
    vh: float
    dx: float  # view centre offset from the base view, in frame widths
    dy: float  # in frame heights
    zoom: float


def _ease(u: float) -> float:
    u = min(max(u, 0.0), 1.0)
    return u * u * (3 - 2 * u)


def camera_view(move: str, u: float, t_abs: float, width: int, height: int, shake: tuple[float, float, float, float] = (0, 0, 0, 0)) -> View:
    """The view of camera ``move`` at shot progress ``u``; ``t_abs`` seconds from the video start."""
    e = _ease(u)
    dx = dy = 0.0
    z = 1.0
    anchor_y = GROUND - 0.3  # chest height of an adult, in frame heights
    if move in ("pan_left", "pan_right"):
        dx = 0.25 * (1 - 2 * e) * (1 if move == "pan_left" else -1)
    elif move in ("truck_left", "truck_right"):
        dx = 0.4 * (1 - 2 * e) * (1 if move == "truck_left" else -1)
    elif move in ("tilt_up", "tilt_down"):
        dy = 0.12 * (1 - 2 * e) * (1 if move == "tilt_up" else -1)
    elif move == "zoom_in":
        z = 1.0 + 0.6 * e
    elif move == "zoom_out":
        z = 1.6 - 0.6 * e
    elif move == "dolly_in":
        z, dy = 1.0 + 0.3 * e, 0.03 * e
    elif move == "dolly_out":
        z, dy = 1.3 - 0.3 * e, 0.03 * (1 - e)
    elif move in ("orbit_left", "orbit_right"):
        dx = 0.3 * (1 - 2 * e) * (1 if move == "orbit_left" else -1)
        z = 1.12 - 0.1 * math.sin(math.pi * e)
    elif move == "handheld":
        a, b, c, d = shake
        z = 1.06
        dx = 0.018 * (math.sin(2 * math.pi * 0.7 * t_abs + a) + 0.5 * math.sin(2 * math.pi * 1.9 * t_abs + b))
        dy = 0.014 * (math.sin(2 * math.pi * 0.9 * t_abs + c) + 0.5 * math.sin(2 * math.pi * 2.3 * t_abs + d))
    cw, ch = WORLD_W * width, WORLD_H * height
    vw, vh = width / z, height / z
    cx = cw / 2 + dx * width
    base_cy = (VIEW_TOP + 0.5) * height
    cy = base_cy + (anchor_y * height - base_cy) * (1 - 1 / z) + dy * height
    x0 = min(max(cx - vw / 2, 0.0), cw - vw)
    y0 = min(max(cy - vh / 2, 0.0), ch - vh)
    return View(x0, y0, vw, vh, round((x0 + vw / 2 - cw / 2) / width, 5), round((y0 + vh / 2 - base_cy) / height, 5), round(z, 5))
