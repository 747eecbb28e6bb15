"""Ground-truth data for the StoryWorld probes: rendered frames, boxes, labels, clips.

The probes are trained and scored on StoryWorld *ground truth* only (never on a model's
output). Frames are rendered on the fly: a single frame of a chunk renders on its own (the
renderer is stateless per chunk, so a one-frame sub-chunk with the matching ``shot_span``
gives the same bytes as the full chunk), which makes sampling a few frames per shot from
hundreds of stories cheap.

Every story is rendered in ``variants`` versions: variant 0 with the story's own seed, the
others with derived seeds. Seeds change the hidden details (skin, shoes, badge, bag...) but
not the captions (sampled stories describe every attribute), so the variants of a character
are *twins*: same caption, different hidden details -- the hard negatives of re-identification.

Also here: the label tables of the probes (captioned attributes, hidden details, poses) and
the image degradations used to make the probes robust to blurry generated video.
"""

from __future__ import annotations

import dataclasses
import logging
from collections import Counter
from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np
import torch
import torch.nn.functional as Fn
from einops import rearrange

from longtake.plan import plan
from longtake.world import vocab as V
from longtake.world.characters import undrawn_attributes
from longtake.world.locations import LIGHT
from longtake.world.renderer import WorldRenderer
from longtake.world.sampler import Split, sample_story

log = logging.getLogger(__name__)

LOCATION_IDS: tuple[str, ...] = tuple(V.LOCATIONS)

#: Captioned attributes the crop probe classifies, with their classes. ``glasses`` and
#: ``hat`` carry an explicit "absent" class; a bald character has no hair colour (ignored).
ATTRIBUTES: dict[str, tuple[str, ...]] = {
    "body": V.BODIES,
    "hair_colour": V.HAIR_COLOURS,
    "hair_style": V.HAIR_STYLES,
    "top_colour": V.TOP_COLOURS,
    "top_pattern": V.TOP_PATTERNS,
    "top_garment": V.TOP_GARMENTS,
    "trouser_colour": V.TROUSER_COLOURS,
    "glasses": ("no", "yes"),
    "hat": ("none", *V.HATS),
}

#: Hidden details with auxiliary classifier heads (colours of absent items are ignored).
HIDDEN: dict[str, tuple[str, ...]] = {
    "skin_tone": tuple(str(i) for i in range(len(V.SKIN_TONES))),
    "shoe_colour": V.SHOE_COLOURS,
    "badge_shape": V.BADGE_SHAPES,
    "badge_colour": V.BADGE_COLOURS,
    "badge_side": ("left", "right"),
    "bag": V.BAG_KINDS,
    "bag_colour": ("brown", "black", "red", "blue", "green", "beige"),
    "watch": ("no", "yes"),
    "hat_colour": ("red", "blue", "black", "green", "yellow", "grey"),
}

#: Hidden details that describe an item a figure may not have: detail -> (the reading that says
#: whether the item is there, its "absent" class). The heads of these details are trained only
#: on figures with the item (:func:`hidden_labels` gives -1 otherwise), so their output for a
#: figure without it means nothing; ``hat`` is a captioned attribute, the others hidden details.
HIDDEN_ITEM: dict[str, tuple[str, str]] = {
    "badge_colour": ("badge_shape", "none"),
    "badge_side": ("badge_shape", "none"),
    "bag_colour": ("bag", "none"),
    "hat_colour": ("hat", "none"),
}


def drawn_hidden(hidden: dict[str, str], attributes: dict[str, str]) -> dict[str, str]:
    """``hidden`` without the details of items the same reading says are absent (the colour of
    a badge read as "none", of no bag, of no hat): as a bald reading has no hair colour."""
    said = {**attributes, **hidden}
    return {k: v for k, v in hidden.items() if k not in HIDDEN_ITEM or said.get(HIDDEN_ITEM[k][0], HIDDEN_ITEM[k][1]) != HIDDEN_ITEM[k][1]}


def hidden_majority(readings: Sequence[dict[str, str]]) -> dict[str, str]:
    """The most frequent reading of each hidden detail over several readings of one figure
    (:func:`drawn_hidden` readings). An item's details (:data:`HIDDEN_ITEM`) are kept only when
    at least half of the readings read the item, and voted among those."""
    out: dict[str, str] = {}
    for k in sorted({k for r in readings for k in r}):
        votes = [r[k] for r in readings if k in r]
        if k not in HIDDEN_ITEM or 2 * len(votes) >= len(readings):
            out[k] = Counter(votes).most_common(1)[0][0]
    return out


