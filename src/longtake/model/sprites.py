"""Figure sprites: the built-in model's character layer, drawn in pixels from the text.

Why (session 19, docs/training.md): every way of drawing the characters inside the latent
chunk stayed near half of their captioned attributes (probe-judged, held-out casts): the
DiT's own figures, the figure painter's regression in latent space (a mean of latents,
which the VAE decodes to a blur; 54-58% pasted over the true latents), the same painter told
the figure's exact place and size inside its box (59-60%), and a small flow-matching model
of figure latents (42%: the VAE decodes a slightly wrong latent to speckle). A regression
in *pixels* does not have those faults: aligned at the feet, at the size the camera shows,
a figure's described parts (hair, top, trousers, hat, glasses) are a deterministic function
of its description, so their mean is sharp; only what the text leaves open (pose details,
shoes, bags) averages out.

:class:`FigureSprites` holds two learnt parts, trained by ``longtake train-sprites`` (train/sprites.py) on
StoryWorld frames of the training split (never on probe outputs):

- ``cast``: a linear head on the text encoder's output at a character's name (the token the
  layout already reads) that names each captioned attribute, with one more class per
  attribute for "the description does not say";
- ``net``: a small convolutional decoder from those attributes, the character's *look*
  (what the description leaves open: the other attributes and StoryWorld's hidden details,
  shoes, badge, bag, watch, skin, shades, pattern phase, height; :func:`resolve_look`, or
  none: then their average), the pose the character holds (an action) and the kind of place
  (its light) to an RGB figure and its alpha, in a window of ``height`` x ``width`` pixels
  whose bottom centre is the point between the feet.

At render time (generate/sprite_layer.py) each character is drawn once per description and
kind of place, read from its own cast-sheet prompt, and pasted, where its alpha exceeds
``threshold``, into every decoded frame at the layout prior's boxes (the same place the DiT's
layout puts each character): a layer over the DiT's scene. The DiT's cache and memory keep
the latents it sampled. A character's look is drawn from a seed when she first enters and
kept as long as the frames (or the memory) that hold her (generate/sprite_layer.py); with a
reference image, it is read off the image (:class:`FittedLook`, model/look_reader.py) and
kept for the whole render. Built-in model only.
"""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass

import numpy as np
import torch
import torch.nn.functional as F
from torch import Tensor, nn

from longtake.eval.probe_data import ATTRIBUTES, HIDDEN, attribute_labels
from longtake.model.loading import ChannelsConfig, load_folder_part, save_folder_part
from longtake.world.errors import WorldError
from longtake.world.vocab import LOCATIONS, Appearance, HiddenDetails, draw_hidden, resolve_appearance

#: poses the decoder knows (StoryWorld actions; ``walk_in_*``/``walk_out_*`` count as walk)
ACTIONS = ("idle", "stand", "walk", "sit", "jump", "wave", "drink", "talk")
#: kinds of place (their light); "" = not known (trained with some conditions dropped to it)
KINDS = (*sorted(LOCATIONS), "")
#: classes per captioned attribute, plus "not said"
SIZES = tuple(len(v) + 1 for v in ATTRIBUTES.values())
#: the classed parts of a look (StoryWorld's hidden details), each with one more class for "no look"
LOOK_CLASSES: dict[str, tuple[str, ...]] = {
    **HIDDEN, "pattern_period": ("3", "4", "5"), "pattern_width": ("1", "2"), "pattern_phase": ("0", "1", "2", "3", "4"),
}
#: the continuous parts of a look: (centre, half range) of each
LOOK_SCALES: dict[str, tuple[float, float]] = {
    "top_hue_shift": (0.0, 14.0), "top_shade": (1.0, 0.15), "trouser_shade": (1.0, 0.2), "hair_shade": (1.0, 0.2), "height": (1.0, 0.08),
}
#: width of a look's vector: the one-hots, the continuous parts and a "has a look" flag
LOOK_DIM = sum(len(v) + 1 for v in LOOK_CLASSES.values()) + len(LOOK_SCALES) + 1


