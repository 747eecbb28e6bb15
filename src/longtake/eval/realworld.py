"""Optional real-world feature models from a local path: DINOv2, CLIP (transformers), dlib faces.

Nothing is downloaded (REFERENCES.md: no CLIP/DINO weights ship in any package); the user
passes a folder written by ``save_pretrained`` (``--dino``, ``--clip``) or holding dlib's
model files (``--dlib``). Each model reads frames sampled at ``sample_fps`` as the video
streams by and keeps only the features of the first and the previous sample of the current
shot, so memory is constant in the video's length.

Consistency follows the published formula (REFERENCES.md): per frame t after the first of its
shot, 1/2 [cos(f_first, f_t) + cos(f_prev, f_t)] with negatives clipped at 0, where f are the
DINOv2 CLS features (``subject_consistency_dino``) or the CLIP image embeddings
(``background_consistency_clip``). The CLIP score is 100 x cos(image, prompt), clipped at 0,
per shot and per segment, against the script's expanded prompts.
"""

from __future__ import annotations

import abc
import json
import logging
from pathlib import Path
from typing import Any

import numpy as np

from longtake.eval.errors import EvalError
from longtake.eval.shots import ShotPlan, segments

log = logging.getLogger(__name__)

IMAGENET_MEAN = (0.485, 0.456, 0.406)
IMAGENET_STD = (0.229, 0.224, 0.225)
CLIP_MEAN = (0.48145466, 0.4578275, 0.40821073)
CLIP_STD = (0.26862954, 0.26130258, 0.27577711)
#: Frames per second the feature models read by default.
SAMPLE_FPS = 4.0
BATCH = 16
#: dlib's documented same-person distance for its face descriptor.
DLIB_SAME_PERSON = 0.6
DLIB_FILES = ("dlib_face_recognition_resnet_model_v1.dat", "shape_predictor_5_face_landmarks.dat")


def _folder(path: str | Path, what: str, flag: str) -> Path:
    p = Path(path).expanduser()
    if not p.exists():
        raise EvalError(f"{flag} {p}: no such folder; give the local folder of the {what} weights (nothing is downloaded)")
    if not p.is_dir():
        raise EvalError(f"{flag} {p}: not a folder; give the folder that save_pretrained wrote for {what}")
    if not (p / "config.json").is_file():
        raise EvalError(f"{flag} {p}: no config.json; give the folder that save_pretrained wrote for {what}")
    return p


def _norm_stats(folder: Path, mean: tuple[float, ...], std: tuple[float, ...]) -> tuple[np.ndarray, np.ndarray]:
    """Mean and std from the folder's ``preprocessor_config.json`` when it has one."""
    cfg_path = folder / "preprocessor_config.json"
    if cfg_path.is_file():
        try:
            cfg = json.loads(cfg_path.read_text(encoding="utf-8"))
            mean, std = tuple(cfg.get("image_mean", mean)), tuple(cfg.get("image_std", std))
        except (OSError, ValueError):
            log.warning("%s unreadable; using default normalisation", cfg_path)
    return np.asarray(mean, np.float32), np.asarray(std, np.float32)


def _pixels(frames: np.ndarray, size: int, mean: np.ndarray, std: np.ndarray) -> Any:
    """(N, H, W, 3) uint8 -> (N, 3, size, size) float tensor: resize the short side, centre
    crop, normalise (what the CLIP and DINOv2 image processors do)."""
    import cv2
    import torch

    out = np.empty((frames.shape[0], size, size, 3), np.float32)
    for i, f in enumerate(frames):
        h, w = f.shape[:2]
        s = size / min(h, w)
        nh, nw = max(size, round(h * s)), max(size, round(w * s))
        r = cv2.resize(f, (nw, nh), interpolation=cv2.INTER_AREA if s < 1 else cv2.INTER_CUBIC)
        y, x = (nh - size) // 2, (nw - size) // 2
        out[i] = r[y : y + size, x : x + size].astype(np.float32) / 255.0
    out = (out - mean) / std
    return torch.from_numpy(out).permute(0, 3, 1, 2).contiguous()  # (N, 3, size, size)


