"""StoryWorld probes: small nets trained on StoryWorld ground truth that read generated video.

``StoryWorldProbes.load()`` reads the shipped weights (``longtake/assets/probes``, made by
``python -m longtake.eval.train_probes``; see docs/probes.md for the held-out accuracy) and
answers, for frames (N, H, W, 3) uint8 RGB:

* :meth:`~StoryWorldProbes.locations` -- which of the 9 StoryWorld locations each frame shows;
* :meth:`~StoryWorldProbes.instances` -- the characters in each frame (box, captioned
  attributes, pose, hidden details, identity embedding);
* :meth:`~StoryWorldProbes.identity` -- identity embeddings of given boxes, sensitive to the
  hidden details (shoes, badge, skin, bag...) that no caption states;
* :meth:`~StoryWorldProbes.alignment` -- a CLIP-score-like similarity of a clip to prompts.

The probes work at 128x128: frames of another size are resized (boxes are given and returned
in the caller's pixel coordinates). Nothing is downloaded.
"""

from __future__ import annotations

import json
import logging
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import torch
import torch.nn.functional as Fn
from safetensors.torch import load_file, save_file

from longtake.atomic import atomic_output, write_text_atomic
from longtake.eval.errors import EvalError
from longtake.eval.probe_data import ATTRIBUTES, HIDDEN, LOCATION_IDS, POSES, appearance_attributes, drawn_hidden
from longtake.eval.probe_models import (AlignConfig, AlignNet, BoxConfig, BoxNet, CropConfig, CropNet, SceneConfig, SceneNet,
                                        bag_inputs, crop_boxes, decode_boxes, flatten_detections)
from longtake.model.tokenizer import Tokenizer
from longtake.world.vocab import Appearance

log = logging.getLogger(__name__)

SHIPPED = Path(__file__).resolve().parent.parent / "assets" / "probes"
WEIGHTS = "probes.safetensors"
CONFIG = "probes.json"
SIZE = 128  # the probes' working resolution
BATCH = 64
#: Frames converted to float at once (bounds memory for long videos).
CHUNK = 256
#: Frames of a clip the alignment probe looks at (evenly spaced).
ALIGN_FRAMES = 8


@dataclass
class Instance:
    """One detected character. ``box`` x0, y0, x1, y1 (exclusive) in the frame's pixels;
    ``area`` person pixels inside the box; ``attributes`` the captioned attributes (keys of
    ``probe_data.ATTRIBUTES``; no ``hair_colour`` when bald; glasses "yes"/"no", hat "none"
    or its kind); ``embedding`` (E,) the L2-normalised identity embedding (as
    :meth:`StoryWorldProbes.identity`); ``hidden`` the probe's reading of the hidden details,
    without the colour or side of an item it reads as absent (no badge, bag or hat:
    ``probe_data.drawn_hidden``)."""

    box: tuple[int, int, int, int]
    area: int
    attributes: dict[str, str]
    embedding: np.ndarray
    score: float = 1.0
    pose: str = ""
    hidden: dict[str, str] = field(default_factory=dict)


def match_attributes(appearance: Appearance, instances: list[Instance]) -> float:
    """The best fraction, over ``instances``, of the captioned attributes of ``appearance``
    that the instance shows (0.0 without instances). Glasses and hat count as captioned:
    StoryWorld draws them only when the caption says them."""
    want = appearance_attributes(appearance)
    if not instances or not want:
        return 0.0
    return max(sum(inst.attributes.get(k) == v for k, v in want.items()) / len(want) for inst in instances)