def comparable_hidden(a: dict[str, str], b: dict[str, str]) -> list[str]:
    """The hidden-detail keys on which two readings can be compared: every detail either has,
    except an item's details (:data:`HIDDEN_ITEM`) unless both read the item. A badge on one
    side and none on the other is one difference (``badge_shape``), not three."""
    return sorted(k for k in set(a) | set(b) if k not in HIDDEN_ITEM or (k in a and k in b))


#: Body poses one frame can show (the actions that differ only in direction share "walk").
POSES: tuple[str, ...] = ("walk", "stand", "sit", "jump", "wave", "drink", "talk")
ACTION_POSE: dict[str, str] = {
    "walk_in_left": "walk", "walk_in_right": "walk", "walk_out_left": "walk", "walk_out_right": "walk",
    "walk": "walk", "stand": "stand", "idle": "stand", "sit": "sit", "jump": "jump", "wave": "wave",
    "drink": "drink", "talk": "talk",
}

#: Boxes with fewer visible pixels are not detection targets (slivers at the frame edge).
MIN_TARGET_AREA = 40
#: "Clear" instances (used for the attribute accuracy): this many pixels, off the frame
#: border and not overlapping another character's box.
MIN_CLEAR_AREA = 150


def appearance_attributes(appearance: V.Appearance) -> dict[str, str]:
    """The captioned attributes of ``appearance`` in the probes' words (unspecified ones left
    out, and those a StoryWorld figure does not draw: ``world.characters.undrawn_attributes``:
    a bun under a top hat or a beanie is neither trained on nor scored)."""
    out: dict[str, str] = {}
    hidden = undrawn_attributes(appearance)
    for name in ATTRIBUTES:
        if name in hidden:
            continue
        value = getattr(appearance, name)
        if name == "glasses":
            out[name] = "yes" if value else "no"
        elif name == "hat":
            out[name] = value or "none"
        elif value is not None:
            out[name] = str(value)
    return out


def attribute_labels(app: V.Appearance) -> list[int]:
    """Class index per :data:`ATTRIBUTES` entry of a resolved appearance; -1 = not defined
    (hair colour of a bald figure) or not drawn (:func:`appearance_attributes`)."""
    attrs = appearance_attributes(app)
    return [classes.index(attrs[name]) if name in attrs else -1 for name, classes in ATTRIBUTES.items()]


def hidden_labels(hid: V.HiddenDetails, app: V.Appearance) -> list[int]:
    """Class index per :data:`HIDDEN` entry; -1 where the item is absent (no badge, bag, hat)."""
    values = {
        "skin_tone": str(hid.skin_tone), "shoe_colour": hid.shoe_colour, "badge_shape": hid.badge_shape,
        "badge_colour": hid.badge_colour if hid.badge_shape != "none" else None,
        "badge_side": hid.badge_side if hid.badge_shape != "none" else None,
        "bag": hid.bag, "bag_colour": hid.bag_colour if hid.bag != "none" else None,
        "watch": "yes" if hid.watch else "no", "hat_colour": hid.hat_colour if app.hat else None,
    }
    return [HIDDEN[k].index(v) if v is not None else -1 for k, v in values.items()]


def variant_seed(story_seed: int, variant: int) -> int:
    """World seed of variant ``variant`` of a story (0 = the story's own seed)."""
    return int(story_seed) if variant == 0 else V.stable_seed("probe-variant", story_seed, variant) % (2**62)


@dataclass
class ProbeData:
    """Rendered ground truth. N frames, M character boxes, I identities, S clips.

    An identity is one character of one story variant; twins share ``ident_story`` and
    ``ident_char`` and differ in ``ident_variant``.
    """

    frames: np.ndarray  # (N, H, W, 3) uint8
    masks: np.ndarray  # (N, H, W) bool, pixels of any character
    locations: np.ndarray  # (N,) int64 index into LOCATION_IDS
    fades: np.ndarray  # (N,) float32, 1 = no fade
    box_frame: np.ndarray  # (M,) int64
    box_xyxy: np.ndarray  # (M, 4) float32, exclusive ends
    box_ident: np.ndarray  # (M,) int64
    box_area: np.ndarray  # (M,) int64 visible pixels
    box_pose: np.ndarray  # (M,) int64 index into POSES
    box_clear: np.ndarray  # (M,) bool
    ident_attr: np.ndarray  # (I, len(ATTRIBUTES)) int64, -1 = undefined
    ident_hidden: np.ndarray  # (I, len(HIDDEN)) int64
    ident_story: np.ndarray  # (I,) int64
    ident_variant: np.ndarray  # (I,) int64
    ident_char: list[str]
    clip_frames: list[np.ndarray]  # per clip (shot x variant): frame indices in time order
    clip_prompt: list[str]  # the chunk prompt of the shot (expanded, as the timeline has it)
    clip_story: np.ndarray  # (S,) int64
    clip_variant: np.ndarray  # (S,) int64
    frame_clip: np.ndarray  # (N,) int64 the clip (shot x variant) of each frame
    appearances: list[V.Appearance]  # (I) resolved appearance per identity

    def target_boxes(self, frame: int) -> np.ndarray:
        """(K, 4) boxes of frame ``frame`` that are detection targets."""
        sel = (self.box_frame == frame) & (self.box_area >= MIN_TARGET_AREA)
        return self.box_xyxy[sel]


