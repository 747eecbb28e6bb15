"""StoryWorld training data: deterministic, resumable shards and a streaming loader.

Layout of a dataset folder (webdataset-style tar shards, stdlib ``tarfile`` only)::

    config.json          the settings; a resumed run must match them
    shard-00000.tar      stories [0, S) rendered into clips, S = stories_per_shard
    shard-00001.tar      ...
    index.json           written last: shards (clips, sha256, stories), stories (seed, hash...)

Each clip is a window of ``clip_chunks`` consecutive chunks of one story's timeline (windows
tile the timeline from its start; the last one is aligned to the end, so every frame is in
some clip and all clips have the same shape). A clip is two tar members with the same key
``SSSSSS-CCCC`` (story index, clip index):

* ``<key>.npz`` -- ``frames`` (F, H, W, 3) uint8 RGB, ``masks`` (F, H, W) uint8 labels
  (0 background, k+1 the k-th cast member) and ``boxes`` (F, K, 4) int32
  ``x0, y0, x1, y1`` (exclusive ends) of the K cast members in cast order (-1: not visible);
* ``<key>.json`` -- story (index, sampler seed, split, title, hash), cast and locations,
  ``cast_truth`` (label, resolved appearance, hidden details of everyone in the clip), the
  clip's chunks (expanded prompt, shot prompt, entity ids on screen, location, camera,
  cut/switch marks) and ``truth``: the renderer's frame records (camera, fade, per
  character bbox, visibility, action, phase), one per frame.

Determinism: story ``j`` of a dataset is ``sample_story(seed_j, duration_j, split=split)``
with ``seed_j, duration_j`` drawn from ``stable_seed("storyworld-shards", seed, j)``; tar
members carry fixed metadata and the npz zip entries a fixed date, so the same settings give
the same bytes. Shard ``i`` depends only on the settings and ``i``; each is written to a
temporary file and renamed, so a killed run resumes by skipping the shards already there.
"""

from __future__ import annotations

import dataclasses
import io
import json
import logging
import os
import tarfile
import zipfile
from collections import deque
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from longtake.atomic import atomic_output, write_text_atomic
from longtake.plan import plan
from longtake.plan.timeline import Chunk
from longtake.script.schema import Story
from longtake.video.manifest import sha256_file
from longtake.world.errors import WorldError
from longtake.world.sampler import SPLIT_KEYS, HELDOUT_SEED_OFFSET, sample_story
from longtake.world.vocab import stable_seed

log = logging.getLogger(__name__)

SHARDS_FORMAT = 1
CONFIG_FILE = "config.json"
INDEX_FILE = "index.json"
_ZIP_DATE = (1980, 1, 1, 0, 0, 0)