class StoryWorldProbes:
    """The four probes over one set of weights. Build with :meth:`load`. ``refine`` (optional)
    is the detector's second stage: it moves every detected box before the crops are read."""

    def __init__(self, scene: SceneNet, crop: CropNet, align: AlignNet | None = None, tokenizer: Tokenizer | None = None,
                 *, threshold: float = 0.35, hidden_weight: float = 1.5, meta: dict[str, Any] | None = None,
                 device: str | torch.device = "cpu", refine: BoxNet | None = None) -> None:
        self.device = torch.device(device)
        self.scene = scene.to(self.device).eval()
        self.crop = crop.to(self.device).eval()
        self.refine = refine.to(self.device).eval() if refine is not None else None
        self.align = align.to(self.device).eval() if align is not None else None
        self.tokenizer = tokenizer
        self.threshold = float(threshold)
        self.hidden_weight = float(hidden_weight)
        self.meta = dict(meta or {})

    # -- persistence -----------------------------------------------------------------------
    @classmethod
    def load(cls, folder: str | Path | None = None, *, device: str | torch.device = "cpu") -> "StoryWorldProbes":
        """Read probes from ``folder`` (None: the weights shipped with longtake)."""
        path = Path(folder).expanduser() if folder is not None else SHIPPED
        hint = "train them with `python -m longtake.eval.train_probes --out FOLDER`"
        if not path.is_dir():
            raise EvalError(f"StoryWorld probes not found: {path} is not a folder; {hint}")
        for name in (CONFIG, WEIGHTS):
            if not (path / name).is_file():
                raise EvalError(f"StoryWorld probes folder {path} has no {name}; {hint}")
        try:
            cfg = json.loads((path / CONFIG).read_text(encoding="utf-8"))
            tensors = load_file(str(path / WEIGHTS))
        except (OSError, ValueError) as err:
            raise EvalError(f"cannot read StoryWorld probes in {path}: {err}") from err
        try:
            scene = SceneNet(SceneConfig(**{k: tuple(v) if isinstance(v, list) else v for k, v in cfg["scene"].items()}))
            crop_cfg = {k: tuple(v) if isinstance(v, list) else v for k, v in cfg["crop"].items()}
            crop = CropNet(CropConfig(**crop_cfg))
            scene.load_state_dict(_prefixed(tensors, "scene."))
            crop.load_state_dict(_prefixed(tensors, "crop."))
            align, tok, refine = None, None, None
            if cfg.get("refine"):
                refine = BoxNet(BoxConfig(**{k: tuple(v) if isinstance(v, list) else v for k, v in cfg["refine"].items()}))
                refine.load_state_dict(_prefixed(tensors, "refine."))
            if cfg.get("align"):
                align = AlignNet(AlignConfig(**cfg["align"]))
                align.load_state_dict(_prefixed(tensors, "align."))
                tok = Tokenizer(cfg["vocab"])
        except (KeyError, TypeError, RuntimeError) as err:
            raise EvalError(f"StoryWorld probes in {path} do not match this version of longtake: {err}") from err
        return cls(scene, crop, align, tok, threshold=cfg.get("threshold", 0.35), hidden_weight=cfg.get("hidden_weight", 1.5),
                   meta=cfg.get("meta", {}), device=device, refine=refine)

    def save(self, folder: str | Path, *, meta: dict[str, Any] | None = None) -> None:
        """Write ``probes.safetensors`` and ``probes.json`` into ``folder``."""
        path = Path(folder)
        path.mkdir(parents=True, exist_ok=True)
        tensors = {f"scene.{k}": v for k, v in self.scene.state_dict().items()}
        tensors |= {f"crop.{k}": v for k, v in self.crop.state_dict().items()}
        if self.refine is not None:
            tensors |= {f"refine.{k}": v for k, v in self.refine.state_dict().items()}
        cfg: dict[str, Any] = {"format": "longtake-storyworld-probes", "version": 1, "threshold": self.threshold,
                               "hidden_weight": self.hidden_weight,
                               "scene": vars(self.scene.cfg), "crop": vars(self.crop.cfg), "align": None,
                               "refine": vars(self.refine.cfg) if self.refine is not None else None,
                               "locations": list(LOCATION_IDS), "attributes": {k: list(v) for k, v in ATTRIBUTES.items()},
                               "hidden": {k: list(v) for k, v in HIDDEN.items()}, "poses": list(POSES)}
        if self.align is not None and self.tokenizer is not None:
            tensors |= {f"align.{k}": v for k, v in self.align.state_dict().items()}
            cfg["align"] = vars(self.align.cfg)
            cfg["vocab"] = self.tokenizer.vocab
        cfg["meta"] = {**self.meta, **(meta or {})}
        with atomic_output(path / WEIGHTS) as tmp:
            save_file({k: v.detach().cpu().contiguous() for k, v in tensors.items()}, str(tmp))
        write_text_atomic(path / CONFIG, json.dumps(cfg, indent=1) + "\n")

    # -- inputs ------------------------------------------------------------------------------
    def _tensor(self, frames: np.ndarray) -> tuple[torch.Tensor, float, float]:
        """frames (N, H, W, 3) uint8 -> (N, 3, 128, 128) float in [0, 1], x and y scale factors."""
        arr = _frames_array(frames)
        x = torch.from_numpy(np.ascontiguousarray(arr)).to(self.device).permute(0, 3, 1, 2).float() / 255  # (N, 3, H, W)
        h, w = arr.shape[1:3]
        if (h, w) != (SIZE, SIZE):
            x = Fn.interpolate(x, size=(SIZE, SIZE), mode="bilinear", align_corners=False, antialias=True)
        return x, w / SIZE, h / SIZE

    @torch.no_grad()
    def _scene(self, x: torch.Tensor) -> dict[str, torch.Tensor]:
        outs = [self.scene(x[i : i + BATCH]) for i in range(0, x.shape[0], BATCH)]
        return {k: torch.cat([o[k] for o in outs]) for k in outs[0]}

    @torch.no_grad()
    def _crops(self, x: torch.Tensor, index: torch.Tensor, boxes: torch.Tensor) -> dict[str, torch.Tensor]:
        """x (N, 3, 128, 128), index (M,), boxes (M, 4) in 128-px coordinates -> CropNet outputs."""
        if boxes.shape[0] == 0:
            heads = {n: torch.zeros(0, k) for n, k in self.crop.cfg.heads.items()}
            dim = self.crop.cfg.embed_dim + sum(len(v) for v in HIDDEN.values())
            return heads | {"embedding": torch.zeros(0, self.crop.cfg.embed_dim), "identity": torch.zeros(0, dim)}
        crops = crop_boxes(x, index, boxes, self.crop.cfg)  # figure (M, 3, ch, cw), head (M, 3, hh, hw)[, torso]
        outs = [self.crop(*(c[i : i + 4 * BATCH] for c in crops)) for i in range(0, crops[0].shape[0], 4 * BATCH)]
        out = {k: torch.cat([o[k] for o in outs]) for k in outs[0]}
        out["identity"] = self._identity_embedding(out)
        return out

    def _identity_embedding(self, out: dict[str, torch.Tensor]) -> torch.Tensor:
        """(M, E + sum of hidden classes): the contrastive embedding joined with the hidden-detail
        probabilities (weight ``hidden_weight``), L2-normalised. The classifiers' readings of
        shoes, badge, skin and bag do not move with pose or background, which keeps one
        character's similarity high across shots and its twins' low (docs/probes.md)."""
        hid = torch.cat([torch.softmax(out[n], -1) for n in HIDDEN], -1) * (self.hidden_weight / len(HIDDEN) ** 0.5)
        return Fn.normalize(torch.cat([out["embedding"], hid], -1), dim=-1)

    # -- probes ------------------------------------------------------------------------------
    def location_probs(self, frames: np.ndarray) -> np.ndarray:
        """frames (N, H, W, 3) uint8 -> (N, 9) probabilities in ``LOCATIONS`` order."""
        arr = _frames_array(frames)
        if arr.shape[0] > CHUNK:
            return np.concatenate([self.location_probs(arr[i : i + CHUNK]) for i in range(0, arr.shape[0], CHUNK)])
        x, _, _ = self._tensor(arr)
        return torch.softmax(self._scene(x)["location"], -1).cpu().numpy()

    def locations(self, frames: np.ndarray) -> list[str]:
        """frames (N, H, W, 3) uint8 -> the location id of each frame."""
        return [LOCATION_IDS[i] for i in self.location_probs(frames).argmax(1)]

    def _detect(self, x: torch.Tensor, out: dict[str, torch.Tensor]) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor, list[int]]:
        """Boxes of all frames (refined when the probes have a second stage): index (M,), boxes
        (M, 4) and scores (M,) at 128 px, areas (M) person pixels in each box."""
        dets = decode_boxes(out["heat"], out["size"], out["offset"], stride=self.scene.cfg.stride, threshold=self.threshold,
                            frame_hw=(SIZE, SIZE))
        index, boxes, scores = flatten_detections(dets)
        if self.refine is not None:
            boxes = self.refine.refine(x, index, boxes)
        person = Fn.interpolate(out["mask"], size=(SIZE, SIZE), mode="bilinear", align_corners=False)[:, 0] > 0  # (N, 128, 128)
        areas = []
        for i, box in zip(index.tolist(), boxes.tolist()):
            x0, y0, x1, y1 = (int(round(v)) for v in box)
            areas.append(int(person[i, y0:y1, x0:x1].sum()))
        return index, boxes, scores, areas

    def instances(self, frames: np.ndarray) -> list[list[Instance]]:
        """frames (N, H, W, 3) uint8 -> per frame, the characters found (highest score first)."""
        arr = _frames_array(frames)
        if arr.shape[0] > CHUNK:
            return [inst for i in range(0, arr.shape[0], CHUNK) for inst in self.instances(arr[i : i + CHUNK])]
        x, sx, sy = self._tensor(arr)
        index, boxes, scores, areas = self._detect(x, self._scene(x))
        co = self._crops(x, index, boxes)
        probs = {n: torch.softmax(co[n], -1).argmax(-1).tolist() for n in self.crop.cfg.heads}
        result: list[list[Instance]] = [[] for _ in range(x.shape[0])]
        scale = np.array([sx, sy, sx, sy], np.float32)
        for m in range(index.shape[0]):
            attrs = {n: ATTRIBUTES[n][probs[n][m]] for n in ATTRIBUTES}
            if attrs["hair_style"] == "bald":
                del attrs["hair_colour"]
            box = tuple(int(round(float(v))) for v in boxes[m].numpy() * scale)
            result[int(index[m])].append(Instance(
                box=box, area=int(round(areas[m] * sx * sy)), attributes=attrs, embedding=co["identity"][m].cpu().numpy(),  # type: ignore[arg-type]
                score=float(scores[m]), pose=POSES[probs["pose"][m]], hidden=drawn_hidden({n: HIDDEN[n][probs[n][m]] for n in HIDDEN}, attrs),
            ))
        return result

    def identity(self, frames: np.ndarray, boxes: np.ndarray | list[tuple[int, int, int, int]]) -> np.ndarray:
        """frames (N, H, W, 3) uint8 and one box per frame (N, 4) x0, y0, x1, y1 in pixels ->
        (N, E) L2-normalised identity embeddings (E = 64 + 43 hidden-detail classes = 107;
        cosine similarity compares them)."""
        arr = _frames_array(frames)
        b = np.asarray(boxes, np.float32).reshape(-1, 4)
        if b.shape[0] != arr.shape[0]:
            raise EvalError(f"identity() needs one box per frame: got {b.shape[0]} boxes for {arr.shape[0]} frames")
        if arr.shape[0] > CHUNK:
            return np.concatenate([self.identity(arr[i : i + CHUNK], b[i : i + CHUNK]) for i in range(0, arr.shape[0], CHUNK)])
        x, sx, sy = self._tensor(arr)
        b = b / np.array([sx, sy, sx, sy], np.float32)
        co = self._crops(x, torch.arange(x.shape[0]), torch.from_numpy(b))
        return co["identity"].cpu().numpy()

    def frame_features(self, frames: np.ndarray) -> np.ndarray:
        """frames (N, H, W, 3) uint8 -> (N, D) probe features the alignment model reads:
        location probabilities, the pooled scene feature, the score-weighted mean and max of
        the detected characters' attribute and pose probabilities, the weighted mean of their
        boxes (centre and size, in frame units) and their count."""
        arr = _frames_array(frames)
        if arr.shape[0] > CHUNK:
            return np.concatenate([self.frame_features(arr[i : i + CHUNK]) for i in range(0, arr.shape[0], CHUNK)])
        x, _, _ = self._tensor(arr)
        out = self._scene(x)
        index, boxes, scores, _ = self._detect(x, out)
        co = self._crops(x, index, boxes)
        names = [*ATTRIBUTES, "pose"]
        per = torch.cat([torch.softmax(co[n], -1) for n in names], -1) * scores[:, None]  # (M, A)
        geo = torch.stack([(boxes[:, 0] + boxes[:, 2]) / 2, (boxes[:, 1] + boxes[:, 3]) / 2,
                           boxes[:, 2] - boxes[:, 0], boxes[:, 3] - boxes[:, 1]], 1) / SIZE * scores[:, None]  # (M, 4)
        n = x.shape[0]
        weight = torch.zeros(n).index_add_(0, index, scores).clamp_min(1e-3)[:, None]  # (N, 1)
        mean = torch.zeros(n, per.shape[1]).index_add_(0, index, per) / weight.clamp_min(1.0)
        peak = torch.zeros(n, per.shape[1]).scatter_reduce_(0, index[:, None].expand_as(per), per, "amax", include_self=True)
        where = torch.zeros(n, 4).index_add_(0, index, geo) / weight
        count = torch.zeros(n).index_add_(0, index, scores)[:, None] / 4
        loc = torch.softmax(out["location"], -1)
        return torch.cat([loc, out["feature"], mean, peak, where, count], 1).cpu().numpy()  # (N, D)

    @staticmethod
    def pool_clip(features: np.ndarray) -> np.ndarray:
        """(N, D) frame features in time order -> (3 D,) clip feature: mean, standard deviation
        and linear trend over time (which way characters walk, whether the view zooms)."""
        f = np.asarray(features, np.float64)
        t = np.linspace(-1.0, 1.0, f.shape[0]) if f.shape[0] > 1 else np.zeros(1)
        slope = (t[:, None] * (f - f.mean(0))).sum(0) / max(float((t**2).sum()), 1e-9)
        return np.concatenate([f.mean(0), f.std(0), slope]).astype(np.float32)

    def alignment(self, frames: np.ndarray, texts: list[str]) -> np.ndarray:
        """A clip (N, H, W, 3) uint8 against prompts -> (len(texts),) cosine similarity in [-1, 1].

        Up to 8 evenly spaced frames are read. Use the chunk prompts of the timeline (with the
        characters' descriptions and the setting); the bare names of a shot prompt carry
        little that can be seen.
        """
        if self.align is None or self.tokenizer is None:
            raise EvalError("these StoryWorld probes have no alignment model; retrain them with longtake.eval.train_probes")
        arr = np.asarray(frames)
        if arr.ndim == 4 and arr.shape[0] > ALIGN_FRAMES:
            arr = arr[np.linspace(0, arr.shape[0] - 1, ALIGN_FRAMES).round().astype(int)]
        feat = torch.from_numpy(self.pool_clip(self.frame_features(arr)))[None].to(self.device)  # (1, 2D)
        ids, offsets = bag_inputs(self.tokenizer, list(texts), self.align.cfg.bigram_buckets)
        with torch.no_grad():
            v = self.align.encode_video(feat)  # (1, E)
            t = self.align.encode_text(ids.to(self.device), offsets.to(self.device))  # (T, E)
        return (t @ v[0]).cpu().numpy()


def _frames_array(frames: np.ndarray) -> np.ndarray:
    """frames as a (N, H, W, 3) uint8 array (one (H, W, 3) frame becomes N = 1), or EvalError."""
    arr = np.asarray(frames)
    if arr.ndim == 3:
        arr = arr[None]
    if arr.ndim != 4 or arr.shape[-1] != 3 or arr.dtype != np.uint8 or arr.shape[0] == 0:
        raise EvalError(f"frames must be a non-empty (N, H, W, 3) uint8 RGB array, got shape {arr.shape} dtype {arr.dtype}")
    return arr


def _prefixed(tensors: dict[str, torch.Tensor], prefix: str) -> dict[str, torch.Tensor]:
    return {k[len(prefix):]: v for k, v in tensors.items() if k.startswith(prefix)}