def _one_frame(chunk, f: int):  # type: ignore[no-untyped-def]
    """The sub-chunk holding only frame ``f`` of ``chunk`` (renders identical bytes)."""
    s0, s1 = chunk.shot_span
    n = chunk.num_frames
    u0 = s0 + (s1 - s0) * f / n
    return dataclasses.replace(chunk, start_frame=chunk.start_frame + f, num_frames=1, shot_span=(u0, u0 + (s1 - s0) / n))


def build_data(split: Split, seeds: Sequence[int], *, duration: float = 30.0, variants: int = 2,
               frames_per_shot: int = 4, rng_seed: int = 0, num_characters: tuple[int, int] = (1, 4)) -> ProbeData:
    """Render ``frames_per_shot`` frames of every shot of ``sample_story(seed, duration, split)``
    for each seed, in ``variants`` seed variants. Frames of a shot are stratified in time."""
    rng = np.random.default_rng(rng_seed)
    frames: list[np.ndarray] = []
    masks: list[np.ndarray] = []
    locs: list[int] = []
    fades: list[float] = []
    boxes: list[tuple[int, tuple[int, int, int, int], int, int, int, bool]] = []
    idents: dict[tuple[int, int, str], int] = {}
    ident_rows: list[tuple[list[int], list[int], int, int, str, V.Appearance]] = []
    clips: list[np.ndarray] = []
    prompts: list[str] = []
    clip_story: list[int] = []
    clip_variant: list[int] = []
    for si, seed in enumerate(seeds):
        story = sample_story(int(seed), duration, split=split, num_characters=num_characters)
        timeline = plan(story, frames_per_chunk=12, first_chunk_frames=9)
        chunk_at = np.concatenate([[c.index] * c.num_frames for c in timeline.chunks])
        for v in range(variants):
            renderer = WorldRenderer(story, seed=variant_seed(story.seed, v))
            for shot in timeline.shots:
                edges = np.linspace(shot.start_frame, shot.start_frame + shot.num_frames, frames_per_shot + 1)
                picks = [int(rng.integers(int(a), max(int(a) + 1, int(b)))) for a, b in zip(edges[:-1], edges[1:])]
                clip = []
                for g in sorted(set(picks)):
                    chunk = timeline.chunks[int(chunk_at[g])]
                    img, truths = renderer.render_chunk(_one_frame(chunk, g - chunk.start_frame))
                    t = truths[0]
                    n = len(frames)
                    frames.append(img[0])
                    assert t.mask is not None
                    masks.append(t.mask > 0)
                    locs.append(LOCATION_IDS.index(t.location_kind))
                    fades.append(t.fade)
                    vis = [c for c in t.characters if c.bbox is not None]
                    for c in vis:
                        key = (si, v, c.id)
                        if key not in idents:
                            idents[key] = len(ident_rows)
                            ident_rows.append((attribute_labels(c.appearance), hidden_labels(c.hidden, c.appearance), si, v, c.id, c.appearance))
                        area = int((t.mask == c.label).sum())
                        x0, y0, x1, y1 = c.bbox  # type: ignore[misc]
                        H, W = t.mask.shape
                        off_border = x0 > 0 and y0 > 0 and x1 < W and y1 < H
                        alone = all(_inter(c.bbox, o.bbox) == 0 for o in vis if o is not c)  # type: ignore[arg-type]
                        clear = area >= MIN_CLEAR_AREA and off_border and alone
                        boxes.append((n, c.bbox, idents[key], area, POSES.index(ACTION_POSE[c.action]), clear))  # type: ignore[arg-type]
                    clip.append(n)
                clips.append(np.asarray(clip, np.int64))
                prompts.append(timeline.chunks[int(chunk_at[shot.start_frame])].prompt)
                clip_story.append(si)
                clip_variant.append(v)
        if (si + 1) % 100 == 0:
            log.info("rendered %d/%d %s stories, %d frames", si + 1, len(seeds), split, len(frames))
    return ProbeData(
        frames=np.stack(frames), masks=np.stack(masks), locations=np.asarray(locs, np.int64), fades=np.asarray(fades, np.float32),
        box_frame=np.asarray([b[0] for b in boxes], np.int64), box_xyxy=np.asarray([b[1] for b in boxes], np.float32).reshape(-1, 4),
        box_ident=np.asarray([b[2] for b in boxes], np.int64), box_area=np.asarray([b[3] for b in boxes], np.int64),
        box_pose=np.asarray([b[4] for b in boxes], np.int64), box_clear=np.asarray([b[5] for b in boxes], bool),
        ident_attr=np.asarray([r[0] for r in ident_rows], np.int64).reshape(-1, len(ATTRIBUTES)),
        ident_hidden=np.asarray([r[1] for r in ident_rows], np.int64).reshape(-1, len(HIDDEN)),
        ident_story=np.asarray([r[2] for r in ident_rows], np.int64), ident_variant=np.asarray([r[3] for r in ident_rows], np.int64),
        ident_char=[r[4] for r in ident_rows], clip_frames=clips, clip_prompt=prompts, clip_story=np.asarray(clip_story, np.int64),
        clip_variant=np.asarray(clip_variant, np.int64),
        frame_clip=np.concatenate([np.full(len(c), i, np.int64) for i, c in enumerate(clips)]),
        appearances=[r[5] for r in ident_rows],
    )