@dataclass(frozen=True)
class SpriteConfig(ChannelsConfig):
    """Shapes and render settings of :class:`FigureSprites` (``model.json`` "sprites")."""

    height: int = 64  # window, pixels (the bottom centre is the point between the feet)
    width: int = 40
    hidden: int = 256  # condition embedding width
    channels: tuple[int, int, int, int] = (96, 96, 48, 24)  # decoder channels at 1/8, 1/4, 1/2, 1/1
    text_dim: int = 256
    threshold: float = 0.5  # alpha above which a sprite pixel replaces the frame's
    action: str = "talk"  # the pose drawn at render time
    looks: bool = True  # draw what the text leaves open from each character's look (generate/sprite_layer.py)
    clear: bool = True  # fill the layout boxes from the pixels around them before pasting (sprite_layer.clear_boxes)

    def __post_init__(self) -> None:
        problems = []
        if self.height % 8 or self.width % 8 or self.height < 8 or self.width < 8:
            problems.append(f"height and width must be positive multiples of 8, got {self.height}x{self.width}")
        if len(self.channels) != 4 or any(c < 8 or c % 8 for c in self.channels):
            problems.append(f"channels must be 4 multiples of 8 (group norm), got {self.channels}")
        if not 0.0 < self.threshold < 1.0:
            problems.append(f"threshold must be in (0, 1), got {self.threshold}")
        if self.action not in ACTIONS:
            problems.append(f"action must be one of {ACTIONS}, got {self.action!r}")
        if problems:
            raise ValueError("; ".join(problems))


def action_index(action: str) -> int:
    a = "walk" if action.startswith("walk") else action
    return ACTIONS.index(a) if a in ACTIONS else 0


def kind_index(kind: str | None) -> int:
    return KINDS.index(kind) if kind in KINDS else len(KINDS) - 1


def look_vector(hidden: HiddenDetails | None) -> Tensor:
    """A character's hidden details -> the look part of the condition (LOOK_DIM,); None = no
    look (every class "no look", the flag 0): the decoder then draws what the text leaves
    open as its average. A badge's or bag's colour and side count only where there is one."""
    parts = []
    for name, classes in LOOK_CLASSES.items():
        hot = torch.zeros(len(classes) + 1)
        value = None if hidden is None else getattr(hidden, name)
        if name in ("badge_colour", "badge_side") and hidden is not None and hidden.badge_shape == "none":
            value = None
        if name == "bag_colour" and hidden is not None and hidden.bag == "none":
            value = None
        if name == "watch" and value is not None:
            value = "yes" if value else "no"
        hot[classes.index(str(value)) if value is not None and str(value) in classes else len(classes)] = 1.0
        parts.append(hot)
    scales = [0.0 if hidden is None else (float(getattr(hidden, k)) - c) / r for k, (c, r) in LOOK_SCALES.items()]
    parts.append(torch.tensor([*scales, 0.0 if hidden is None else 1.0]))
    return torch.cat(parts)


def resolve_look(said: Tensor, seed: int, entity: str) -> tuple[Tensor, HiddenDetails]:
    """The attributes a character's description says (9,) long (-1 = not said) and a look's
    seed -> every attribute (what the text leaves open drawn as StoryWorld draws it for a
    story of that seed) and the hidden details, both functions of (seed, entity)."""
    values: dict = {}
    for a, (name, classes) in enumerate(ATTRIBUTES.items()):
        lab = int(said[a])
        if name == "glasses":
            values[name] = lab == classes.index("yes")
        elif name == "hat":
            values[name] = classes[lab] if lab > 0 else None
        else:
            values[name] = classes[lab] if lab >= 0 else None
    try:
        described = Appearance(**values)
    except WorldError:  # a reading StoryWorld would not write: the said attributes stay as read
        return said, draw_hidden(seed, entity)
    resolved = resolve_appearance(described, seed, entity)
    if values["hair_colour"] is not None and resolved.hair_style == "bald":  # a said hair colour is never drawn away
        resolved = dataclasses.replace(resolved, hair_style="short", hair_colour=values["hair_colour"])
    return torch.tensor(attribute_labels(resolved)), draw_hidden(seed, entity)


