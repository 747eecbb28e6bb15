"""Training data: VAE frame windows from StoryWorld shards, latent shards for the DiT.

The DiT learns from *latent shards*: StoryWorld stories planned exactly as a render plans
them (first chunk ``1 + t (F - 1)`` frames, then ``t F``; so shot cuts fall on chunk
boundaries as they do at inference), rendered, and encoded chunk by chunk with the trained
VAE. One shard holds ``stories_per_shard`` stories; each is written to a temporary file
and renamed, so an interrupted run resumes by skipping the shards already there.
"""

from __future__ import annotations

import json
import logging
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch
from einops import rearrange

from longtake.atomic import atomic_output, write_text_atomic
from longtake.plan import plan
from longtake.train.config import TrainConfig, TrainError
from longtake.train.memory_clips import MemoryClips
from longtake.world.renderer import WorldRenderer
from longtake.world.sampler import HELDOUT_SEED_OFFSET, sample_story
from longtake.world.shards import ShardDataset
from longtake.world.vocab import stable_seed

log = logging.getLogger(__name__)

STORIES_PER_LATENT_SHARD = 16
#: key suffix of a story's character maps in a latent shard (shards written before session 6 lack them)
CHARS_SUFFIX = ".chars"
#: key suffix of a story's who maps: per latent pixel the label of the character with the most
#: pixels there, 0 = none (shards written before session 7 lack them); a chunk's ``cast``
#: metadata maps those labels to the captioned attributes
WHO_SUFFIX = ".who"


def to_video(frames: np.ndarray) -> torch.Tensor:
    """(N, H, W, 3) uint8 -> (1, 3, N, H, W) float32 in [-1, 1]."""
    x = torch.from_numpy(np.ascontiguousarray(frames)).float().div_(127.5).sub_(1.0)  # (N, H, W, 3)
    return rearrange(x, "n h w c -> 1 c n h w")