def _inter(a: tuple[int, int, int, int], b: tuple[int, int, int, int]) -> int:
    return max(0, min(a[2], b[2]) - max(a[0], b[0])) * max(0, min(a[3], b[3]) - max(a[1], b[1]))


# -- degradations ------------------------------------------------------------------------


def gaussian_blur(x: torch.Tensor, sigma: torch.Tensor) -> torch.Tensor:
    """x (N, C, H, W) float, sigma (N,) pixels -> (N, C, H, W); per-sample separable blur."""
    n, c, h, w = x.shape
    radius = 3
    taps = torch.arange(-radius, radius + 1, dtype=x.dtype, device=x.device)
    k = torch.exp(-0.5 * (taps[None] / sigma.clamp_min(1e-3)[:, None]) ** 2)  # (N, 7)
    k = k / k.sum(1, keepdim=True)
    k = k.repeat_interleave(c, 0)  # (N*C, 7)
    y = rearrange(x, "n c h w -> 1 (n c) h w")  # (1, N*C, H, W): one group per sample channel
    y = Fn.conv2d(Fn.pad(y, (radius, radius, 0, 0), mode="replicate"), k[:, None, None, :], groups=n * c)
    y = Fn.conv2d(Fn.pad(y, (0, 0, radius, radius), mode="replicate"), k[:, None, :, None], groups=n * c)
    return rearrange(y, "1 (n c) h w -> n c h w", n=n)  # (N, C, H, W)


def augment(x: torch.Tensor, gen: torch.Generator, *, strength: float = 1.0, scale: float = 1.0) -> torch.Tensor:
    """Random degradations of generated video, x (N, 3, H, W) in [0, 1] -> same shape.

    Per sample: Gaussian blur (sigma up to 1.6 frame pixels; ``scale`` = crop pixels per
    frame pixel), down- then up-sampling (the softness and block loss of a low-bitrate H.264
    encode), half-resolution chroma (the 4:2:0 of every mp4), brightness/contrast/per-channel
    gain jitter and Gaussian noise. A quarter of the samples stay clean. Two calls from equal generator states draw the same degradation
    parameters for the same N (so a figure crop and its head crop match).
    """
    n = x.shape[0]
    u = lambda *s: torch.rand(*s, generator=gen)  # noqa: E731
    keep = (u(n) < 0.25)[:, None, None, None]
    sigma = u(n) * 1.6 * strength * scale
    y = gaussian_blur(x, sigma)
    down = u(n) < 0.5 * strength
    if down.any():
        f = float(0.45 + 0.5 * u(1))
        h, w = x.shape[-2:]
        small = Fn.interpolate(y[down], size=(max(8, int(h * f)), max(8, int(w * f))), mode="area")
        y[down] = Fn.interpolate(small, size=(h, w), mode="bilinear", align_corners=False)
    sub = u(n) < 0.6 * strength
    if sub.any():
        y[sub] = chroma_subsample(y[sub], max(2, round(2 * scale)))
    gain = 1 + (u(n, 3) - 0.5) * 0.12 * strength
    bright = 1 + (u(n, 1) - 0.5) * 0.2 * strength
    mean = y.mean((1, 2, 3), keepdim=True)
    contrast = 1 + (u(n, 1, 1, 1) - 0.5) * 0.2 * strength
    y = (y - mean) * contrast + mean
    y = y * (gain * bright)[:, :, None, None]
    y = y + torch.randn(y.shape, generator=gen) * (u(n, 1, 1, 1) * 0.025 * strength)
    return torch.where(keep, x, y.clamp(0, 1))