def _unit(x: np.ndarray) -> np.ndarray:
    return x / np.maximum(np.linalg.norm(x, axis=-1, keepdims=True), 1e-12)


class _Consistency:
    """Streaming first/previous-frame consistency of unit feature vectors, per shot."""

    def __init__(self) -> None:
        self.first: np.ndarray | None = None
        self.prev: np.ndarray | None = None
        self.t: list[int] = []
        self.values: list[float] = []

    def add(self, t: int, f: np.ndarray, new_shot: bool) -> None:
        if new_shot or self.first is None:
            self.first = self.prev = f
            return
        assert self.prev is not None
        v = 0.5 * (max(0.0, float(self.first @ f)) + max(0.0, float(self.prev @ f)))
        self.t.append(t)
        self.values.append(v)
        self.prev = f


class FeatureModel(abc.ABC):
    """Base of the transformers models: sampling, batching and the consistency stream."""

    key = "feature"

    def __init__(self, fps: float, plan: ShotPlan | None, *, sample_fps: float = SAMPLE_FPS, segment_seconds: float = 10.0) -> None:
        self.fps = float(fps)
        self.plan = plan
        self.stride = max(1, round(self.fps / sample_fps))
        self.segment_seconds = segment_seconds
        self.cons = _Consistency()
        self.last_t = -1

    @abc.abstractmethod
    def embed(self, frames: np.ndarray) -> np.ndarray:  # (N, H, W, 3) -> (N, E) unit
        """Unit-norm embeddings of frames (each reader: DINOv2, CLIP)."""

    def update(self, start: int, frames: np.ndarray, shot_starts: set[int]) -> None:
        """Read the sampled frames of a chunk starting at frame ``start``; ``shot_starts`` holds
        the first frames of the shots known so far (planned and detected)."""
        picks = [k for k in range(frames.shape[0]) if (start + k) % self.stride == 0 or (start + k) in shot_starts]
        if not picks:
            return
        feats: list[np.ndarray] = []
        for i in range(0, len(picks), BATCH):
            feats.extend(self.embed(frames[picks[i : i + BATCH]]))
        for k, f in zip(picks, feats):
            t = start + k
            # a shot began since the previous sample: restart the reference
            new = any(s in shot_starts for s in range(self.last_t + 1, t + 1))
            self.cons.add(t, f, new)
            self.after(t, f)
            self.last_t = t

    def after(self, t: int, f: np.ndarray) -> None:
        """Hook for per-sample work (the CLIP score)."""

    def summary(self, num_frames: int) -> dict[str, Any]:
        t = np.asarray(self.cons.t, dtype=int)
        v = np.asarray(self.cons.values, dtype=np.float64)
        out: dict[str, Any] = {"value": float(v.mean()) if v.size else None, "t": (t / self.fps).tolist(), "series": v.tolist()}
        if self.plan is not None:
            out["shots"] = [float(v[(t >= s.start) & (t < s.end)].mean()) if ((t >= s.start) & (t < s.end)).any() else None for s in self.plan.shots]
        out["segments"] = [float(v[(t >= a) & (t < b)].mean()) if ((t >= a) & (t < b)).any() else None
                           for a, b in segments(num_frames, self.fps, self.segment_seconds)]
        return out


class DinoModel(FeatureModel):
    """DINOv2 (or any ViT with a CLS token loadable by ``transformers.AutoModel``) from a folder."""

    key = "subject_consistency_dino"

    def __init__(self, path: str | Path, fps: float, plan: ShotPlan | None, **kw: Any) -> None:
        super().__init__(fps, plan, **kw)
        import torch
        from transformers import AutoModel

        folder = _folder(path, "DINOv2", "--dino")
        try:
            self.model = AutoModel.from_pretrained(str(folder)).eval()
        except (OSError, ValueError) as exc:
            raise EvalError(f"--dino {folder}: cannot load a model ({exc.__class__.__name__}: {str(exc).splitlines()[0]})") from None
        self.size = int(getattr(self.model.config, "image_size", 224))
        self.mean, self.std = _norm_stats(folder, IMAGENET_MEAN, IMAGENET_STD)
        self.torch = torch

    def embed(self, frames: np.ndarray) -> np.ndarray:
        with self.torch.no_grad():
            out = self.model(pixel_values=_pixels(frames, self.size, self.mean, self.std))
        return _unit(out.last_hidden_state[:, 0].float().numpy())  # (N, D) CLS tokens


