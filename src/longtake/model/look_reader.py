"""The look reader: a character's look read off a reference image, for the figure layer.

The figure layer (model/sprites.py) draws a character from what her description says and a
*look*: what the text leaves open (the attributes it does not say, and StoryWorld's hidden
details: skin, shoes, badge, bag, watch, hat colour, shades, pattern, height). Without a
reference image a look is drawn from a seed. With ``refs`` in the script, the
:class:`LookReader` reads it off the image: a small convolutional network trained by
``longtake train-look-reader`` (train/look_reader.py) on the figure layer's training crops
(StoryWorld's training split, the true look of every crop as the target). It is part of
the generator, with its own weights (``looks.safetensors``); the evaluation probes are
never used.

A reference image shows the character whole, standing, near its centre (a crop of a frame, a
character sheet). :func:`figure_box` finds her with OpenCV's GrabCut;
:func:`normal_window` scales the image so that the box is :data:`FIGURE_HEIGHT` pixels tall
and cuts the reader's window around it, her feet at its bottom centre. The reader is
trained on windows cut the same way from the true figure boxes, with the box jittered, so a
box GrabCut gets slightly wrong still reads.
"""

from __future__ import annotations

from dataclasses import dataclass

import cv2
import numpy as np
import torch
import torch.nn.functional as F
from torch import Tensor, nn

from longtake.eval.probe_data import ATTRIBUTES
from longtake.model.loading import ChannelsConfig, load_folder_part, save_folder_part
from longtake.model.sprites import LOOK_CLASSES, LOOK_SCALES, FittedLook
from longtake.world.vocab import HiddenDetails

#: the reader's window (height, width), pixels
WINDOW = (64, 40)
#: the figure's height in the window, its feet at row FEET_ROW, centred
FIGURE_HEIGHT = 48
FEET_ROW = 62
#: the heads: every captioned attribute, every classed part of a look; then the continuous parts
HEADS: dict[str, int] = {**{f"attr:{n}": len(c) for n, c in ATTRIBUTES.items()}, **{f"look:{n}": len(c) for n, c in LOOK_CLASSES.items()}}
SCALES = tuple(LOOK_SCALES)
LOOK_FILE = "looks.safetensors"


class LookReadError(ValueError):
    """A reference image no look can be read from (one line)."""


@dataclass(frozen=True)
class LookReaderConfig(ChannelsConfig):
    channels: tuple[int, int, int] = (32, 64, 96)
    hidden: int = 256
    head_channels: int = 32  # channels per cell of the 8 x 5 grid the dense head reads (0: all of the last stage's)
    dropout: float = 0.3  # before and after the dense layer (training only)


