"""Character sprites: a frontal figure drawn from its Appearance, HiddenDetails and a Pose.

A sprite is built once per (character, pose, lighting) and cached by the renderer; poses are
quantised (walk phase in 8 steps, sit level in 5, wave in 6...) so the cache stays small and
every frame is a lookup plus a masked paste. Lengths are fractions of the figure height
``fig_h`` so the figure looks the same at every frame size.

Draw order, back to front: chair (not the character's), backpack, long hair / ponytail,
legs, shoes, torso with pattern, bag strap, badge, neck and head, face, hair cap, glasses,
hat, arms with hands, watch and cup.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import numpy as np

from longtake.world.draw import Layer, scale_colour, shift_colour
from longtake.world.vocab import COLOUR_RGB, SKIN_TONES, Appearance, HiddenDetails

#: Figure height as a fraction of the frame height, for an adult of height factor 1.
ADULT_HEIGHT = 0.43
CHILD_FACTOR = 0.76
CHAIR_RGB = (110, 72, 40)
CUP_RGB = (245, 245, 240)


@dataclass(frozen=True)
class Pose:
    """A quantised body pose. ``legs``: stand|walk|sit|jump; ``arms``: down|swing|wave|drink|talk|up."""

    legs: str = "stand"
    leg_phase: int = 0  # walk cycle step, 0..7
    sit_level: int = 0  # 0 standing .. 4 seated (legs == "sit")
    arms: str = "down"
    arm_level: int = 0  # wave 0..5, drink 0..4, talk 0..1
    mouth_open: bool = False
    cup: bool = False


@dataclass(frozen=True)
class Sprite:
    """A drawn figure: ``rgb`` (h,w,3) uint8, ``alpha`` drawn pixels, ``own`` the character's pixels
    (alpha minus props such as the chair); ``ax, ay`` is the point between the feet on the ground."""

    rgb: np.ndarray
    alpha: np.ndarray
    own: np.ndarray
    ax: int
    ay: int


#: Hats under which a bun is not drawn: the top hat covers it pixel for pixel at every size,
#: the beanie at every figure height up to 45 px and leaves 2 pixels at 60 (test). There the
#: figure looks exactly as with short hair, so "hair in a bun" cannot be read from the frame.
HATS_HIDING_BUN = ("hat", "beanie")


def undrawn_attributes(app: Appearance) -> frozenset[str]:
    """Captioned attributes that ``app`` states but its figure does not show (so a probe
    cannot be judged on them): the hair style of a bun under a top hat or a beanie."""
    if app.hair_style == "bun" and app.hat in HATS_HIDING_BUN:
        return frozenset({"hair_style"})
    return frozenset()


def figure_height(frame_height: int, appearance: Appearance, hidden: HiddenDetails) -> float:
    child = appearance.body in ("girl", "boy")
    return frame_height * ADULT_HEIGHT * hidden.height * (CHILD_FACTOR if child else 1.0)


def _pattern_colour(top: tuple[int, int, int]) -> tuple[int, int, int]:
    lum = 0.3 * top[0] + 0.59 * top[1] + 0.11 * top[2]
    if lum < 120:
        return tuple(int(c + (255 - c) * 0.55) for c in top)  # type: ignore[return-value]
    return scale_colour(top, 0.55)


def draw_figure(app: Appearance, hid: HiddenDetails, pose: Pose, fig_h: float, light=(1.0, 1.0, 1.0)) -> Sprite:
    """Draw one figure. ``app`` must be resolved (no unspecified attributes)."""
    F = float(fig_h)
    w, h = int(F * 1.0) + 6, int(F * 1.25) + 6
    L = Layer(h, w)
    g = L.grid
    cx = w / 2.0
    yg = h - 2.0  # ground line
    S = F / (128 * ADULT_HEIGHT)  # pixels per "128-px frame pixel", for pattern sizes
    child = app.body in ("girl", "boy")
    male = app.body in ("man", "boy")

    # -- body geometry (fractions of F) --
    head_r = (0.105 if child else 0.085) * F
    drop = 0.16 * F * pose.sit_level / 4 if pose.legs == "sit" else 0.0
    top = yg - F + drop
    head_cy = top + head_r
    sh_y = top + 2 * head_r + 0.035 * F
    hip_y = top + 0.56 * F
    sh_half = (0.135 if male else 0.115) * F * (0.9 if child else 1.0)
    hip_half = (0.10 if male else 0.115) * F * (0.9 if child else 1.0)
    limb_r = max(0.9, 0.042 * F)
    arm_r = max(0.8, 0.033 * F)

    skin = SKIN_TONES[hid.skin_tone]
    top_rgb = shift_colour(COLOUR_RGB[app.top_colour], hid.top_hue_shift, hid.top_shade)
    trouser_rgb = scale_colour(COLOUR_RGB[app.trouser_colour], hid.trouser_shade)
    hair_rgb = scale_colour(COLOUR_RGB[app.hair_colour], hid.hair_shade) if app.hair_colour else skin
    shoe_rgb = COLOUR_RGB[hid.shoe_colour]
    bag_rgb = COLOUR_RGB[hid.bag_colour]

    # pattern image over the whole sprite, anchored to the shoulders so it moves with the body
    period = max(2.0, hid.pattern_period * S)
    sw = max(1.0, hid.pattern_width * S)
    yy = g.yy - sh_y + hid.pattern_phase * S
    xx = g.xx - cx + hid.pattern_phase * S
    if app.top_pattern == "striped":
        pat = np.broadcast_to(np.mod(yy, period) < sw, (h, w))
    elif app.top_pattern == "checked":
        pat = (np.mod(yy, 2 * period) < period) ^ (np.mod(xx, 2 * period) < period)
    elif app.top_pattern == "dotted":
        period = max(period, 4.0 * S)
        pat = (np.mod(yy, period) - period / 2) ** 2 + (np.mod(xx, period) - period / 2) ** 2 <= min(0.6 * sw, 0.28 * period) ** 2
    else:
        pat = np.zeros((h, w), bool)
    top_img = np.array(L.shaded(top_rgb, cx - sh_half, cx + sh_half))
    top_img[pat] = np.asarray(_pattern_colour(top_rgb), np.float32) * 0.95

    # -- chair (a prop: drawn, not the character's) --
    if pose.legs == "sit":
        seat_y = hip_y + 0.03 * F
        L.paint(g.rect(cx - 0.2 * F, seat_y, cx + 0.2 * F, seat_y + 0.035 * F), CHAIR_RGB, own=False)
        L.paint(g.rect(cx - 0.18 * F, sh_y - 0.06 * F, cx + 0.18 * F, seat_y), scale_colour(CHAIR_RGB, 0.8), own=False)
        for sx in (-0.17, 0.15):
            L.paint(g.rect(cx + sx * F, seat_y, cx + (sx + 0.025) * F, yg), scale_colour(CHAIR_RGB, 0.7), own=False)

    # -- backpack, long hair, ponytail (behind the body) --
    if hid.bag == "backpack":
        L.paint(g.rect(cx - sh_half - 0.03 * F, sh_y + 0.03 * F, cx + sh_half + 0.03 * F, hip_y - 0.05 * F), bag_rgb)
    if app.hair_style == "long":
        L.paint(g.ellipse(cx, head_cy + 0.55 * head_r, 1.25 * head_r, 1.6 * head_r) | g.rect(cx - 1.2 * head_r, head_cy, cx + 1.2 * head_r, sh_y + 0.09 * F), hair_rgb)
    if app.hair_style == "ponytail":
        L.paint(g.ellipse(cx + 1.15 * head_r, head_cy + 0.5 * head_r, 0.4 * head_r, 1.0 * head_r), hair_rgb)

    # -- legs and shoes --
    hips = (cx - 0.055 * F, cx + 0.055 * F)
    if pose.legs == "walk":
        a = math.sin(2 * math.pi * pose.leg_phase / 8)
        c = math.cos(2 * math.pi * pose.leg_phase / 8)
        feet = [(hips[0] + a * 0.13 * F, yg - 0.03 * F - max(0.0, c) * 0.05 * F), (hips[1] - a * 0.13 * F, yg - 0.03 * F - max(0.0, -c) * 0.05 * F)]
        knees = [((hx + fx) / 2, (hip_y + fy) / 2) for hx, (fx, fy) in zip(hips, feet)]
    elif pose.legs == "sit":
        k = pose.sit_level / 4
        feet = [(hips[0] - 0.02 * F, yg - 0.03 * F), (hips[1] + 0.02 * F, yg - 0.03 * F)]
        knees = [(hips[0] - 0.03 * F * k, hip_y + (0.22 - 0.12 * k) * F), (hips[1] + 0.03 * F * k, hip_y + (0.22 - 0.12 * k) * F)]
    elif pose.legs == "jump":
        feet = [(hips[0] - 0.01 * F, yg - 0.08 * F), (hips[1] + 0.01 * F, yg - 0.08 * F)]
        knees = [(hips[0] - 0.08 * F, hip_y + 0.17 * F), (hips[1] + 0.08 * F, hip_y + 0.17 * F)]
    else:
        feet = [(hips[0] - 0.01 * F, yg - 0.03 * F), (hips[1] + 0.01 * F, yg - 0.03 * F)]
        knees = [((hips[0] + feet[0][0]) / 2, (hip_y + yg) / 2), ((hips[1] + feet[1][0]) / 2, (hip_y + yg) / 2)]
    leg_rgb = trouser_rgb
    pelvis = g.rect(cx - hip_half, hip_y - 0.03 * F, cx + hip_half, hip_y + 0.06 * F)
    L.paint(pelvis, leg_rgb)
    for hx, (kx, ky), (fx, fy) in zip(hips, knees, feet):
        L.paint(g.capsule((hx, hip_y), (kx, ky), limb_r) | g.capsule((kx, ky), (fx, fy), limb_r * 0.9), leg_rgb)
        L.paint(g.capsule((kx, ky), (fx, fy), limb_r * 0.35) & g.rect(0, ky, w, fy), scale_colour(leg_rgb, 0.82))
    for fx, fy in feet:
        L.paint(g.ellipse(fx + 0.015 * F * (1 if fx > cx else -1), fy + 0.005 * F, 0.065 * F, 0.032 * F), shoe_rgb)

    # -- torso and garment --
    torso_bottom = hip_y + (0.12 if app.top_garment == "coat" else 0.02) * F
    torso = g.trapezoid(sh_y - 0.01 * F, torso_bottom, cx, sh_half, hip_half + (0.02 * F if app.top_garment == "coat" else 0))
    torso |= g.disk(cx - sh_half + 0.03 * F, sh_y + 0.02 * F, 0.035 * F) | g.disk(cx + sh_half - 0.03 * F, sh_y + 0.02 * F, 0.035 * F)
    if app.top_garment == "dress":
        torso |= g.trapezoid(hip_y - 0.02 * F, hip_y + 0.22 * F, cx, hip_half, hip_half + 0.09 * F)
    L.paint(torso, top_img)
    dark = scale_colour(top_rgb, 0.6)
    light_rgb = (236, 236, 232) if top_rgb != COLOUR_RGB["white"] else (190, 190, 196)
    if app.top_garment == "shirt":
        L.paint(g.triangle((cx - 0.05 * F, sh_y - 0.01 * F), (cx, sh_y + 0.045 * F), (cx - 0.005 * F, sh_y - 0.01 * F)) | g.triangle((cx + 0.05 * F, sh_y - 0.01 * F), (cx, sh_y + 0.045 * F), (cx + 0.005 * F, sh_y - 0.01 * F)), light_rgb)
    elif app.top_garment == "sweater":
        L.paint(g.ellipse(cx, sh_y - 0.005 * F, 0.06 * F, 0.025 * F) | g.rect(cx - hip_half, hip_y - 0.01 * F, cx + hip_half, hip_y + 0.02 * F), dark)
    elif app.top_garment == "jacket":
        L.paint(g.trapezoid(sh_y - 0.01 * F, hip_y + 0.02 * F, cx, 0.035 * F, 0.015 * F), light_rgb)
        L.paint(g.trapezoid(sh_y - 0.01 * F, sh_y + 0.12 * F, cx, 0.05 * F, 0.0) & ~g.trapezoid(sh_y - 0.01 * F, sh_y + 0.12 * F, cx, 0.035 * F, 0.0), dark)
    elif app.top_garment == "coat":
        L.paint(g.rect(cx - hip_half - 0.02 * F, hip_y - 0.02 * F, cx + hip_half + 0.02 * F, hip_y + 0.005 * F), dark)
        for by in (0.1, 0.2, 0.45):
            L.paint(g.disk(cx, sh_y + by * F, max(0.6, 0.012 * F)), dark)
    elif app.top_garment == "dress":
        L.paint(g.rect(cx - hip_half, hip_y - 0.025 * F, cx + hip_half, hip_y - 0.005 * F), dark)

    # -- bag strap and badge --
    if hid.bag == "backpack":
        strap = scale_colour(bag_rgb, 0.75)
        for sx in (-0.6, 0.6):
            L.paint(g.capsule((cx + sx * sh_half, sh_y), (cx + sx * sh_half * 0.9, sh_y + 0.16 * F), max(0.6, 0.014 * F)), strap)
    elif hid.bag == "shoulder_bag":
        L.paint(g.capsule((cx - sh_half * 0.8, sh_y), (cx + sh_half * 0.9, hip_y - 0.02 * F), max(0.6, 0.013 * F)), scale_colour(bag_rgb, 0.75))
        L.paint(g.rect(cx + sh_half * 0.55, hip_y - 0.05 * F, cx + sh_half * 0.55 + 0.11 * F, hip_y + 0.05 * F), bag_rgb)
    if hid.badge_shape != "none":
        bx = cx + (-1 if hid.badge_side == "left" else 1) * sh_half * 0.5
        by, bs = sh_y + 0.09 * F, max(1.2, 0.033 * F)
        shape = {"circle": g.disk(bx, by, bs), "square": g.rect(bx - bs, by - bs, bx + bs, by + bs),
                 "diamond": (np.abs(g.xx - bx) + np.abs(g.yy - by)) <= bs * 1.3}[hid.badge_shape]
        L.paint(shape, COLOUR_RGB[hid.badge_colour])

    # -- neck, head, face, hair, glasses, hat --
    L.paint(g.rect(cx - 0.03 * F, head_cy + 0.8 * head_r, cx + 0.03 * F, sh_y + 0.01 * F), scale_colour(skin, 0.88))
    L.paint(g.disk(cx, head_cy, head_r), L.shaded(skin, cx - head_r, cx + head_r, strength=0.2))
    eye_r = max(0.55, 0.11 * head_r)
    for ex in (-0.36, 0.36):
        L.paint(g.disk(cx + ex * head_r, head_cy + 0.08 * head_r, eye_r), (25, 25, 30))
    if pose.mouth_open:
        L.paint(g.ellipse(cx, head_cy + 0.52 * head_r, 0.22 * head_r, 0.16 * head_r + 0.3), (120, 30, 40))
    else:
        L.paint(g.rect(cx - 0.22 * head_r, head_cy + 0.48 * head_r, cx + 0.22 * head_r, head_cy + 0.48 * head_r + max(0.6, 0.08 * head_r)), (150, 60, 60))
    forehead = g.yy < head_cy - 0.28 * head_r
    if app.hair_style in ("short", "long", "ponytail", "bun"):
        L.paint(g.ellipse(cx, head_cy - 0.12 * head_r, 1.1 * head_r, 1.02 * head_r) & (forehead | (np.abs(g.xx - cx) > 0.82 * head_r) & (g.yy < head_cy + 0.3 * head_r)), hair_rgb)
        if app.hair_style == "bun":
            L.paint(g.disk(cx, head_cy - 1.05 * head_r, 0.5 * head_r), hair_rgb)
    elif app.hair_style == "curly":
        curls = np.zeros((h, w), bool)
        for k in range(9):
            ang = math.pi * (1.05 + 0.9 * k / 8)
            curls |= g.disk(cx + 1.0 * head_r * math.cos(ang), head_cy - 0.1 * head_r + 0.95 * head_r * math.sin(ang), 0.42 * head_r)
        L.paint(curls & (g.yy < head_cy + 0.35 * head_r), hair_rgb)
    elif app.hair_style == "bald":
        L.paint(g.disk(cx - 0.35 * head_r, head_cy - 0.5 * head_r, 0.2 * head_r), scale_colour(skin, 1.15))
    if app.glasses:
        gl = np.zeros((h, w), bool)
        for ex in (-0.38, 0.38):
            gl |= g.ring(cx + ex * head_r, head_cy + 0.08 * head_r, 0.3 * head_r + 0.3, max(0.6, 0.1 * head_r))
        gl |= g.rect(cx - 0.1 * head_r, head_cy, cx + 0.1 * head_r, head_cy + max(0.6, 0.08 * head_r))
        L.paint(gl, (20, 20, 24))
    if app.hat:
        hat_rgb = COLOUR_RGB[hid.hat_colour]
        if app.hat == "hat":
            L.paint(g.ellipse(cx, head_cy - 0.6 * head_r, 1.6 * head_r, 0.25 * head_r + 0.4), scale_colour(hat_rgb, 0.8))
            L.paint(g.rect(cx - 0.85 * head_r, head_cy - 1.55 * head_r, cx + 0.85 * head_r, head_cy - 0.6 * head_r), hat_rgb)
        elif app.hat == "cap":
            L.paint(g.ellipse(cx, head_cy - 0.45 * head_r, 1.05 * head_r, 0.75 * head_r) & (g.yy < head_cy - 0.35 * head_r), hat_rgb)
            L.paint(g.ellipse(cx + 0.9 * head_r, head_cy - 0.42 * head_r, 0.75 * head_r, 0.16 * head_r + 0.4), scale_colour(hat_rgb, 0.75))
        else:  # beanie
            L.paint(g.ellipse(cx, head_cy - 0.35 * head_r, 1.08 * head_r, 0.95 * head_r) & (g.yy < head_cy - 0.3 * head_r), hat_rgb)
            L.paint(g.rect(cx - 1.08 * head_r, head_cy - 0.55 * head_r, cx + 1.08 * head_r, head_cy - 0.3 * head_r), scale_colour(hat_rgb, 0.7))
            L.paint(g.disk(cx, head_cy - 1.3 * head_r, 0.28 * head_r), (240, 240, 240))

    # -- arms: index 0 is the viewer's left arm, 1 the viewer's right --
    shoulders = [(cx - sh_half + 0.02 * F, sh_y + 0.03 * F), (cx + sh_half - 0.02 * F, sh_y + 0.03 * F)]
    hands, elbows = [], []
    for i, (sx, sy) in enumerate(shoulders):
        side = -1 if i == 0 else 1
        hand = (sx + side * 0.035 * F, sy + 0.31 * F)
        elbow = None
        if pose.arms == "swing":
            a = math.sin(2 * math.pi * pose.leg_phase / 8) * (1 if i == 0 else -1)
            hand = (sx - a * 0.11 * F, sy + 0.29 * F)
        elif pose.arms == "up":
            elbow, hand = (sx + side * 0.09 * F, sy - 0.06 * F), (sx + side * 0.12 * F, sy - 0.2 * F)
        elif pose.arms == "wave" and i == 1:
            th = math.radians(32 * math.sin(2 * math.pi * pose.arm_level / 6))
            elbow = (sx + 0.1 * F, sy - 0.04 * F)
            hand = (elbow[0] + 0.16 * F * math.sin(th), elbow[1] - 0.16 * F * math.cos(th))
        elif pose.arms == "drink" and i == 1:
            k = pose.arm_level / 4
            elbow = (sx + 0.05 * F, sy + 0.17 * F)
            hand = (sx - 0.02 * F + k * (cx + 0.06 * F - sx), sy + 0.25 * F + k * (head_cy + 0.55 * head_r - sy - 0.25 * F))
        elif pose.arms == "talk" and i == 1:
            elbow = (sx + 0.04 * F, sy + 0.16 * F)
            hand = (sx + (0.14 if pose.arm_level else 0.08) * F, sy + (0.1 if pose.arm_level else 0.2) * F)
        elbows.append(elbow)
        hands.append(hand)
        arm = g.capsule((sx, sy), elbow, arm_r) | g.capsule(elbow, hand, arm_r) if elbow else g.capsule((sx, sy), hand, arm_r)
        L.paint(arm, top_img)
        L.paint(g.disk(hand[0], hand[1], max(0.9, 0.037 * F)), skin)
    if hid.watch:
        (sx, sy), (hx, hy) = shoulders[0], hands[0]
        e = elbows[0] or (sx, sy)
        wx, wy = e[0] + 0.78 * (hx - e[0]), e[1] + 0.78 * (hy - e[1])
        L.paint(g.disk(wx, wy, max(0.8, 0.03 * F)), (40, 40, 44))
        L.paint(g.disk(wx, wy, max(0.5, 0.015 * F)), (210, 210, 220))
    if pose.cup:
        hx, hy = hands[1]
        L.paint(g.rect(hx - 0.035 * F, hy - 0.075 * F, hx + 0.035 * F, hy + 0.01 * F), CUP_RGB)
        L.paint(g.ring(hx + 0.045 * F, hy - 0.035 * F, 0.025 * F + 0.3, max(0.6, 0.012 * F)), CUP_RGB)

    rgb = np.clip(L.rgb * np.asarray(light, np.float32), 0, 255).astype(np.uint8)
    ys, xs = np.nonzero(L.alpha)
    y0, y1, x0, x1 = ys.min(), ys.max() + 1, xs.min(), xs.max() + 1
    return Sprite(rgb[y0:y1, x0:x1].copy(), L.alpha[y0:y1, x0:x1].copy(), L.own[y0:y1, x0:x1].copy(), int(round(cx)) - x0, int(round(yg)) - y0)