@dataclass(frozen=True)
class FittedLook:
    """A look read off a reference image (model/look_reader.py) instead of drawn from a seed:
    ``attributes`` (9 class indices, -1 = none fitted) replace what the description leaves
    open (what it says stays); ``hidden`` are the hidden details as fitted."""

    attributes: tuple[int, ...]
    hidden: HiddenDetails

    def labels(self, said: Tensor) -> Tensor:
        """The attributes a description says (9,) long (-1 = not said) -> every attribute drawn."""
        fitted = torch.tensor(self.attributes, dtype=torch.long)
        return torch.where(said >= 0, said, fitted)

    def to_dict(self) -> dict:
        attrs = {name: classes[i] for (name, classes), i in zip(ATTRIBUTES.items(), self.attributes) if i >= 0}
        return {"attributes": attrs, "hidden": self.hidden.to_dict()}

    @classmethod
    def from_dict(cls, data: dict) -> "FittedLook":
        """Inverse of :meth:`to_dict`; ValueError (one line) for a value StoryWorld does not know."""
        try:
            attrs = dict(data.get("attributes") or {})
            unknown = sorted(set(attrs) - set(ATTRIBUTES))
            if unknown:
                raise ValueError(f"unknown attributes {unknown}")
            labels = tuple(classes.index(attrs[name]) if name in attrs else -1 for name, classes in ATTRIBUTES.items())
            return cls(labels, HiddenDetails(**dict(data["hidden"])))
        except (KeyError, TypeError, ValueError) as err:
            raise ValueError(f"a fitted look must be {{'attributes': {{name: class}}, 'hidden': {{...}}}} in StoryWorld's vocabulary ({err})") from None


#: a look as the figure layer keeps it: a seed's (seed, character id), or one fitted to a reference image
Look = tuple[int, str] | FittedLook


def look_from_data(value: object) -> int | FittedLook:
    """A look as states and memory files store it (a seed, or a fitted look's dict) -> the object."""
    if isinstance(value, dict):
        return FittedLook.from_dict(value)
    return int(value)  # type: ignore[arg-type]


def look_to_data(value: int | FittedLook) -> int | dict:
    return value.to_dict() if isinstance(value, FittedLook) else int(value)


def look_parts(said: Tensor, look: Look | None) -> tuple[Tensor, Tensor]:
    """Said attributes (9,) and a look -> (every attribute drawn (9,), the look's vector (LOOK_DIM,))."""
    if look is None:
        return said, look_vector(None)
    if isinstance(look, FittedLook):
        return look.labels(said), look_vector(look.hidden)
    labels, hidden = resolve_look(said, *look)
    return labels, look_vector(hidden)


def condition(labels: Tensor, actions: Tensor, kinds: Tensor, zoom: Tensor, looks: Tensor | None = None) -> Tensor:
    """labels (N, 9) long (-1 = not said), action and kind indices (N,) long, camera zoom (N,),
    looks (N, LOOK_DIM) (None: no look) -> the decoder's condition (N, CONDITION_DIM)."""
    parts = []
    for a, s in enumerate(SIZES):
        lab = labels[:, a].clone()
        lab[lab < 0] = s - 1
        parts.append(F.one_hot(lab, s).float())
    parts.append(F.one_hot(actions, len(ACTIONS)).float())
    parts.append(F.one_hot(kinds, len(KINDS)).float())
    parts.append((zoom.float() - 1.0)[:, None] * 5.0)
    parts.append(look_vector(None).expand(len(labels), -1) if looks is None else looks.float())
    return torch.cat(parts, dim=1)