_LIGHTS = torch.tensor([LIGHT[k] for k in LOCATION_IDS])  # (9, 3) RGB factors of each location's light


def relight(x: torch.Tensor, masks: torch.Tensor, locations: torch.Tensor, gen: torch.Generator, p: float = 0.5) -> torch.Tensor:
    """Characters lit as if in another location. x (N, 3, H, W) in [0, 1], masks (N, H, W)
    character pixels (bool, or float in [0, 1] for resampled crops), locations (N,) location
    indices -> (N, 3, H, W).

    StoryWorld multiplies a character's colours by its location's light (dim blue at night,
    green in the forest); dividing by it and multiplying by another location's light gives the
    same character elsewhere, so identity and colour probes learn to see through lighting.
    Each image is relit with probability ``p``; two calls from equal generator states draw
    the same lights for the same N (a figure crop and its head crop match).
    """
    n = x.shape[0]
    change = torch.rand(n, generator=gen) < p
    new = torch.randint(0, len(LOCATION_IDS), (n,), generator=gen)
    ratio = torch.where(change[:, None], _LIGHTS[new] / _LIGHTS[locations], torch.ones(n, 3))  # (N, 3)
    if masks.dtype == torch.bool:
        return torch.where(masks[:, None], x * ratio[:, :, None, None], x).clamp(0, 1)
    return (x * (1 + masks[:, None] * (ratio - 1)[:, :, None, None])).clamp(0, 1)  # soft mask edges of a crop


#: RGB -> (Y, Cb, Cr) of BT.601 (the matrix x264 uses for 128x128 video by default).
_YCC = torch.tensor([[0.299, 0.587, 0.114], [-0.168736, -0.331264, 0.5], [0.5, -0.418688, -0.081312]])


def chroma_subsample(x: torch.Tensor, factor: int = 2) -> torch.Tensor:
    """x (N, 3, H, W) RGB in [0, 1] -> same, with Cb/Cr averaged over ``factor`` x ``factor``
    blocks and upsampled again (as yuv420p does), luma kept."""
    ycc = torch.einsum("ij,njhw->nihw", _YCC, x)  # (N, 3, H, W)
    h, w = x.shape[-2:]
    c = Fn.avg_pool2d(ycc[:, 1:], factor, ceil_mode=True)  # (N, 2, H/f, W/f)
    ycc = torch.cat([ycc[:, :1], Fn.interpolate(c, size=(h, w), mode="bilinear", align_corners=False)], 1)
    return torch.einsum("ij,njhw->nihw", torch.linalg.inv(_YCC), ycc).clamp(0, 1)


def degrade_fixed(frames: np.ndarray, *, seed: int = 0) -> np.ndarray:
    """The fixed "blurred" evaluation condition: blur sigma 1, 2x down/up-sampling, noise 2/255.

    frames (N, H, W, 3) uint8 -> (N, H, W, 3) uint8.
    """
    x = torch.from_numpy(frames).permute(0, 3, 1, 2).float() / 255  # (N, 3, H, W)
    h, w = x.shape[-2:]
    y = gaussian_blur(x, torch.full((x.shape[0],), 1.0))
    y = Fn.interpolate(Fn.interpolate(y, size=(h // 2, w // 2), mode="area"), size=(h, w), mode="bilinear", align_corners=False)
    gen = torch.Generator().manual_seed(seed)
    y = y + torch.randn(y.shape, generator=gen) * (2 / 255)
    return (y.clamp(0, 1) * 255 + 0.5).to(torch.uint8).permute(0, 2, 3, 1).numpy()  # (N, H, W, 3)
