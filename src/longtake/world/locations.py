"""Location backgrounds: a world canvas wider and taller than the frame, drawn once per
(location, story seed) and then only sliced by the camera.

Geometry (in frame heights H, world canvas ``WORLD_W`` x ``WORLD_H`` frames): the base view
shows rows ``VIEW_TOP .. VIEW_TOP + 1`` of the canvas; the wall/floor line is at
``HORIZON`` and characters stand with their feet on ``GROUND``. Prop placement (desks,
trees, book colours...) is drawn from the story seed and the location id, so two stories
with an office have two different offices, each the same all story long.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from longtake.world.draw import Grid, scale_colour, vgradient

WORLD_W = 2.0  # canvas width in frame widths
WORLD_H = 1.3  # canvas height in frame heights
VIEW_TOP = 0.15  # top of the base view, in frame heights
HORIZON = VIEW_TOP + 0.6  # wall/floor or sky/ground line
GROUND = VIEW_TOP + 0.92  # where feet stand

#: Per-location light multiplied into the characters (RGB factors) -- the lighting.
LIGHT: dict[str, tuple[float, float, float]] = {
    "office": (1.0, 1.0, 1.0), "park": (1.05, 1.05, 1.0), "beach": (1.1, 1.06, 0.98),
    "classroom": (1.0, 0.98, 0.94), "street_night": (0.62, 0.62, 0.8), "kitchen": (1.02, 1.0, 0.96),
    "forest": (0.78, 0.88, 0.74), "library": (0.95, 0.85, 0.7), "bedroom": (0.9, 0.84, 0.86),
}


@dataclass(frozen=True)
class Background:
    """``image`` (Hw, Ww, 3) uint8; ``waves`` the rows (y0, y1) that scroll over time (the sea)."""

    image: np.ndarray
    light: tuple[float, float, float]
    waves: tuple[int, int] | None = None


def _noise(rng: np.random.Generator, h: int, w: int, amount: float) -> np.ndarray:
    return (1.0 + amount * (rng.random((h, w, 1), dtype=np.float32) - 0.5)).astype(np.float32)


def build_background(kind: str, width: int, height: int, rng: np.random.Generator) -> Background:
    """The world canvas of location ``kind`` for a frame of ``width`` x ``height``."""
    H, W = height, width
    hw, ww = int(round(WORLD_H * H)), int(round(WORLD_W * W))
    g = Grid(hw, ww)
    hz = int(HORIZON * H)
    gy = GROUND * H
    img = np.zeros((hw, ww, 3), np.float32)
    waves = None

    def fill(mask, rgb):
        img[np.broadcast_to(mask, (hw, ww))] = np.asarray(rgb, np.float32)

    def xs(n, lo=0.04, hi=0.96):  # n sorted random x positions spread over the canvas
        base = (np.arange(n) + rng.uniform(0.2, 0.8, n)) / n
        return (lo + (hi - lo) * base) * ww

    def window(x, y, w_, h_, sky_top, sky_bottom, frame_rgb=(240, 240, 236)):
        fill(g.rect(x - 0.02 * H, y - 0.02 * H, x + w_ + 0.02 * H, y + h_ + 0.02 * H), frame_rgb)
        sky = vgradient(hw, ww, sky_top, sky_bottom)
        m = np.broadcast_to(g.rect(x, y, x + w_, y + h_), (hw, ww))
        img[m] = sky[m]
        fill(g.rect(x + w_ / 2 - 0.008 * H, y, x + w_ / 2 + 0.008 * H, y + h_) | g.rect(x, y + h_ / 2 - 0.008 * H, x + w_, y + h_ / 2 + 0.008 * H), frame_rgb)

    if kind == "office":
        img[:] = vgradient(hw, ww, (226, 222, 206), (204, 198, 180))
        img[hz:] = vgradient(hw - hz, ww, (120, 128, 146), (92, 98, 116))
        for x in xs(3, 0.05, 0.8):
            window(x, 0.2 * H, 0.3 * H, 0.3 * H, (120, 180, 240), (190, 225, 250))
        for x in xs(4):
            fill(g.rect(x - 0.16 * H, hz + 0.02 * H, x + 0.16 * H, hz + 0.06 * H), (150, 110, 70))
            fill(g.rect(x - 0.15 * H, hz + 0.06 * H, x - 0.13 * H, hz + 0.2 * H) | g.rect(x + 0.13 * H, hz + 0.06 * H, x + 0.15 * H, hz + 0.2 * H), (110, 80, 50))
            fill(g.rect(x - 0.07 * H, hz - 0.1 * H, x + 0.07 * H, hz + 0.01 * H), (40, 40, 46))
            fill(g.rect(x - 0.06 * H, hz - 0.09 * H, x + 0.06 * H, hz - 0.005 * H), (90, 150, 210))
        for x in xs(2):
            fill(g.rect(x - 0.03 * H, hz - 0.05 * H, x + 0.03 * H, hz + 0.04 * H), (170, 90, 60))
            fill(g.ellipse(x, hz - 0.12 * H, 0.07 * H, 0.09 * H), (60, 140, 70))
        fill(g.rect(0, 0, ww, 0.05 * H), (245, 245, 240))
    elif kind == "park":
        img[:] = vgradient(hw, ww, (90, 160, 235), (185, 220, 245))
        for x in xs(4):
            fill(g.ellipse(x, rng.uniform(0.1, 0.35) * H, 0.12 * H, 0.04 * H), (250, 250, 250))
        fill(g.ellipse(0.5 * ww, hz + 0.1 * H, 0.9 * ww, 0.22 * H) & (g.yy < hz), (120, 175, 100))
        img[hz:] = vgradient(hw - hz, ww, (90, 170, 70), (60, 135, 50)) * _noise(rng, hw - hz, ww, 0.25)
        fill(g.trapezoid(hz, hw, 0.5 * ww + 0.1 * W, 0.05 * W, 0.3 * W), (200, 180, 140))
        for x in xs(5):
            s = rng.uniform(0.8, 1.2)
            fill(g.rect(x - 0.025 * H * s, hz - 0.2 * H * s, x + 0.025 * H * s, hz + 0.04 * H), (100, 70, 40))
            for dx, dy, r in ((0, -0.34, 0.15), (-0.1, -0.26, 0.11), (0.1, -0.27, 0.11)):
                fill(g.disk(x + dx * H * s, hz + dy * H * s, r * H * s), scale_colour((50, 120, 50), rng.uniform(0.85, 1.15)))
        bx = rng.uniform(0.3, 0.7) * ww
        fill(g.rect(bx - 0.18 * H, hz + 0.02 * H, bx + 0.18 * H, hz + 0.05 * H) | g.rect(bx - 0.18 * H, hz - 0.06 * H, bx + 0.18 * H, hz - 0.03 * H), (150, 100, 60))
        fill(g.rect(bx - 0.16 * H, hz + 0.05 * H, bx - 0.14 * H, hz + 0.12 * H) | g.rect(bx + 0.14 * H, hz + 0.05 * H, bx + 0.16 * H, hz + 0.12 * H), (60, 60, 60))
    elif kind == "beach":
        img[:] = vgradient(hw, ww, (70, 160, 240), (170, 215, 245))
        fill(g.disk(rng.uniform(0.2, 0.8) * ww, 0.15 * H, 0.07 * H), (255, 236, 140))
        sea0, sea1 = int(hz - 0.16 * H), int(hz + 0.06 * H)
        img[sea0:sea1] = vgradient(sea1 - sea0, ww, (30, 110, 180), (60, 160, 200))
        crest = (np.mod(g.xx + 7 * np.sin(g.yy * 0.9), 0.22 * H) < 0.06 * H) & (np.mod(g.yy, 0.05 * H) < 0.012 * H + 0.6)
        fill(crest & (g.yy >= sea0) & (g.yy < sea1), (225, 240, 250))
        waves = (sea0, sea1)
        img[sea1:] = vgradient(hw - sea1, ww, (236, 214, 160), (222, 192, 132)) * _noise(rng, hw - sea1, ww, 0.15)
        px = rng.uniform(0.25, 0.75) * ww
        fill(g.rect(px - 0.006 * H, hz - 0.2 * H, px + 0.006 * H, hz + 0.15 * H), (90, 80, 70))
        fill(g.ellipse(px, hz - 0.2 * H, 0.2 * H, 0.08 * H) & (g.yy < hz - 0.2 * H), (230, 70, 60))
        fill(g.ellipse(px, hz - 0.2 * H, 0.1 * H, 0.08 * H) & (g.yy < hz - 0.2 * H), (250, 240, 230))
    elif kind == "classroom":
        img[:] = vgradient(hw, ww, (214, 226, 200), (196, 210, 182))
        img[hz:] = vgradient(hw - hz, ww, (176, 128, 80), (150, 104, 62))
        img[hz:][(np.arange(hw - hz) % max(2, int(0.05 * H)) == 0)] *= 0.8
        b0, b1 = 0.25 * ww, 0.75 * ww
        fill(g.rect(b0 - 0.02 * H, 0.12 * H, b1 + 0.02 * H, hz - 0.1 * H), (130, 90, 50))
        fill(g.rect(b0, 0.14 * H, b1, hz - 0.12 * H), (40, 72, 56))
        for _ in range(6):
            x0, y0 = rng.uniform(b0 + 0.05 * H, b1 - 0.3 * H), rng.uniform(0.18 * H, hz - 0.2 * H)
            fill(g.rect(x0, y0, x0 + rng.uniform(0.1, 0.3) * H, y0 + 0.012 * H + 0.5), (230, 235, 230))
        cx = rng.choice([0.12, 0.88]) * ww
        fill(g.disk(cx, 0.22 * H, 0.07 * H), (40, 40, 40))
        fill(g.disk(cx, 0.22 * H, 0.06 * H), (250, 250, 245))
        fill(g.capsule((cx, 0.22 * H), (cx, 0.18 * H), 0.006 * H + 0.3) | g.capsule((cx, 0.22 * H), (cx + 0.03 * H, 0.22 * H), 0.006 * H + 0.3), (20, 20, 20))
        for x in xs(6):
            fill(g.rect(x - 0.1 * H, hz + 0.04 * H, x + 0.1 * H, hz + 0.07 * H), (200, 160, 100))
            fill(g.rect(x - 0.09 * H, hz + 0.07 * H, x - 0.075 * H, hz + 0.17 * H) | g.rect(x + 0.075 * H, hz + 0.07 * H, x + 0.09 * H, hz + 0.17 * H), (90, 90, 100))
    elif kind == "street_night":
        img[:] = vgradient(hw, ww, (10, 14, 40), (40, 40, 80))
        stars = rng.random((hw, ww)) < 0.004
        img[stars] = (230, 230, 200)
        x = 0.0
        while x < ww:
            bw_, bh_ = rng.uniform(0.25, 0.5) * H, rng.uniform(0.35, 0.6) * H
            fill(g.rect(x, hz - bh_, x + bw_, hz), scale_colour((40, 40, 60), rng.uniform(0.8, 1.3)))
            lit = (np.mod(g.xx - x, 0.08 * H) < 0.045 * H) & (np.mod(g.yy - (hz - bh_), 0.1 * H) < 0.05 * H) & g.rect(x + 0.02 * H, hz - bh_ + 0.03 * H, x + bw_ - 0.02 * H, hz - 0.06 * H)
            k = int(rng.integers(1000))
            on = np.mod((g.xx - x) // (0.08 * H) * 7 + (g.yy - hz + bh_) // (0.1 * H) * 13 + k, 5) < 3
            fill(lit & on, (250, 210, 110))
            x += bw_ + 0.03 * H
        img[hz:] = vgradient(hw - hz, ww, (70, 70, 80), (45, 45, 55))
        fill(g.rect(0, hz, ww, hz + 0.05 * H), (110, 110, 118))
        fill((np.mod(g.xx, 0.3 * H) < 0.15 * H) & g.rect(0, gy + 0.07 * H, ww, gy + 0.085 * H), (220, 200, 90))
        for lx in xs(4):
            glow = np.clip(1 - ((g.xx - lx) ** 2 / (0.35 * H) ** 2 + (g.yy - hz) ** 2 / (0.5 * H) ** 2), 0, 1)
            img *= (1 + 0.9 * glow[..., None] * np.array([1.0, 0.85, 0.5], np.float32))
            fill(g.rect(lx - 0.008 * H, hz - 0.45 * H, lx + 0.008 * H, hz + 0.03 * H), (30, 30, 36))
            fill(g.ellipse(lx, hz - 0.46 * H, 0.04 * H, 0.02 * H), (255, 240, 170))
    elif kind == "kitchen":
        img[:] = vgradient(hw, ww, (236, 232, 222), (222, 216, 204))
        tile = max(3, int(0.07 * H))
        grout = (np.mod(g.xx, tile) < 1) | (np.mod(g.yy, tile) < 1)
        fill(grout & (g.yy > hz - 0.3 * H) & (g.yy < hz), (190, 186, 176))
        img[hz:] = vgradient(hw - hz, ww, (200, 190, 170), (170, 160, 140))
        chk = ((np.mod(g.xx, 2 * tile) < tile) ^ (np.mod(g.yy, 2 * tile) < tile)) & (g.yy >= hz)
        img[np.broadcast_to(chk, (hw, ww))] *= 0.82
        fill(g.rect(0, hz - 0.12 * H, ww, hz + 0.02 * H), (120, 150, 170))
        fill(g.rect(0, hz - 0.13 * H, ww, hz - 0.11 * H), (90, 90, 90))
        for x in xs(5, 0.02, 0.98):
            fill(g.rect(x - 0.13 * H, 0.06 * H, x + 0.13 * H, hz - 0.36 * H), (170, 200, 215))
            fill(g.rect(x - 0.01 * H, hz - 0.42 * H, x + 0.01 * H, hz - 0.38 * H), (80, 80, 80))
        sx = rng.uniform(0.3, 0.6) * ww
        fill(g.rect(sx - 0.15 * H, hz - 0.13 * H, sx + 0.15 * H, hz + 0.02 * H), (60, 60, 64))
        for dx in (-0.08, 0.08):
            fill(g.ring(sx + dx * H, hz - 0.125 * H, 0.05 * H, 0.012 * H + 0.4), (200, 60, 40))
        fx = rng.choice([0.08, 0.9]) * ww
        fill(g.rect(fx - 0.12 * H, hz - 0.55 * H, fx + 0.12 * H, hz + 0.05 * H), (236, 240, 244))
        fill(g.rect(fx + 0.08 * H, hz - 0.45 * H, fx + 0.095 * H, hz - 0.3 * H), (120, 120, 120))
        window(rng.uniform(0.65, 0.75) * ww, 0.15 * H, 0.25 * H, 0.2 * H, (130, 190, 240), (200, 230, 250))
    elif kind == "forest":
        img[:] = vgradient(hw, ww, (120, 160, 130), (60, 100, 70))
        for depth, shade in ((0, 0.55), (1, 0.75), (2, 1.0)):
            for x in xs(9 - 2 * depth, 0.0, 1.0):
                s = rng.uniform(0.9, 1.3) * (0.7 + 0.2 * depth)
                base = hz + 0.04 * H * depth
                fill(g.rect(x - 0.02 * H * s, base - 0.15 * H * s, x + 0.02 * H * s, base + 0.02 * H), scale_colour((80, 55, 35), shade))
                for k in range(3):
                    y_top = base - (0.75 - 0.18 * k) * H * s
                    fill(g.triangle((x, y_top), (x - (0.12 + 0.05 * k) * H * s, y_top + 0.32 * H * s), (x + (0.12 + 0.05 * k) * H * s, y_top + 0.32 * H * s)), scale_colour((40, 100, 55), shade))
        img[hz:] = vgradient(hw - hz, ww, (70, 90, 50), (50, 70, 36)) * _noise(rng, hw - hz, ww, 0.3)
        for x in xs(10):
            y = rng.uniform(hz + 0.05 * H, hw - 0.02 * H)
            for a in (-0.6, 0.0, 0.6):
                fill(g.capsule((x, y), (x + a * 0.08 * H, y - 0.07 * H), 0.012 * H + 0.3), (70, 140, 60))
        rays = np.clip(np.sin((g.xx + g.yy * 0.5) / (0.09 * H)) - 0.8, 0, 1) * (g.yy < hz)
        img *= (1 + 0.5 * rays[..., None])
    elif kind == "library":
        img[:] = vgradient(hw, ww, (96, 62, 40), (80, 50, 32))
        img[hz:] = vgradient(hw - hz, ww, (140, 40, 40), (110, 30, 34)) * _noise(rng, hw - hz, ww, 0.1)
        shelf_h = max(4, int(0.12 * H))
        top = int(0.05 * H)
        for row in range(int((hz - top) // shelf_h)):
            y0 = top + row * shelf_h
            fill(g.rect(0, y0 + shelf_h - max(1, int(0.02 * H)), ww, y0 + shelf_h), (60, 36, 22))
            x = 0.0
            while x < ww:
                bw_ = max(1.0, rng.uniform(0.015, 0.035) * H)
                hh = rng.uniform(0.6, 0.9) * (shelf_h - 2)
                fill(g.rect(x, y0 + shelf_h - 1 - hh, x + bw_, y0 + shelf_h - max(1, int(0.02 * H))), tuple(int(c) for c in rng.integers(40, 220, 3)))
                x += bw_ + (rng.random() < 0.1) * 0.04 * H
        for lx in xs(3):
            glow = np.clip(1 - ((g.xx - lx) ** 2 + (g.yy - hz + 0.1 * H) ** 2) / (0.3 * H) ** 2, 0, 1)
            img *= (1 + 0.6 * glow[..., None] * np.array([1.0, 0.85, 0.55], np.float32))
            fill(g.rect(lx - 0.006 * H, hz - 0.2 * H, lx + 0.006 * H, hz + 0.04 * H), (40, 30, 20))
            fill(g.trapezoid(hz - 0.28 * H, hz - 0.19 * H, lx, 0.03 * H, 0.07 * H), (250, 220, 140))
    elif kind == "bedroom":
        img[:] = vgradient(hw, ww, (200, 170, 200), (180, 150, 180))
        stripe = np.mod(g.xx, max(3, 0.06 * H)) < max(1, 0.02 * H)
        img[np.broadcast_to(stripe & (g.yy < hz), (hw, ww))] *= 0.9
        img[hz:] = vgradient(hw - hz, ww, (160, 120, 90), (130, 96, 70))
        bx = rng.uniform(0.3, 0.6) * ww
        fill(g.rect(bx - 0.4 * H, hz - 0.2 * H, bx - 0.37 * H, hz + 0.1 * H), (120, 80, 50))
        fill(g.rect(bx - 0.37 * H, hz - 0.05 * H, bx + 0.4 * H, hz + 0.1 * H), (240, 240, 245))
        fill(g.rect(bx - 0.2 * H, hz - 0.06 * H, bx + 0.4 * H, hz + 0.1 * H), scale_colour((70, 110, 190), rng.uniform(0.8, 1.2)))
        fill(g.ellipse(bx - 0.3 * H, hz - 0.07 * H, 0.06 * H, 0.03 * H), (250, 250, 250))
        fill(g.ellipse(0.5 * ww, gy + 0.05 * H, 0.5 * H, 0.08 * H), (200, 80, 80))
        lx = bx + 0.5 * H
        fill(g.rect(lx - 0.06 * H, hz - 0.06 * H, lx + 0.06 * H, hz + 0.08 * H), (120, 80, 50))
        fill(g.trapezoid(hz - 0.16 * H, hz - 0.08 * H, lx, 0.025 * H, 0.05 * H), (250, 230, 160))
        window(rng.uniform(0.05, 0.2) * ww, 0.15 * H, 0.25 * H, 0.25 * H, (20, 30, 80), (60, 60, 120))
    else:  # pragma: no cover - vocabulary is checked before rendering
        raise KeyError(kind)
    image = np.clip(img, 0, 255).astype(np.uint8)
    return Background(image, LIGHT[kind], waves)