class ClipModel(FeatureModel):
    """CLIP from a folder (``CLIPModel`` + its tokenizer): image consistency and CLIP score."""

    key = "background_consistency_clip"

    def __init__(self, path: str | Path, fps: float, plan: ShotPlan | None, **kw: Any) -> None:
        super().__init__(fps, plan, **kw)
        import torch
        from transformers import AutoTokenizer, CLIPModel

        folder = _folder(path, "CLIP", "--clip")
        try:
            self.model = CLIPModel.from_pretrained(str(folder)).eval()
        except (OSError, ValueError) as exc:
            raise EvalError(f"--clip {folder}: cannot load a CLIP model ({exc.__class__.__name__}: {str(exc).splitlines()[0]})") from None
        self.tokenizer = None
        if plan is not None and any(s.prompt for s in plan.shots):
            try:
                self.tokenizer = AutoTokenizer.from_pretrained(str(folder))
            except (OSError, ValueError) as exc:
                raise EvalError(f"--clip {folder}: no tokenizer for the CLIP score ({exc.__class__.__name__}); save the tokenizer in the same folder") from None
        self.size = int(self.model.config.vision_config.image_size)
        self.mean, self.std = _norm_stats(folder, CLIP_MEAN, CLIP_STD)
        self.torch = torch
        self.text: dict[str, np.ndarray] = {}
        self.scores: list[tuple[int, float]] = []
        if self.tokenizer is not None and plan is not None:
            prompts = list(dict.fromkeys(s.prompt for s in plan.shots if s.prompt))
            self.text = dict(zip(prompts, self._texts(prompts)))
            self.prompt_at = [(s.start, s.end, s.prompt) for s in plan.shots]

    def _texts(self, prompts: list[str]) -> np.ndarray:
        assert self.tokenizer is not None
        max_len = int(self.model.config.text_config.max_position_embeddings)
        tok = self.tokenizer(prompts, padding=True, truncation=True, max_length=max_len, return_tensors="pt")
        with self.torch.no_grad():
            out = self.model.get_text_features(input_ids=tok["input_ids"], attention_mask=tok["attention_mask"])
        out = getattr(out, "pooler_output", out)
        return _unit(out.float().numpy())  # (P, E)

    def embed(self, frames: np.ndarray) -> np.ndarray:
        with self.torch.no_grad():
            out = self.model.get_image_features(pixel_values=_pixels(frames, self.size, self.mean, self.std))
        out = getattr(out, "pooler_output", out)
        return _unit(out.float().numpy())  # (N, E)

    def after(self, t: int, f: np.ndarray) -> None:
        if not self.text:
            return
        prompt = next((p for a, b, p in self.prompt_at if a <= t < b), None)
        if prompt:
            self.scores.append((t, 100.0 * max(0.0, float(self.text[prompt] @ f))))

    def summary(self, num_frames: int) -> dict[str, Any]:
        out = super().summary(num_frames)
        if self.scores:
            t = np.asarray([s[0] for s in self.scores])
            v = np.asarray([s[1] for s in self.scores])
            clip: dict[str, Any] = {"value": float(v.mean()), "t": (t / self.fps).tolist(), "series": v.tolist()}
            if self.plan is not None:
                clip["shots"] = [float(v[(t >= s.start) & (t < s.end)].mean()) if ((t >= s.start) & (t < s.end)).any() else None for s in self.plan.shots]
            clip["segments"] = [float(v[(t >= a) & (t < b)].mean()) if ((t >= a) & (t < b)).any() else None
                                for a, b in segments(num_frames, self.fps, self.segment_seconds)]
            out["clip_score"] = clip
        return out