class LookReader(nn.Module):
    """RGB windows (N, 3, 64, 40) in [-1, 1] -> {head: logits (N, classes)} and "scales" (N, 5)."""

    def __init__(self, config: LookReaderConfig = LookReaderConfig()) -> None:
        super().__init__()
        self.config = config
        c1, c2, c3 = config.channels
        layers: list[nn.Module] = []
        cin = 3
        for cout in (c1, c2, c3):  # 64x40 -> 32x20 -> 16x10 -> 8x5
            layers += [nn.Conv2d(cin, cout, 3, padding=1), nn.GroupNorm(8, cout), nn.SiLU(),
                       nn.Conv2d(cout, cout, 3, stride=2, padding=1), nn.GroupNorm(8, cout), nn.SiLU()]
            cin = cout
        if config.head_channels:  # a narrow 1x1 projection keeps where things are but not room to memorise each figure
            layers += [nn.Conv2d(c3, config.head_channels, 1), nn.SiLU()]
        self.body = nn.Sequential(*layers)
        cells = (config.head_channels or c3) * (WINDOW[0] // 8) * (WINDOW[1] // 8)
        self.fc = nn.Sequential(nn.Flatten(), nn.Dropout(config.dropout), nn.Linear(cells, config.hidden), nn.SiLU(), nn.Dropout(config.dropout))
        self.out = nn.Linear(config.hidden, sum(HEADS.values()) + len(SCALES))

    def forward(self, x: Tensor) -> dict[str, Tensor]:
        z = self.out(self.fc(self.body(x)))
        parts = z.split([*HEADS.values(), len(SCALES)], dim=1)
        return {**dict(zip(HEADS, parts)), "scales": parts[-1]}


def targets(full: Tensor, looks: Tensor) -> tuple[Tensor, Tensor, Tensor]:
    """Training targets from the figure layer's crops: ``full`` (N, 9) attribute classes
    (-1 = not drawn) and ``looks`` (N, LOOK_DIM) look vectors -> classes (N, len(HEADS))
    (-1 = ignore: not drawn, or a part the figure does not have, as a bag's colour without
    a bag or a hat's colour without a hat), the continuous parts (N, 5) and whether the crop has a look (N,) bool."""
    cols = [full[:, a] for a in range(len(ATTRIBUTES))]
    at = 0
    for name, classes in LOOK_CLASSES.items():
        hot = looks[:, at : at + len(classes) + 1]
        idx = hot.argmax(1)
        idx[idx == len(classes)] = -1
        if name == "hat_colour":  # drawn only on a hat
            idx[full[:, list(ATTRIBUTES).index("hat")] <= 0] = -1
        cols.append(idx)
        at += len(classes) + 1
    return torch.stack(cols, 1).long(), looks[:, at : at + len(SCALES)].float(), looks[:, -1] > 0.5


def figure_box(image: np.ndarray) -> tuple[int, int, int, int]:
    """(x0, y0, x1, y1), exclusive ends: the box of the one figure a reference image shows
    near its centre: OpenCV's GrabCut started from the image's central 80% of width and 96%
    of height (seeded, so the same image gives the same box), the largest connected part of
    the foreground. LookReadError when there is none."""
    H, W = image.shape[:2]
    if H < 16 or W < 8:
        raise LookReadError(f"a reference image of {W}x{H} pixels is too small to find a figure in (at least 8x16)")
    mask = np.zeros((H, W), np.uint8)
    rect = (int(W * 0.1), int(H * 0.02), max(1, int(W * 0.8)), max(1, int(H * 0.96)))
    bgd, fgd = np.zeros((1, 65), np.float64), np.zeros((1, 65), np.float64)
    cv2.setRNGSeed(0)
    cv2.grabCut(np.ascontiguousarray(image[:, :, ::-1]), mask, rect, bgd, fgd, 5, cv2.GC_INIT_WITH_RECT)
    fg = ((mask == cv2.GC_FGD) | (mask == cv2.GC_PR_FGD)).astype(np.uint8)
    n, _, stats, _ = cv2.connectedComponentsWithStats(fg, connectivity=8)
    if n < 2:
        raise LookReadError("no figure found in a reference image (it should show one character whole, near its centre)")
    k = 1 + int(np.argmax(stats[1:, cv2.CC_STAT_AREA]))
    x, y, w, h = (int(v) for v in stats[k, :4])
    if h < 8:
        raise LookReadError(f"the figure found in a reference image is {h} pixels tall; the reader needs at least 8")
    return x, y, x + w, y + h


def normal_window(image: np.ndarray, box: tuple[float, float, float, float]) -> np.ndarray:
    """The reader's window (64, 40, 3) uint8: ``image`` scaled so that ``box`` is
    FIGURE_HEIGHT pixels tall, the box's bottom centre at (FEET_ROW, 20); edges repeated.
    The rows below her feet are grey: a training crop ends at the feet (repeating its last
    row, her shoes, there), a reference image shows the floor."""
    x0, y0, x1, y1 = box
    k = FIGURE_HEIGHT / max(1.0, float(y1 - y0))
    cx = (x0 + x1) / 2.0
    m = np.array([[k, 0.0, WINDOW[1] / 2.0 - k * cx], [0.0, k, FEET_ROW - k * y1]], np.float32)
    win = cv2.warpAffine(np.ascontiguousarray(image), m, (WINDOW[1], WINDOW[0]), flags=cv2.INTER_AREA if k < 1 else cv2.INTER_LINEAR,
                         borderMode=cv2.BORDER_REPLICATE)
    win[FEET_ROW:] = 128
    return win


def to_input(windows: np.ndarray) -> Tensor:
    """Windows (N, 64, 40, 3) uint8 -> the reader's input (N, 3, 64, 40) in [-1, 1]."""
    return torch.from_numpy(np.ascontiguousarray(windows)).permute(0, 3, 1, 2).float() / 127.5 - 1.0


def _value(name: str, label: str) -> object:
    if name == "watch":
        return label == "yes"
    if name in ("skin_tone", "pattern_period", "pattern_width", "pattern_phase"):
        return int(label)
    return label


@torch.no_grad()
def read_look(reader: LookReader, images: list[np.ndarray] | tuple[np.ndarray, ...], entity: str = "") -> FittedLook:
    """One character's look from her reference images (each (H, W, 3) uint8 RGB; several:
    the readings' probabilities are averaged). The attributes are all read; what her
    description says overrides them when the figure is drawn (:meth:`FittedLook.labels`)."""
    if not images:
        raise LookReadError(f"character {entity!r}: no reference image to read a look from")
    wins = []
    for i, img in enumerate(images):
        if not isinstance(img, np.ndarray) or img.dtype != np.uint8 or img.ndim != 3 or img.shape[2] != 3:
            raise LookReadError(f"character {entity!r}: reference image {i} must be (H, W, 3) uint8 RGB")
        wins.append(normal_window(img, figure_box(img)))
    return read_window(reader, *wins)


@torch.no_grad()
def read_window(reader: LookReader, *windows: np.ndarray) -> FittedLook:
    """The look read off reader windows (each (64, 40, 3) uint8, :func:`normal_window`;
    several: their probabilities averaged)."""
    dev = next(reader.parameters()).device
    out = reader(to_input(np.stack(windows)).to(dev))
    probs = {k: torch.softmax(v.float(), -1).mean(0).cpu() for k, v in out.items() if k != "scales"}
    scales = out["scales"].float().mean(0).clamp(-1.0, 1.0).cpu()
    attrs = tuple(int(probs[f"attr:{n}"].argmax()) for n in ATTRIBUTES)
    values: dict[str, object] = {n: _value(n, c[int(probs[f"look:{n}"].argmax())]) for n, c in LOOK_CLASSES.items()}
    period = int(values["pattern_period"])  # type: ignore[call-overload]
    values["pattern_phase"] = min(int(values["pattern_phase"]), period - 1)  # type: ignore[call-overload]
    for (name, (centre, half)), s in zip(LOOK_SCALES.items(), scales.tolist()):
        values[name] = round(centre + half * s, 3)
    return FittedLook(attrs, HiddenDetails(**values))  # type: ignore[arg-type]


def save_reader(folder, reader: LookReader, *, provenance: dict | None = None) -> None:
    """Write ``looks.safetensors`` (float16) and model.json's "look_reader" into ``folder``, atomically."""
    save_folder_part(folder, LOOK_FILE, "look_reader", reader, reader.config.to_dict(), provenance=provenance, fmt="longtake-builtin-look-reader")


def load_reader(folder, meta: dict, device: str | torch.device = "cpu") -> LookReader | None:
    """The folder's :class:`LookReader` (float32), None when model.json has no "look_reader".
    ModelError (one line) for bad settings or weights that do not match them."""
    from pathlib import Path

    from longtake.model.errors import ModelError

    if "look_reader" not in meta:
        return None
    try:
        module = LookReader(LookReaderConfig.from_dict({k: v for k, v in dict(meta["look_reader"]).items() if k != "train"}))
    except (TypeError, ValueError) as err:
        raise ModelError(f"{Path(folder) / 'model.json'}: bad 'look_reader' settings ({err})") from None
    return load_folder_part(folder, LOOK_FILE, "look_reader", module, "remove that entry or train one: longtake train-look-reader", device)


def augment(x: Tensor, generator: torch.Generator, scale: float = 0.1, shift: float = 3.0, light: float = 0.1) -> Tensor:
    """Windows (N, 3, h, w) moved by up to ``shift`` pixels and scaled by up to ``scale``
    about their feet (a figure box found a little off), edges repeated, and made up to
    ``light`` brighter or darker (another light; hues kept)."""
    n, _, h, w = x.shape
    s = 1.0 + (torch.rand(n, generator=generator) * 2 - 1) * scale
    dx = (torch.rand(n, generator=generator) * 2 - 1) * shift * 2 / w
    dy = (torch.rand(n, generator=generator) * 2 - 1) * shift * 2 / h
    fy = 2 * FEET_ROW / h - 1  # the feet row in [-1, 1]
    theta = torch.zeros(n, 2, 3)
    theta[:, 0, 0] = 1 / s
    theta[:, 1, 1] = 1 / s
    theta[:, 0, 2] = dx
    theta[:, 1, 2] = fy - fy / s + dy
    grid = F.affine_grid(theta, list(x.shape), align_corners=False)
    out = F.grid_sample(x, grid, padding_mode="border", align_corners=False)
    gain = 1.0 + (torch.rand(n, 1, 1, 1, generator=generator) * 2 - 1) * light
    return ((out + 1.0) * gain - 1.0).clamp(-1.0, 1.0)