CONDITION_DIM = sum(SIZES) + len(ACTIONS) + len(KINDS) + 1 + LOOK_DIM


class _Up(nn.Module):
    def __init__(self, cin: int, cout: int, d: int) -> None:
        super().__init__()
        self.conv1 = nn.Conv2d(cin, cout, 3, padding=1)
        self.norm = nn.GroupNorm(8, cout)
        self.film = nn.Linear(d, 2 * cout)
        self.conv2 = nn.Conv2d(cout, cout, 3, padding=1)

    def forward(self, x: Tensor, e: Tensor) -> Tensor:
        x = F.interpolate(x, scale_factor=2, mode="nearest")
        scale, shift = self.film(e)[:, :, None, None].chunk(2, dim=1)
        h = self.norm(F.silu(self.conv1(x))) * (1 + scale) + shift
        return F.silu(self.conv2(h))


class SpriteDecoder(nn.Module):
    """Condition (N, CONDITION_DIM) -> RGB (N, 3, height, width) in [-1, 1] and alpha logits (N, height, width)."""

    def __init__(self, config: SpriteConfig) -> None:
        super().__init__()
        d, c = config.hidden, config.channels
        self.grid = (config.height // 8, config.width // 8)
        self.embed = nn.Sequential(nn.Linear(CONDITION_DIM, d), nn.SiLU(), nn.Linear(d, d), nn.SiLU())
        self.start = nn.Linear(d, c[0] * self.grid[0] * self.grid[1])
        self.ups = nn.ModuleList([_Up(c[0], c[1], d), _Up(c[1], c[2], d), _Up(c[2], c[3], d)])
        self.out = nn.Conv2d(c[3], 4, 3, padding=1)

    def forward(self, cond: Tensor) -> tuple[Tensor, Tensor]:
        e = self.embed(cond)
        h = self.start(e).view(cond.shape[0], -1, *self.grid)
        for up in self.ups:
            h = up(h, e)
        o = self.out(h)
        return torch.tanh(o[:, :3]), o[:, 3]


class FigureSprites(nn.Module):
    """The cast head and the sprite decoder (module docstring)."""

    def __init__(self, config: SpriteConfig) -> None:
        super().__init__()
        self.config = config
        self.cast = nn.Linear(config.text_dim, sum(SIZES))
        self.net = SpriteDecoder(config)

    def attributes(self, names: Tensor) -> Tensor:
        """Name embeddings (..., text_dim) -> attribute classes (..., 9) long, -1 = not said."""
        logits = self.cast(names.float()).split(SIZES, dim=-1)
        out = torch.stack([lg.argmax(-1) for lg in logits], dim=-1)
        for a, s in enumerate(SIZES):
            out[..., a][out[..., a] == s - 1] = -1
        return out

    @torch.no_grad()
    def draw(self, names: Tensor, kind: str | None, action: str | None = None,
             looks: list[Look | None] | None = None) -> tuple[np.ndarray, np.ndarray]:
        """Name embeddings (E, text_dim) -> RGB (E, h, w, 3) uint8 and alpha (E, h, w) bool,
        for the characters standing in a place of ``kind`` (None: not known); ``looks``: per
        character None, the (seed, entity) of its look (:func:`resolve_look`) or a
        :class:`FittedLook`."""
        n = names.shape[0]
        labels = self.attributes(names).cpu()
        vectors = [look_vector(None)] * n
        for i, look in enumerate(looks or []):
            labels[i], vectors[i] = look_parts(labels[i], look)
        acts = torch.full((n,), action_index(action or self.config.action), dtype=torch.long)
        kinds = torch.full((n,), kind_index(kind), dtype=torch.long)
        dev = self.cast.weight.device
        rgb, alpha = self.net(condition(labels, acts, kinds, torch.ones(n), torch.stack(vectors)).to(dev))
        rgb = ((rgb.float().permute(0, 2, 3, 1) + 1.0) * 127.5).round().clamp(0, 255).to(torch.uint8)
        return rgb.cpu().numpy(), (torch.sigmoid(alpha.float()) > self.config.threshold).cpu().numpy()


def anchors(boxes: Tensor, spatial: int, dilate: int = 1) -> list[tuple[int, int] | None]:
    """Layout box masks (E, H, W) at latent resolution (grown by ``dilate`` latent pixels,
    as :func:`~longtake.model.layout.boxes_from_slots` grows them) -> per slot the pixel
    (bottom row, exclusive; centre column) where a sprite stands, None for an empty box."""
    out: list[tuple[int, int] | None] = []
    for box in boxes:
        rows, cols = box.bool().any(-1), box.bool().any(-2)
        if not bool(rows.any()):
            out.append(None)
            continue
        r = torch.nonzero(rows).flatten()
        c = torch.nonzero(cols).flatten()
        bottom = (int(r[-1]) + 1 - dilate) * spatial
        centre = round((int(c[0]) + int(c[-1]) + 1) * spatial / 2)
        out.append((bottom, centre))
    return out


def paste_sprites(frames: np.ndarray, rgb: np.ndarray, alpha: np.ndarray, where: list[tuple[int, int] | None]) -> np.ndarray:
    """Frames (N, H, W, 3) uint8 with sprite k (``rgb[k]`` (h, w, 3), ``alpha[k]`` (h, w))
    standing at ``where[k]`` (bottom row, centre column; None = not drawn), clipped at the
    frame's edges. Returns a new array."""
    out = frames.copy()
    n, hh, ww = frames.shape[:3]
    for k, pos in enumerate(where):
        if pos is None or k >= len(rgb):
            continue
        h, w = alpha[k].shape
        top, left = pos[0] - h, pos[1] - w // 2
        y0, y1, x0, x1 = max(top, 0), min(top + h, hh), max(left, 0), min(left + w, ww)
        if y1 <= y0 or x1 <= x0:
            continue
        a = alpha[k][y0 - top : y1 - top, x0 - left : x1 - left]
        src = rgb[k][y0 - top : y1 - top, x0 - left : x1 - left]
        region = out[:, y0:y1, x0:x1]
        region[:, a] = src[a]
    return out


# --------------------------------------------------------------------------- files

SPRITES_FILE = "sprites.safetensors"


def install_sprites(folder, sprites: FigureSprites, *, provenance: dict | None = None) -> None:
    """Add ``sprites`` to the built-in model folder ``folder``: ``sprites.safetensors`` (float16)
    and ``"sprites"`` (its config and ``provenance``) in ``model.json``, each written atomically.
    The folder's text encoder must be the one the cast head was trained on."""
    save_folder_part(folder, SPRITES_FILE, "sprites", sprites, sprites.config.to_dict(), provenance=provenance, fmt="longtake-builtin-sprites")


def load_sprites(folder, meta: dict, text_dim: int, device: str | torch.device = "cpu") -> FigureSprites | None:
    """The folder's :class:`FigureSprites` (float32), None when ``model.json`` has no "sprites".
    Raises ModelError (one line) for a bad config or weights that do not match it."""
    from pathlib import Path

    from longtake.model.errors import ModelError

    if "sprites" not in meta:
        return None
    spec = {k: v for k, v in dict(meta["sprites"]).items() if k != "train"}
    try:
        config = SpriteConfig.from_dict(spec)
    except (TypeError, ValueError) as err:
        raise ModelError(f"{Path(folder) / 'model.json'}: bad 'sprites' settings ({err})") from None
    if config.text_dim != text_dim:
        raise ModelError(f"{Path(folder) / 'model.json'}: sprites read {config.text_dim}-dim names but the text encoder gives {text_dim}")
    return load_folder_part(folder, SPRITES_FILE, "sprites", FigureSprites(config), "remove that entry or train them: longtake train-sprites", device)