@dataclass(frozen=True)
class ShardConfig:
    """Everything that decides a dataset's bytes."""

    num_stories: int
    seed: int
    split: str = "train"
    duration_range: tuple[float, float] = (10.0, 60.0)
    width: int = 128
    height: int = 128
    fps: int = 16
    frames_per_chunk: int = 12
    clip_chunks: int = 4
    stories_per_shard: int = 16
    num_characters: tuple[int, int] = (1, 4)

    def __post_init__(self) -> None:
        problems = []
        if self.num_stories < 1:
            problems.append(f"num_stories={self.num_stories}; expected at least 1")
        if self.split not in SPLIT_KEYS:
            problems.append(f"split '{self.split}' unknown; expected one of: {', '.join(SPLIT_KEYS)}")
        lo, hi = self.duration_range
        if not 0 < lo <= hi <= 3600:
            problems.append(f"duration_range {self.duration_range} invalid; expected 0 < low <= high <= 3600 seconds")
        if self.width % 8 or self.height % 8 or min(self.width, self.height) < 16:
            problems.append(f"size {self.width}x{self.height} invalid; expected sides >= 16 and multiples of 8")
        if self.clip_chunks < 1 or self.stories_per_shard < 1 or self.frames_per_chunk < 1:
            problems.append("clip_chunks, stories_per_shard and frames_per_chunk must be at least 1")
        if not 0 <= self.seed < HELDOUT_SEED_OFFSET:
            problems.append(f"seed {self.seed} out of range; expected 0 <= seed < 2**62")
        if problems:
            raise WorldError("\n".join(problems))

    @property
    def num_shards(self) -> int:
        return -(-self.num_stories // self.stories_per_shard)

    def to_dict(self) -> dict[str, Any]:
        d = dataclasses.asdict(self)
        return {k: list(v) if isinstance(v, tuple) else v for k, v in d.items()} | {"format": SHARDS_FORMAT}

    def story_params(self, j: int) -> tuple[int, float]:
        """(sampler seed, duration in seconds) of story ``j``."""
        rng = np.random.default_rng(stable_seed("storyworld-shards", self.seed, j))
        seed_j = int(rng.integers(0, HELDOUT_SEED_OFFSET, dtype=np.int64))
        lo, hi = self.duration_range
        duration = lo + 0.5 * int(rng.integers(int((hi - lo) / 0.5) + 1))
        return seed_j, float(duration)

    def story(self, j: int) -> Story:
        seed_j, duration = self.story_params(j)
        return sample_story(seed_j, duration, split=self.split, num_characters=self.num_characters,  # type: ignore[arg-type]
                            fps=self.fps, size=(self.width, self.height))

    def shard_stories(self, i: int) -> range:
        return range(i * self.stories_per_shard, min(self.num_stories, (i + 1) * self.stories_per_shard))


@dataclass(frozen=True)
class ShardProgress:
    """Emitted after every story (and for every skipped shard)."""

    shard: int
    shards_total: int
    stories_done: int
    stories_total: int
    clips_done: int
    skipped: bool = False


def shard_name(i: int) -> str:
    return f"shard-{i:05d}.tar"


def clip_windows(num_chunks: int, clip_chunks: int) -> list[int]:
    """First chunk of every clip: tiles from 0, the last window aligned to the end."""
    if num_chunks < clip_chunks:
        return []
    starts = list(range(0, num_chunks - clip_chunks + 1, clip_chunks))
    if starts[-1] + clip_chunks < num_chunks:
        starts.append(num_chunks - clip_chunks)
    return starts


# -- truth adapter ---------------------------------------------------------------------------


def frame_record(truth: Any) -> tuple[dict[str, Any], np.ndarray | None]:
    """A :class:`~longtake.world.truth.FrameTruth` as (its JSON frame record, its label mask)."""
    rec = dict(truth.to_record())
    rec.pop("type", None)
    return rec, getattr(truth, "mask", None)


def cast_truth(truth: Any, into: dict[str, dict[str, Any]]) -> None:
    """Record the label, resolved appearance and hidden details of every character in ``truth``."""
    for c in truth.characters:
        if c.id not in into:
            into[c.id] = {"label": c.label, "appearance": dataclasses.asdict(c.appearance),
                          "hidden": dataclasses.asdict(c.hidden), "described": dataclasses.asdict(c.described)}


def _boxes(records: list[dict[str, Any]], cast: list[str]) -> np.ndarray:
    """(F, K, 4) int32 boxes ``x0, y0, x1, y1`` of the cast (-1 where not visible)."""
    out = np.full((len(records), len(cast), 4), -1, dtype=np.int32)
    slot = {cid: k for k, cid in enumerate(cast)}
    for f, rec in enumerate(records):
        for c in rec.get("characters", []):
            if c.get("bbox") is not None and c["id"] in slot:
                out[f, slot[c["id"]]] = c["bbox"]
    return out


# -- writing ---------------------------------------------------------------------------------


def _npz_bytes(arrays: dict[str, np.ndarray]) -> bytes:
    """An .npz (readable by ``np.load``) with fixed zip dates: the same arrays, the same bytes."""
    buf = io.BytesIO()
    with zipfile.ZipFile(buf, "w", compression=zipfile.ZIP_DEFLATED) as zf:
        for name in sorted(arrays):
            info = zipfile.ZipInfo(f"{name}.npy", date_time=_ZIP_DATE)
            info.compress_type = zipfile.ZIP_DEFLATED
            with zf.open(info, "w", force_zip64=True) as fh:
                np.lib.format.write_array(fh, np.ascontiguousarray(arrays[name]), allow_pickle=False)
    return buf.getvalue()


def _add_member(tar: tarfile.TarFile, name: str, data: bytes) -> None:
    info = tarfile.TarInfo(name)
    info.size = len(data)
    info.mtime = 0
    info.mode = 0o644
    info.uid = info.gid = 0
    info.uname = info.gname = ""
    tar.addfile(info, io.BytesIO(data))


def _chunk_meta(story: Story, chunk: Chunk) -> dict[str, Any]:
    shot = story.scenes[chunk.scene].shots[chunk.shot_in_scene]
    return {
        "index": chunk.index, "start_frame": chunk.start_frame, "num_frames": chunk.num_frames,
        "scene": chunk.scene, "shot": chunk.shot, "shot_in_scene": chunk.shot_in_scene,
        "prompt": chunk.prompt, "shot_prompt": shot.prompt, "entities": list(chunk.entities),
        "characters": list(chunk.characters), "location": chunk.location, "camera": chunk.camera,
        "transition": chunk.transition, "cut": chunk.cut, "switch": chunk.switch, "shot_span": list(chunk.shot_span),
    }


def _render(story: Story, config: ShardConfig) -> Iterator[tuple[Chunk, np.ndarray, list[Any]]]:
    from longtake.world.renderer import WorldRenderer

    timeline = plan(story, frames_per_chunk=config.frames_per_chunk)
    renderer = WorldRenderer(story, width=config.width, height=config.height)
    for chunk in timeline.chunks:
        frames, truths = renderer.render_chunk(chunk)
        yield chunk, frames, list(truths)


def story_clips(story: Story, config: ShardConfig, j: int) -> Iterator[tuple[str, bytes, bytes]]:
    """(key, json bytes, npz bytes) of every clip of story ``j``, rendered chunk by chunk.

    Holds at most ``clip_chunks`` chunks of frames in memory.
    """
    num_chunks = len(plan(story, frames_per_chunk=config.frames_per_chunk))
    starts = clip_windows(num_chunks, config.clip_chunks)
    if not starts:
        return
    seed_j, duration = config.story_params(j)
    cast = [c.id for c in story.characters]
    head = {
        "story": {"index": j, "seed": seed_j, "split": config.split, "title": story.title, "story_hash": story.content_hash(),
                  "duration": duration, "story_seed": story.seed, "num_chunks": num_chunks},
        "cast": [{"id": c.id, "name": c.name, "description": c.description} for c in story.characters],
        "locations": [{"id": loc.id, "name": loc.name, "description": loc.description} for loc in story.locations],
    }
    window: deque[tuple[Chunk, np.ndarray, list[Any]]] = deque(maxlen=config.clip_chunks)
    pending = deque(starts)
    for chunk, frames, truths in _render(story, config):
        window.append((chunk, frames, truths))
        while pending and chunk.index == pending[0] + config.clip_chunks - 1:
            clip_index = starts.index(pending.popleft())
            chunks = [c for c, _, _ in window]
            records: list[dict[str, Any]] = []
            masks: list[np.ndarray] = []
            seen: dict[str, dict[str, Any]] = {}
            for _, _, ts in window:
                for t in ts:
                    rec, mask = frame_record(t)
                    records.append(rec)
                    if mask is not None:
                        masks.append(mask)
                    cast_truth(t, seen)
            npz = {"frames": np.concatenate([f for _, f, _ in window]).astype(np.uint8, copy=False), "boxes": _boxes(records, cast)}
            if masks and len(masks) == len(records):
                npz["masks"] = np.stack(masks).astype(np.uint8, copy=False)
            meta = head | {
                "clip": {"index": clip_index, "first_chunk": chunks[0].index, "num_chunks": len(chunks),
                         "start_frame": chunks[0].start_frame, "num_frames": int(npz["frames"].shape[0])},
                "chunks": [_chunk_meta(story, c) for c in chunks],
                "cast_truth": seen,
                "truth": records,
            }
            text = json.dumps(meta, sort_keys=True, separators=(",", ":"), ensure_ascii=False, allow_nan=False)
            yield f"{j:06d}-{clip_index:04d}", text.encode(), _npz_bytes(npz)


def _write_shard(path: Path, config: ShardConfig, i: int, progress: Callable[[int], None]) -> int:
    clips = 0
    with atomic_output(path) as tmp, open(tmp, "wb") as fh:
        with tarfile.open(fileobj=fh, mode="w", format=tarfile.USTAR_FORMAT) as tar:
            for j in config.shard_stories(i):
                for key, meta, npz in story_clips(config.story(j), config, j):
                    _add_member(tar, f"{key}.json", meta)
                    _add_member(tar, f"{key}.npz", npz)
                    clips += 1
                progress(clips)
        fh.flush()
        os.fsync(fh.fileno())
    return clips


def _write_json(path: Path, data: Any) -> None:
    write_text_atomic(path, json.dumps(data, indent=2, sort_keys=True) + "\n")


def write_shards(
    out_dir: str | Path,
    *,
    num_stories: int,
    seed: int,
    split: str = "train",
    duration_range: tuple[float, float] = (10.0, 60.0),
    size: tuple[int, int] = (128, 128),
    fps: int = 16,
    clip_chunks: int = 4,
    stories_per_shard: int = 16,
    frames_per_chunk: int = 12,
    num_characters: tuple[int, int] = (1, 4),
    on_progress: Callable[[ShardProgress], None] | None = None,
) -> Path:
    """Render ``num_stories`` sampled stories into shards under ``out_dir``; returns index.json.

    Shards already present (from an interrupted run with the same settings) are skipped;
    other settings in the same folder are an error rather than a silently mixed dataset.
    """
    config = ShardConfig(num_stories=num_stories, seed=seed, split=split, duration_range=(float(duration_range[0]), float(duration_range[1])),
                         width=size[0], height=size[1], fps=fps, frames_per_chunk=frames_per_chunk, clip_chunks=clip_chunks,
                         stories_per_shard=stories_per_shard, num_characters=(int(num_characters[0]), int(num_characters[1])))
    out = Path(out_dir)
    if out.exists() and not out.is_dir():
        raise WorldError(f"{out}: exists and is not a folder")
    out.mkdir(parents=True, exist_ok=True)
    cfg_path = out / CONFIG_FILE
    if cfg_path.exists():
        try:
            old = json.loads(cfg_path.read_text(encoding="utf-8"))
        except ValueError:
            old = None
        if old != config.to_dict():
            raise WorldError(f"{out}: holds shards written with other settings ({cfg_path}); use a new folder or the same settings")
    else:
        _write_json(cfg_path, config.to_dict())

    stories_done = clips_total = 0
    shards = []
    for i in range(config.num_shards):
        path = out / shard_name(i)
        members = config.shard_stories(i)
        skipped = path.exists()
        if skipped:  # finished by an earlier run (shards appear only complete, by rename)
            with tarfile.open(path, mode="r|") as tar:
                n = sum(1 for m in tar if m.name.endswith(".json"))
            stories_done += len(members)
            if on_progress:
                on_progress(ShardProgress(i, config.num_shards, stories_done, num_stories, clips_total + n, skipped=True))
        else:
            def report(done: int, _i: int = i, _base: int = clips_total) -> None:
                nonlocal stories_done
                stories_done += 1
                if on_progress:
                    on_progress(ShardProgress(_i, config.num_shards, stories_done, num_stories, _base + done))

            n = _write_shard(path, config, i, report)
        clips_total += n
        shards.append({"file": path.name, "clips": n, "stories": [members.start, members.stop], "sha256": sha256_file(path)})
        log.info("%s %s: %d clips", "kept" if skipped else "wrote", path.name, n)

    params = [config.story_params(j) for j in range(num_stories)]
    stories = [{"index": j, "seed": sj, "duration": d, "shard": j // config.stories_per_shard} for j, (sj, d) in enumerate(params)]
    index = {"format": SHARDS_FORMAT, "config": config.to_dict(), "num_clips": clips_total,
             "clip_frames": config.frames_per_chunk * config.clip_chunks, "shards": shards, "stories": stories}
    index_path = out / INDEX_FILE
    _write_json(index_path, index)
    return index_path


# -- reading ---------------------------------------------------------------------------------

try:  # a torch IterableDataset when torch is there (DataLoader worker splitting), else a plain iterable
    from torch.utils.data import IterableDataset as _Base
    from torch.utils.data import get_worker_info as _worker_info
except ImportError:  # pragma: no cover - torch is a dependency, but world/ does not need it
    _Base = object  # type: ignore[assignment,misc]

    def _worker_info() -> Any:  # type: ignore[misc]
        return None


def decode_sample(key: str, meta_bytes: bytes, npz_bytes: bytes) -> dict[str, Any]:
    """One clip as a dict: frames, boxes, masks..., per-chunk prompts and entities, truth."""
    meta = json.loads(meta_bytes)
    with np.load(io.BytesIO(npz_bytes), allow_pickle=False) as z:
        arrays = {k: z[k] for k in z.files}
    return {
        "key": key,
        **arrays,
        "prompts": [c["prompt"] for c in meta["chunks"]],
        "shot_prompts": [c["shot_prompt"] for c in meta["chunks"]],
        "entities": [c["entities"] for c in meta["chunks"]],
        "locations": [c["location"] for c in meta["chunks"]],
        "cast": [c["id"] for c in meta["cast"]],
        "truth": meta["truth"],
        "meta": meta,
    }


def iter_shard(path: str | Path) -> Iterator[dict[str, Any]]:
    """Stream the clips of one shard in file order (one clip in memory at a time)."""
    current: str | None = None
    parts: dict[str, bytes] = {}
    with tarfile.open(path, mode="r|") as tar:
        for member in tar:
            if not member.isfile():
                continue
            key, _, ext = member.name.partition(".")
            if key != current and parts:
                yield decode_sample(current, parts["json"], parts["npz"])  # type: ignore[arg-type]
                parts = {}
            current = key
            fh = tar.extractfile(member)
            parts[ext] = fh.read() if fh else b""
        if parts:
            yield decode_sample(current, parts["json"], parts["npz"])  # type: ignore[arg-type]


class ShardDataset(_Base):  # type: ignore[misc,valid-type]
    """Stream the clips of a shard folder; never holds more than the shuffle buffer.

    Order is a function of ``(seed, epoch)``: with ``shuffle_buffer > 0`` the shard order is
    permuted and clips pass through a buffer of that size (webdataset-style shuffling); with
    0 clips come in index order. Shards are split across ``world_size`` ranks and then across
    DataLoader workers (``shards[k::n]``), so every clip is read once per epoch overall.

    Each sample: ``frames`` (F, H, W, 3) uint8, ``boxes`` (F, K, 4), any truth arrays (masks),
    ``prompts`` / ``entities`` / ``locations`` per chunk, ``cast``, ``truth`` per frame, ``meta``.
    Use a custom ``collate_fn`` to batch the lists.
    """

    def __init__(self, root: str | Path, *, shuffle_buffer: int = 0, seed: int = 0, epoch: int = 0, rank: int = 0, world_size: int = 1):
        self.root = Path(root)
        index_path = self.root / INDEX_FILE
        if not index_path.is_file():
            raise WorldError(f"{self.root}: no {INDEX_FILE}; write the dataset with write_shards (`longtake world shards`) to completion first")
        self.index = json.loads(index_path.read_text(encoding="utf-8"))
        self.shards = [self.root / s["file"] for s in self.index["shards"]]
        missing = [str(p) for p in self.shards if not p.is_file()]
        if missing:
            raise WorldError(f"{self.root}: shards listed in {INDEX_FILE} are missing: {', '.join(missing)}")
        if not 0 <= rank < world_size:
            raise WorldError(f"rank {rank} out of range for world_size {world_size}")
        self.shuffle_buffer = int(shuffle_buffer)
        self.seed = int(seed)
        self.epoch = int(epoch)
        self.rank, self.world_size = rank, world_size

    def __len__(self) -> int:
        """Clips in the whole dataset (all ranks and workers)."""
        return int(self.index["num_clips"])

    def set_epoch(self, epoch: int) -> None:
        self.epoch = int(epoch)

    def _shards_here(self) -> tuple[list[Path], int]:
        shards = list(self.shards)
        if self.shuffle_buffer > 0:
            rng = np.random.default_rng(stable_seed("shard-order", self.seed, self.epoch))
            shards = [shards[k] for k in rng.permutation(len(shards))]
        shards = shards[self.rank :: self.world_size]
        info = _worker_info()
        worker = 0
        if info is not None:
            shards = shards[info.id :: info.num_workers]
            worker = info.id
        return shards, worker

    def __iter__(self) -> Iterator[dict[str, Any]]:
        shards, worker = self._shards_here()
        stream = (sample for path in shards for sample in iter_shard(path))
        if self.shuffle_buffer <= 0:
            yield from stream
            return
        rng = np.random.default_rng(stable_seed("clip-order", self.seed, self.epoch, self.rank, worker))
        buf: list[dict[str, Any]] = []
        for sample in stream:
            if len(buf) < self.shuffle_buffer:
                buf.append(sample)
                continue
            k = int(rng.integers(len(buf)))
            yield buf[k]
            buf[k] = sample
        while buf:
            yield buf.pop(int(rng.integers(len(buf))))
