"""Vectorised drawing primitives on small numpy canvases (no per-pixel Python loops).

Shapes return boolean masks over a grid of pixel centres; :class:`Layer` paints masks with
colours and records which pixels belong to the subject (for ground-truth label masks).
"""

from __future__ import annotations

import colorsys

import numpy as np

RGB = tuple[int, int, int]


class Grid:
    """Pixel-centre coordinates of an ``h`` x ``w`` canvas: ``yy`` (h,1) and ``xx`` (1,w)."""

    def __init__(self, h: int, w: int) -> None:
        self.h, self.w = h, w
        self.yy = (np.arange(h, dtype=np.float32) + 0.5)[:, None]  # (h, 1)
        self.xx = (np.arange(w, dtype=np.float32) + 0.5)[None, :]  # (1, w)

    def disk(self, cx: float, cy: float, r: float) -> np.ndarray:
        return (self.xx - cx) ** 2 + (self.yy - cy) ** 2 <= r * r

    def ellipse(self, cx: float, cy: float, rx: float, ry: float) -> np.ndarray:
        return ((self.xx - cx) / max(rx, 1e-3)) ** 2 + ((self.yy - cy) / max(ry, 1e-3)) ** 2 <= 1.0

    def rect(self, x0: float, y0: float, x1: float, y1: float) -> np.ndarray:
        return (self.xx >= x0) & (self.xx < x1) & (self.yy >= y0) & (self.yy < y1)

    def trapezoid(self, y0: float, y1: float, cx: float, half_top: float, half_bottom: float) -> np.ndarray:
        """Rows y0..y1, centred on cx, half-width going linearly from half_top to half_bottom."""
        t = np.clip((self.yy - y0) / max(y1 - y0, 1e-3), 0, 1)
        half = half_top + (half_bottom - half_top) * t
        return (self.yy >= y0) & (self.yy < y1) & (np.abs(self.xx - cx) <= half)

    def capsule(self, p0: tuple[float, float], p1: tuple[float, float], r: float) -> np.ndarray:
        """Points within ``r`` of the segment p0-p1 (a limb)."""
        (x0, y0), (x1, y1) = p0, p1
        dx, dy = x1 - x0, y1 - y0
        den = dx * dx + dy * dy
        t = np.clip(((self.xx - x0) * dx + (self.yy - y0) * dy) / den, 0, 1) if den > 0 else np.zeros((1, 1), np.float32)
        px, py = x0 + t * dx, y0 + t * dy
        return (self.xx - px) ** 2 + (self.yy - py) ** 2 <= r * r

    def triangle(self, a: tuple[float, float], b: tuple[float, float], c: tuple[float, float]) -> np.ndarray:
        def side(p, q):
            return (self.xx - q[0]) * (p[1] - q[1]) - (p[0] - q[0]) * (self.yy - q[1])

        d1, d2, d3 = side(a, b), side(b, c), side(c, a)
        neg = (d1 < 0) | (d2 < 0) | (d3 < 0)
        pos = (d1 > 0) | (d2 > 0) | (d3 > 0)
        return ~(neg & pos)

    def ring(self, cx: float, cy: float, r: float, width: float) -> np.ndarray:
        d2 = (self.xx - cx) ** 2 + (self.yy - cy) ** 2
        return (d2 <= r * r) & (d2 >= (r - width) ** 2)


class Layer:
    """An RGB canvas with coverage: ``alpha`` (drawn at all) and ``own`` (belongs to the subject)."""

    def __init__(self, h: int, w: int) -> None:
        self.grid = Grid(h, w)
        self.rgb = np.zeros((h, w, 3), np.float32)
        self.alpha = np.zeros((h, w), bool)
        self.own = np.zeros((h, w), bool)

    def paint(self, mask: np.ndarray, colour, *, own: bool = True) -> None:
        """Paint ``mask`` with a colour (RGB tuple or an (h,w,3) array)."""
        mask = np.broadcast_to(mask, self.alpha.shape)
        if isinstance(colour, np.ndarray) and colour.ndim == 3:
            self.rgb[mask] = colour[mask]
        else:
            self.rgb[mask] = np.asarray(colour, np.float32)
        self.alpha |= mask
        if own:
            self.own |= mask
        else:
            self.own &= ~mask

    def shaded(self, colour: RGB, x0: float, x1: float, *, strength: float = 0.28) -> np.ndarray:
        """``colour`` lit from the upper left: brighter at x0, darker at x1, as an (h,w,3) array."""
        t = np.clip((self.grid.xx - x0) / max(x1 - x0, 1e-3), 0, 1)  # (1, w)
        f = (1.0 + strength / 2) - strength * t
        out = np.asarray(colour, np.float32)[None, None, :] * f[..., None]
        return np.broadcast_to(out, (self.grid.h, self.grid.w, 3))


def shift_colour(rgb: RGB, hue_degrees: float = 0.0, value: float = 1.0) -> RGB:
    """``rgb`` with its hue turned by ``hue_degrees`` and its brightness scaled by ``value``."""
    h, s, v = colorsys.rgb_to_hsv(*(c / 255.0 for c in rgb))
    r, g, b = colorsys.hsv_to_rgb((h + hue_degrees / 360.0) % 1.0, s, min(1.0, v * value))
    if s < 0.05:  # greys have no hue: scale their brightness only
        r, g, b = (min(1.0, c / 255.0 * value) for c in rgb)
    return (int(round(r * 255)), int(round(g * 255)), int(round(b * 255)))


def scale_colour(rgb: RGB, f: float) -> RGB:
    return tuple(int(np.clip(c * f, 0, 255)) for c in rgb)  # type: ignore[return-value]


def vgradient(h: int, w: int, top: RGB, bottom: RGB) -> np.ndarray:
    """(h, w, 3) float32 vertical gradient."""
    t = np.linspace(0, 1, h, dtype=np.float32)[:, None, None]
    img = np.asarray(top, np.float32) * (1 - t) + np.asarray(bottom, np.float32) * t
    return np.repeat(img, w, axis=1)