def check_dlib(path: str | Path) -> Path:
    """The dlib folder, or EvalError when dlib or one of its model files is missing."""
    try:
        import dlib  # type: ignore[import-not-found]  # noqa: F401
    except ImportError:
        raise EvalError("--dlib needs the dlib package, which is not installed (pip install dlib)") from None
    folder = Path(path).expanduser()
    if not folder.is_dir():
        raise EvalError(f"--dlib {folder}: no such folder; give the folder holding {' and '.join(DLIB_FILES)}")
    missing = [f for f in DLIB_FILES if not (folder / f).is_file()]
    if missing:
        raise EvalError(f"--dlib {folder}: missing {', '.join(missing)}")
    return folder


def check_paths(dino: Path | None, clip: Path | None, dlib: Path | None) -> None:
    """Fail early (before reading any video) on a weights folder that is not there."""
    if dino is not None:
        _folder(dino, "DINOv2", "--dino")
    if clip is not None:
        _folder(clip, "CLIP", "--clip")
    if dlib is not None:
        check_dlib(dlib)


class DlibFaces:
    """dlib's 128-d face descriptors: human identity across shots, from a folder holding
    :data:`DLIB_FILES` (as shipped in ``face-recognition-models``).

    Faces are grouped online into identities (nearest mean within :data:`DLIB_SAME_PERSON`);
    each identity's descriptor at its first appearance is compared with every later shot.
    """

    key = "faces_dlib"

    def __init__(self, path: str | Path, fps: float, plan: ShotPlan | None, *, sample_fps: float = SAMPLE_FPS, **_: Any) -> None:
        folder = check_dlib(path)
        import dlib  # type: ignore[import-not-found]

        self.detector = dlib.get_frontal_face_detector()
        self.shape = dlib.shape_predictor(str(folder / DLIB_FILES[1]))
        self.encoder = dlib.face_recognition_model_v1(str(folder / DLIB_FILES[0]))
        self.fps, self.plan = float(fps), plan
        self.stride = max(1, round(self.fps / sample_fps))
        self.ids: list[dict[str, Any]] = []  # {"first": desc, "sum": desc, "n": int, "seen": [(t, dist_to_first)]}

    def update(self, start: int, frames: np.ndarray, shot_starts: set[int]) -> None:
        for k in range(frames.shape[0]):
            if (start + k) % self.stride:
                continue
            img = np.ascontiguousarray(frames[k])
            for rect in self.detector(img, 1):
                d = np.asarray(self.encoder.compute_face_descriptor(img, self.shape(img, rect)), np.float64)
                self._assign(start + k, d)

    def _assign(self, t: int, d: np.ndarray) -> None:
        best, dist = None, np.inf
        for ident in self.ids:
            x = float(np.linalg.norm(ident["sum"] / ident["n"] - d))
            if x < dist:
                best, dist = ident, x
        if best is None or dist > DLIB_SAME_PERSON:
            best = {"first": d, "sum": np.zeros_like(d), "n": 0, "seen": []}
            self.ids.append(best)
        best["sum"] += d
        best["n"] += 1
        best["seen"].append((t, float(np.linalg.norm(best["first"] - d))))

    def summary(self, num_frames: int) -> dict[str, Any]:
        rows = []
        for i, ident in enumerate(self.ids):
            t = np.asarray([s[0] for s in ident["seen"]])
            dist = np.asarray([s[1] for s in ident["seen"]])
            row: dict[str, Any] = {"identity": i, "samples": len(t), "first_s": float(t[0] / self.fps), "mean_distance": float(dist.mean()),
                                   "max_distance": float(dist.max())}
            if self.plan is not None:
                row["shots"] = [float(dist[(t >= s.start) & (t < s.end)].mean()) if ((t >= s.start) & (t < s.end)).any() else None for s in self.plan.shots]
            rows.append(row)
        return {"identities": rows, "same_person_distance": DLIB_SAME_PERSON}