class FrameWindows:
    """All frames of a shard folder in memory (uint8), sampled as random windows for the VAE.
    The shards' label masks (character pixels), where present, are kept beside them."""

    def __init__(self, root: Path) -> None:
        samples = list(ShardDataset(root))
        self.clips = [np.ascontiguousarray(s["frames"]) for s in samples]
        if not self.clips:
            raise TrainError(f"{root}: the shards hold no clips")
        has = ["masks" in s for s in samples]
        self.masks = [np.ascontiguousarray(s["masks"] > 0) for s in samples] if all(has) else None

    def batch(self, rng: np.random.Generator, batch: int, frames: int, crop: int | None = None, *,
              masks: bool = False, char_crops: float = 0.0) -> torch.Tensor | tuple[torch.Tensor, torch.Tensor]:
        """(B, 3, frames, crop, crop) in [-1, 1]: random windows, random square crops (the
        VAE is convolutional; crops cut the cost of a step 4x at 64 of 128 px), a random
        horizontal flip each. ``crop=None`` keeps whole frames.

        ``masks=True`` also returns the character pixels of the same windows, (B, 1, frames,
        crop, crop) float 0/1; ``char_crops`` is the fraction of crops centred (as far as
        the frame allows) on a random character pixel of the window, where it has one."""
        if (masks or char_crops > 0) and self.masks is None:
            raise TrainError("character-weighted VAE training needs shards with label masks; these shards have none")
        out, out_m = [], []
        for _ in range(batch):
            k = int(rng.integers(len(self.clips)))
            clip = self.clips[k]
            start = int(rng.integers(0, max(1, clip.shape[0] - frames + 1)))
            w = clip[start : start + frames]
            m = self.masks[k][start : start + frames] if self.masks is not None else None
            if crop is not None and crop < min(w.shape[1:3]):
                y = int(rng.integers(0, w.shape[1] - crop + 1))
                x = int(rng.integers(0, w.shape[2] - crop + 1))
                if char_crops > 0 and rng.random() < char_crops:
                    ys, xs = np.nonzero(m.any(axis=0))
                    if len(ys):
                        i = int(rng.integers(len(ys)))
                        y = int(np.clip(ys[i] - crop // 2, 0, w.shape[1] - crop))
                        x = int(np.clip(xs[i] - crop // 2, 0, w.shape[2] - crop))
                w = w[:, y : y + crop, x : x + crop]
                m = m[:, y : y + crop, x : x + crop] if m is not None else None
            if w.shape[0] < frames:  # short clip: repeat its last frame
                w = np.concatenate([w, np.repeat(w[-1:], frames - w.shape[0], axis=0)])
                m = np.concatenate([m, np.repeat(m[-1:], frames - m.shape[0], axis=0)]) if m is not None else None
            if rng.random() < 0.5:
                w = w[:, :, ::-1]
                m = m[:, :, ::-1] if m is not None else None
            out.append(to_video(w))
            if masks:
                out_m.append(torch.from_numpy(np.ascontiguousarray(m)).float()[None, None])  # (1, 1, F, h, w)
        video = torch.cat(out)  # (B, 3, frames, H, W)
        return (video, torch.cat(out_m)) if masks else video


def latent_story(config: TrainConfig, j: int):
    """Story ``j`` of the latent dataset (training split; its own seeds, not the VAE's)."""
    rng = np.random.default_rng(stable_seed("longtake-latents", config.seed, j))
    seed_j = int(rng.integers(0, HELDOUT_SEED_OFFSET, dtype=np.int64))
    lo, hi = config.dit_duration
    duration = lo + 0.5 * int(rng.integers(int((hi - lo) / 0.5) + 1))
    return sample_story(seed_j, float(duration), split="train", fps=config.fps, size=(config.size, config.size))


def character_map(labels: np.ndarray, *, temporal: int, spatial: int, first_chunk: bool) -> torch.Tensor:
    """Ground-truth label images of one chunk (N, H, W) -> (F, H/spatial, W/spatial) uint8:
    per latent frame and latent pixel, the fraction of character pixels (0..255), the max
    over the pixel frames the latent frame encodes (the first chunk's first latent frame
    encodes one frame, every other latent frame ``temporal``)."""
    occ = torch.from_numpy(labels > 0).float()  # (N, H, W)
    if first_chunk and temporal > 1:
        occ = torch.cat([occ[:1].repeat(temporal - 1, 1, 1), occ])  # first latent frame: one pixel frame
    n, h, w = occ.shape
    frac = occ.reshape(n // temporal, temporal, h // spatial, spatial, w // spatial, spatial).mean(dim=(3, 5)).amax(dim=1)
    return (frac * 255).round().to(torch.uint8)  # (F, h, w)


def who_map(labels: np.ndarray, *, temporal: int, spatial: int, first_chunk: bool) -> torch.Tensor:
    """Ground-truth label images of one chunk (N, H, W) -> (F, H/spatial, W/spatial) uint8:
    per latent frame and latent pixel, the label of the character with the most pixels in
    the cell the latent pixel encodes (all its pixel frames), 0 where no character is. The
    cells are those of :func:`character_map`."""
    lab = torch.from_numpy(np.ascontiguousarray(labels)).long()  # (N, H, W)
    if first_chunk and temporal > 1:
        lab = torch.cat([lab[:1].repeat(temporal - 1, 1, 1), lab])
    n, h, w = lab.shape
    k = int(lab.max())
    if k == 0:
        return torch.zeros(n // temporal, h // spatial, w // spatial, dtype=torch.uint8)
    onehot = torch.nn.functional.one_hot(lab, k + 1)[..., 1:].float()  # (N, H, W, K): label 0 dropped
    counts = onehot.reshape(n // temporal, temporal, h // spatial, spatial, w // spatial, spatial, k).sum(dim=(1, 3, 5))
    best, idx = counts.max(dim=-1)  # (F, h, w)
    return torch.where(best > 0, idx + 1, 0).to(torch.uint8)


def chunk_cast(truth) -> dict[str, dict[str, str]]:
    """The characters of one frame's truth -> {label: captioned attributes the figure draws}
    (``eval.probe_data.appearance_attributes`` of what the script says), the targets of the
    DiT's attribute readout (``TrainConfig.attr_weight``)."""
    from longtake.eval.probe_data import appearance_attributes

    return {str(c.label): appearance_attributes(c.described) for c in truth.characters}


@torch.no_grad()
def encode_chunk(vae, frames: np.ndarray, *, first: bool, bf16: bool = False) -> torch.Tensor:
    """One planned chunk's frames (N, H, W, 3) uint8 -> latents (1, C, F, h, w) float32, as
    a render's chunk lines up with the causal VAE: the first chunk of a stream as it is;
    a continuation's groups of t frames are encoded independently of what came before
    (per-frame convs, disjoint groups), so any frame is prepended and its latent dropped.
    ``bf16`` runs the encoder under bfloat16 autocast."""
    t = vae.temporal_factor
    video = to_video(frames)  # (1, 3, N, H, W)
    if not first and t > 1:
        video = torch.cat([video[:, :, :1], video], dim=2)
    with torch.autocast("cpu", dtype=torch.bfloat16, enabled=bf16):
        z = vae.encode(video).float()
    return z[:, :, 1:] if not first and t > 1 else z


def encode_story(story, vae, *, latent_frames: int, bf16: bool = False) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor, list[dict]]:
    """Render and encode one story chunk by chunk -> latents (F_total, C, H, W) float16,
    character maps and who maps (F_total, H, W) uint8 (:func:`character_map`,
    :func:`who_map`, from the renderer's exact label images) and per-chunk metadata (prompt,
    entities, location, cut, switch, cast). ``bf16`` runs the encoder under bfloat16
    autocast (the latents are stored in float16 anyway)."""
    t = vae.temporal_factor
    timeline = plan(story, frames_per_chunk=t * latent_frames, first_chunk_frames=1 + t * (latent_frames - 1))
    renderer = WorldRenderer(story)
    lats, chars, whos, meta = [], [], [], []
    for chunk in timeline.chunks:
        frames, truths = renderer.render_chunk(chunk, masks=True)
        labels = np.stack([tr.mask for tr in truths])
        chars.append(character_map(labels, temporal=t, spatial=vae.spatial_factor, first_chunk=chunk.index == 0))
        whos.append(who_map(labels, temporal=t, spatial=vae.spatial_factor, first_chunk=chunk.index == 0))
        z = encode_chunk(vae, frames, first=chunk.index == 0, bf16=bf16)
        if z.shape[2] != latent_frames:
            raise TrainError(f"chunk {chunk.index}: encoded {z.shape[2]} latent frames, expected {latent_frames}")
        lats.append(rearrange(z[0], "c f h w -> f c h w").half())
        if chars[-1].shape != (latent_frames, *z.shape[3:]):
            raise TrainError(f"chunk {chunk.index}: character map {tuple(chars[-1].shape)} does not match latents {tuple(z.shape[2:])}")
        meta.append({"prompt": chunk.prompt, "entities": list(chunk.entities), "location": chunk.location,
                     "cut": chunk.cut, "switch": chunk.switch, "cast": chunk_cast(truths[0]),
                     "names": {str(renderer.labels[cid]): timeline.characters[cid] for cid in chunk.characters}})
    return torch.cat(lats), torch.cat(chars), torch.cat(whos), meta


def _write_latent_shard(path: Path, config: TrainConfig, vae, members: range, latent_frames: int, threads: int | None = None,
                        on_one: Callable[[], None] | None = None) -> int:
    """Render and encode the stories ``members`` into one shard at ``path`` (atomically);
    ``on_one`` is called after each story."""
    from safetensors.torch import save_file

    if threads:
        torch.set_num_threads(threads)
    tensors, metas = {}, {}
    for j in members:
        z, chars, who, meta = encode_story(latent_story(config, j), vae, latent_frames=latent_frames, bf16=config.bf16)
        tensors[f"story{j:06d}"] = z.contiguous()
        tensors[f"story{j:06d}{CHARS_SUFFIX}"] = chars.contiguous()
        tensors[f"story{j:06d}{WHO_SUFFIX}"] = who.contiguous()
        metas[f"story{j:06d}"] = meta
        if on_one:
            on_one()
    with atomic_output(path) as tmp:
        save_file(tensors, str(tmp), metadata={"chunks": json.dumps(metas)})
    return len(members)


def write_latent_shards(root: Path, config: TrainConfig, vae, *, latent_frames: int,
                        on_story: Callable[[int, int], None] | None = None) -> Path:
    """Encode ``config.dit_stories`` stories into ``root``; resumable; returns index.json.

    With ``config.workers`` > 1 that many processes (one torch thread each) write shards
    side by side; a shard's content does not depend on which process writes it. Progress is
    reported per story with one worker, per shard with several."""
    root.mkdir(parents=True, exist_ok=True)
    n = config.dit_stories
    names, todo = [], []
    done = 0
    for i in range(-(-n // STORIES_PER_LATENT_SHARD)):
        path = root / f"latents-{i:05d}.safetensors"
        members = range(i * STORIES_PER_LATENT_SHARD, min(n, (i + 1) * STORIES_PER_LATENT_SHARD))
        names.append(path.name)
        if path.exists():
            done += len(members)
        else:
            todo.append((path, members))
    if on_story:
        on_story(done, n)
    if config.workers > 1 and len(todo) > 1:
        import multiprocessing
        from concurrent.futures import ProcessPoolExecutor, as_completed

        ctx = multiprocessing.get_context("spawn")  # no fork of a process whose OpenMP threads already run
        with ProcessPoolExecutor(min(config.workers, len(todo)), mp_context=ctx) as pool:
            futures = [pool.submit(_write_latent_shard, path, config, vae, members, latent_frames, 1) for path, members in todo]
            for fut in as_completed(futures):
                done += fut.result()
                if on_story:
                    on_story(done, n)
    else:
        def one() -> None:
            nonlocal done
            done += 1
            if on_story:
                on_story(done, n)

        for path, members in todo:
            _write_latent_shard(path, config, vae, members, latent_frames, on_one=one)
    index = root / "index.json"
    write_text_atomic(index, json.dumps({"shards": names, "stories": n, "latent_frames": latent_frames}, indent=1))
    return index


@dataclass
class LatentStory:
    latents: torch.Tensor  # (F_total, C [+ 1 character map] [+ A attribute maps], H, W) float16
    chunks: list[dict]


def attribute_maps(who: torch.Tensor, chunks: list[dict], latent_frames: int) -> torch.Tensor:
    """Who maps (F_total, H, W) uint8 of one story and its chunks' ``cast`` -> (F_total, A, H, W)
    float16: per latent pixel the class index of each captioned attribute
    (``eval.probe_data.ATTRIBUTES`` order) of the character there, -1 where no character is
    or the attribute is not captioned or not drawn."""
    from longtake.eval.probe_data import ATTRIBUTES

    names = list(ATTRIBUTES)
    out = torch.full((who.shape[0], len(names), *who.shape[1:]), -1.0, dtype=torch.float16)
    for c, meta in enumerate(chunks):
        span = slice(c * latent_frames, (c + 1) * latent_frames)
        for label, attrs in meta.get("cast", {}).items():
            at = who[span] == int(label)  # (F, H, W)
            for a, name in enumerate(names):
                if name in attrs:
                    out[span, a][at] = float(ATTRIBUTES[name].index(attrs[name]))
    return out


def slot_map(who: torch.Tensor, chunks: list[dict], latent_frames: int) -> torch.Tensor:
    """Who maps (F_total, H, W) uint8 of one story and its chunks' ``names`` (label -> name)
    -> (F_total, H, W) float16: per latent pixel the layout slot of the character there (1 +
    its place among the characters the chunk's prompt introduces, ``model.layout``), 0 where
    nobody is or the prompt does not introduce the character."""
    from longtake.model.layout import slot_names

    out = torch.zeros(who.shape, dtype=torch.float16)
    for c, meta in enumerate(chunks):
        if "names" not in meta:
            raise TrainError("a layout DiT needs latents whose chunks record the characters' names (written since session 11); "
                             "write the latents again or set dit_changes.layout_channels=0")
        order = slot_names(meta["prompt"])
        span = slice(c * latent_frames, (c + 1) * latent_frames)
        for label, name in meta["names"].items():
            if name in order:
                out[span][who[span] == int(label)] = float(order.index(name) + 1)
    return out


class LatentClips(MemoryClips):
    """All latent stories in memory; samples DiT training clips [sink chunk | consecutive chunks].

    ``with_chars=True`` appends each latent frame's character map (fraction of character
    pixels, 0..1) as one more channel, ``with_attrs=True`` the attribute maps
    (:func:`attribute_maps`, one channel per captioned attribute) and ``with_slots=True`` the
    layout slot map (:func:`slot_map`) last, so every clip, single chunk and memory clip
    carries its maps through the same slicing; :func:`split_slots` then :func:`split_maps`
    take them off again.
    """

    def __init__(self, root: Path, *, latent_frames: int, with_chars: bool = False, with_attrs: bool = False,
                 with_slots: bool = False) -> None:
        from safetensors import safe_open

        index = root / "index.json"
        if not index.is_file():
            raise TrainError(f"{root}: no index.json; the latents stage did not finish")
        self.latent_frames = latent_frames
        self.with_chars = with_chars
        self.with_attrs = with_attrs
        self.with_slots = with_slots
        self.stories: list[LatentStory] = []
        for name in json.loads(index.read_text(encoding="utf-8"))["shards"]:
            with safe_open(str(root / name), framework="pt") as fh:
                metas = json.loads((fh.metadata() or {})["chunks"])
                keys = set(fh.keys())
                for key in sorted(k for k in keys if not k.endswith((CHARS_SUFFIX, WHO_SUFFIX))):
                    lat = fh.get_tensor(key)
                    if with_chars:
                        if key + CHARS_SUFFIX not in keys:
                            raise TrainError(f"{root / name}: {key} has no character maps (latents written before they were); "
                                             "write the latents again or set char_weight=0")
                        chars = fh.get_tensor(key + CHARS_SUFFIX).to(torch.float16).div_(255)  # (F, H, W)
                        lat = torch.cat([lat, chars[:, None]], dim=1)
                    if with_attrs:
                        if key + WHO_SUFFIX not in keys:
                            raise TrainError(f"{root / name}: {key} has no who maps (latents written before session 7); "
                                             "write the latents again or set attr_weight=0")
                        lat = torch.cat([lat, attribute_maps(fh.get_tensor(key + WHO_SUFFIX), metas[key], latent_frames)], dim=1)
                    if with_slots:
                        if key + WHO_SUFFIX not in keys:
                            raise TrainError(f"{root / name}: {key} has no who maps (latents written before session 7); "
                                             "write the latents again or set dit_changes.layout_channels=0")
                        lat = torch.cat([lat, slot_map(fh.get_tensor(key + WHO_SUFFIX), metas[key], latent_frames)[:, None]], dim=1)
                    self.stories.append(LatentStory(lat, metas[key]))
        if not self.stories:
            raise TrainError(f"{root}: no stories")

    def clip(self, rng: np.random.Generator, clip_chunks: int, *, contiguous: float = 0.3) -> tuple[torch.Tensor, list[str]]:
        """One clip: latents (C, clip_chunks * F, H, W) float32 and one prompt per chunk.

        The first chunk is always the story's first chunk (the sink a render keeps); the rest
        are consecutive chunks from anywhere in the story (right after the sink with
        probability ``contiguous``), which is exactly what a chunk attends to at any depth
        of a render with compact RoPE positions.
        """
        f = self.latent_frames
        while True:
            story = self.stories[int(rng.integers(len(self.stories)))]
            k = len(story.chunks)
            if k >= clip_chunks:
                break
        rest = clip_chunks - 1
        j = 1 if rng.random() < contiguous else int(rng.integers(1, k - rest + 1))
        idx = [0, *range(j, j + rest)]
        lat = torch.cat([story.latents[c * f : (c + 1) * f].float() for c in idx])  # (clip_chunks*F, C, H, W)
        return rearrange(lat, "f c h w -> c f h w"), [story.chunks[c]["prompt"] for c in idx]

    def solo(self, rng: np.random.Generator, batch: int) -> tuple[torch.Tensor, list[str]]:
        """(B, C, F, H, W) and B prompts: single chunks from anywhere in any story, the
        examples of a chunk made from its prompt alone (no context). The sink of
        :meth:`clip` is always a story's first chunk, so clips alone hold only one
        text-to-video example per story (120 in the builtin run); every chunk is one."""
        f = self.latent_frames
        out, prompts = [], []
        for _ in range(batch):
            story = self.stories[int(rng.integers(len(self.stories)))]
            c = int(rng.integers(len(story.chunks)))
            out.append(rearrange(story.latents[c * f : (c + 1) * f].float(), "f c h w -> c f h w"))
            prompts.append(story.chunks[c]["prompt"])
        return torch.stack(out), prompts

    def batch(self, rng: np.random.Generator, batch: int, clip_chunks: int) -> tuple[torch.Tensor, list[list[str]]]:
        """(B, C, clip_chunks * F, H, W) and B lists of prompts."""
        clips = [self.clip(rng, clip_chunks) for _ in range(batch)]
        return torch.stack([c[0] for c in clips]), [c[1] for c in clips]

    def prompts(self) -> list[str]:
        return [c["prompt"] for s in self.stories for c in s.chunks]


def layout_prior(clips: "LatentClips", num_slots: int):
    """The :class:`~longtake.model.layout.LayoutPrior` of the clips' slot maps: for prompts
    that introduce n characters, the median box of each slot over every latent frame that
    shows it (the boxes the DiT is trained with, ``boxes_from_slots``)."""
    from longtake.model.layout import boxes_from_slots, estimate_prior, frame_boxes, slot_names

    if not clips.with_slots:
        raise TrainError("a layout prior needs clips with slot maps (LatentClips(with_slots=True))")
    f = clips.latent_frames
    samples: dict[int, list[list]] = {}
    for story in clips.stories:
        slots = story.latents[:, -1].round().long()  # (F_total, H, W)
        boxes, present = frame_boxes(boxes_from_slots(slots[None], num_slots)[0])  # (E, F_total, 4), (E, F_total)
        for c, meta in enumerate(story.chunks):
            n = len(slot_names(meta["prompt"]))
            per = samples.setdefault(n, [[] for _ in range(n)])
            for k in range(min(n, num_slots)):
                span = slice(c * f, (c + 1) * f)
                per[k].extend(tuple(b) for b in boxes[k, span][present[k, span]].tolist())
    return estimate_prior({n: per for n, per in samples.items() if n > 0})


def split_slots(x: torch.Tensor, with_slots: bool) -> tuple[torch.Tensor, torch.Tensor | None]:
    """(B, C', F, H, W) from :class:`LatentClips` -> the rest (B, C'-1, F, H, W) and the slot
    map (B, F, H, W) long (:func:`slot_map`), or (x, None) when the clips carry none."""
    if not with_slots:
        return x, None
    return x[:, :-1], x[:, -1].round().long()


def split_maps(x: torch.Tensor, with_chars: bool, with_attrs: bool = False) -> tuple[torch.Tensor, torch.Tensor | None, torch.Tensor | None]:
    """(B, C [+1] [+A], F, H, W) from :class:`LatentClips` -> latents, the character map
    (B, F, H, W) and the attribute maps (B, A, F, H, W) long, -1 = none (each None when the
    clips carry none)."""
    attrs = None
    if with_attrs:
        from longtake.eval.probe_data import ATTRIBUTES

        x, attrs = x[:, : -len(ATTRIBUTES)], x[:, -len(ATTRIBUTES):].round().long()
    if not with_chars:
        return x, None, attrs
    return x[:, :-1], x[:, -1], attrs
