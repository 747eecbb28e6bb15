"""The causal generator with long-range memory: NAM, NAM+SMA, entity memory, shot sinks, re-cache.

Per chunk (DESIGN.md, "The flow of one render"):

  1. prompt: a new prompt replaces the cached one; at a prompt switch the sink and window
     frames are written again under the new prompt (LongLive's KV re-cache, :meth:`_recache`)
     from their clean latents, which the generator keeps (a few frames);
  2. shot cut (memory modes), or a cut to another place (every mode): the old sink's first
     frame goes to memory (if there is one), tagged with what was on screen, and the cache
     forgets its frames: the cut's first chunk becomes the new sink, and continuity across
     the cut comes from memory;
  3. ``memory.select(chunk, cache)`` installs the memory segment: [sink | memory | window];
     with "nam+sma" each layer and head then attends to its top-k memory frames only;
  4. sample and write the chunk as :class:`CausalGenerator` does; with entity figures, each
     on-screen character's figure of its first appearance is composited into its box first;
  5. ``memory.update(chunk, cache, first_frame)`` records prototypes (NAM: every 3rd chunk,
     evicting by relevance to the current prompt; entity: also first appearances).

Before the first chunk, reference images of the cast (and, with ``casting``, generated frames
for members without images) are encoded into the entity memory; a memory file of an earlier
render (``preload``) is imported first. Everything (memory entries, kept latents, counters)
is in :meth:`state_dict`, as plain data, so a resumed render gives the same frames.
"""

from __future__ import annotations

import hashlib
import itertools
import logging
from collections import OrderedDict
from collections.abc import Iterator, Sequence
from typing import Any

import torch
from torch import Tensor

from longtake.generate.causal import _SAMPLERS, CausalGenerator, GenerateError, _module_dtype, chunk_seed
from longtake.generate.protocol import FrameChunk, GeneratorInfo
from longtake.memory.bank import NarrativeMemory
from longtake.memory.cast import CastMember, image_to_video
from longtake.memory.config import MemoryConfig, MemoryMode
from longtake.memory.entity import EntityMemory
from longtake.memory.entry import KIND_CAST, KIND_REF, entry_from_cache, install
from longtake.memory.figures import crop_figure, paste_figure
from longtake.memory.sma import SparseMemoryActivation
from longtake.model.kv_cache import KVCache
from longtake.model.layout import introduced
from longtake.model.look_reader import LookReader, read_look
from longtake.model.sprites import look_from_data, look_to_data
from longtake.plan.timeline import Chunk, Timeline
from longtake.sample.samplers import sample_few_step

log = logging.getLogger(__name__)

#: Coverage above which a kept figure replaces the sampled latents, for a model without
#: ``paint_composite`` (else that threshold).
FIGURE_THRESHOLD = 0.3
#: Prompt embeddings the prompt relevance keeps (one D-vector each; entity memory holds up to 32 prompts).
_PROMPT_VECTORS = 256
#: Chunk-seed indices of the casting pass (far from any real chunk index).
_CAST_SEED_BASE = 2**40


class MemoryGenerator(CausalGenerator):
    """:class:`CausalGenerator` with a memory mode (docs/memory.md).

    Args (besides CausalGenerator's):
        memory: a mode ("none", "sink", "nam", "nam+sma", "entity") or a full MemoryConfig.
            "sink" computes exactly what CausalGenerator computes.
        cast: the characters and locations with their prompts and reference images
            (entity mode encodes the images before the first chunk).
        preload: an entity memory saved by an earlier render of the same cast
            (:meth:`export_memory`; read and checked by :mod:`longtake.memory_files`).
        preload_id: what identifies ``preload`` in the manifest (e.g. the file's sha256).
        look_reader: reads each character's look off her reference images before the first
            chunk, in every mode (model/look_reader.py); the figure layer keeps it all render.

    Attributes:
        memory: the NarrativeMemory / EntityMemory of the current stream (None without).
        attended_tokens: tokens each head attended to from the cache in the last chunk.
        selected: memory frame ids installed for the last chunk.
        selected_tags: (location, entity ids) of each of those frames, in the same order
            (``longtake bench memory`` scores retrieval with them).
    """

    def __init__(
        self,
        *args: Any,
        memory: MemoryMode | MemoryConfig = "sink",
        cast: Sequence[CastMember] = (),
        preload: dict[str, Any] | None = None,
        preload_id: str | None = None,
        look_reader: LookReader | None = None,
        **kwargs: Any,
    ) -> None:
        super().__init__(*args, **kwargs)
        self.look_reader = look_reader if self._sprite_layer is not None else None
        self.memory_config = memory if isinstance(memory, MemoryConfig) else MemoryConfig(mode=memory)
        cfg = self.memory_config
        if preload is not None and cfg.mode != "entity":
            raise GenerateError(f"a memory file holds an entity memory; it needs memory mode 'entity', not {cfg.mode!r}")
        self.cast = tuple(cast)
        self.preload = preload
        self.preload_id = preload_id
        self.sma = SparseMemoryActivation(cfg.sma_top_k, cfg.sma_per) if cfg.mode == "nam+sma" else None
        self.memory: NarrativeMemory | EntityMemory | None = None
        self._latents: dict[int, Tensor] = {}  # frame -> clean latent (1, C, 1, H, W) of held frames
        self._sink_meta: dict[str, Any] | None = None  # the chunk whose first frame starts the sink
        self._slot_ids: dict[str, str] = {}  # a character's name (as prompts introduce it) -> its id, for figures
        self._prompt_vectors: OrderedDict[str, Tensor] = OrderedDict()  # prompt relevance: prompt -> mean token embedding
        self.attended_tokens = 0
        self.selected: list[int] = []
        self.selected_tags: list[tuple[str, tuple[str, ...]]] = []
        self._timeline: Timeline | None = None

    # ------------------------------------------------------------------ protocol
    def info(self) -> GeneratorInfo:
        info = super().info()
        cfg = self.memory_config
        memory = {**cfg.to_dict(), "from": self.preload_id, "cast_refs": self._cast_digest()}
        shot_cut = "shot_sink" if cfg.use_shot_sink else ("new_sink_at_new_place" if cfg.use_scene_sink else "keep_cache")
        settings = {**info.settings, "memory": memory, "shot_cut": shot_cut}
        return GeneratorInfo(info.name, info.kind, info.version, dict(info.weights), settings)

    def preload_memory(self, state: dict[str, Any], source_id: str | None = None) -> None:
        """Use an entity memory saved by an earlier render (checked by the caller) in the next
        fresh stream: its entries are imported before the first chunk, before reference images
        (which are then encoded only for entities the memory does not cover)."""
        if self.memory_config.mode != "entity":
            raise GenerateError(f"a memory file holds an entity memory; it needs memory mode 'entity', not {self.memory_config.mode!r}")
        self.preload, self.preload_id = state, source_id

    def export_memory(self) -> dict[str, Any] | None:
        """The entity memory of the last stream as plain data (for a memory file), None without;
        with the figure layer, also the characters' looks ("looks": id -> seed)."""
        if not isinstance(self.memory, EntityMemory):
            return None
        return {**self.memory.state_dict(), "looks": self.looks}

    @property
    def looks(self) -> dict[str, Any]:
        """The figure layer's current look of each character (id -> its plain data: a seed,
        or a look read off a reference); empty without a figure layer. ``longtake bench
        memory`` reads it after every chunk to count the returns that got their look back."""
        return {} if self._sprite_layer is None else {e: look_to_data(v) for e, v in self._sprite_layer.looks.items()}

    @property
    def look_tags(self) -> list[tuple[str, tuple[str, ...]]]:
        """(location, entity ids) the figure layer may keep looks for in the last chunk: the
        memory frames it read and every character the memory holds a frame of, in attention
        or not (a look is kept as long as the memory keeps any frame of her: entity memory's
        record of her, or a frame in NAM's bank that its gate or SMA left out this chunk)."""
        if isinstance(self.memory, EntityMemory):
            held = [("", tuple(self.memory.tags))]
        elif isinstance(self.memory, NarrativeMemory):
            held = [(e.location, tuple(e.entities)) for e in self.memory.entries]
        else:
            held = []
        return [*self.selected_tags, *held]

    def _cast_digest(self) -> str | None:
        if not any(m.images for m in self.cast):
            return None
        h = hashlib.sha256()
        for m in self.cast:
            for img in m.images:
                h.update(f"{m.entity}:{img.shape}".encode())
                h.update(img.tobytes())
        return h.hexdigest()

    # ------------------------------------------------------------------ hooks
    def _new_cache(self) -> KVCache:
        cfg = self.dit.config
        if self.memory_config.use_sink:
            cache = self.dit.new_cache()
        else:  # "none": the local window only
            window = None if cfg.local_window_frames is None else cfg.local_window_frames - cfg.frames_per_chunk
            cache = KVCache(cfg.num_layers, sink_frames=0, window_frames=window)
        cache.memory_selector = self.sma
        return cache

    def _build_memory(self) -> NarrativeMemory | EntityMemory | None:
        cfg = self.memory_config
        if cfg.mode in ("nam", "nam+sma"):
            embed = self.prompt_vector if cfg.nam_score == "prompt" else None
            return NarrativeMemory(cfg.capacity, cfg.record_every, score=cfg.nam_score, embed=embed, gate=cfg.use_nam_gate)
        if cfg.mode == "entity":
            gate = cfg.use_entity_gate
            return EntityMemory(cfg.entity_slots, cfg.entity_per_entity, cfg.entity_capacity, cfg.record_every,
                                embed=self.prompt_vector if gate is not None else None, gate=gate, same_place=cfg.entity_place)
        return None

    def _start(self, timeline: Timeline, seed: int, cache: KVCache, latent_hw: tuple[int, int], device: torch.device) -> None:
        self.memory = self._build_memory()
        if self.sma is not None:
            self.sma.queries = {}
        self._latents = {}
        self._sink_meta = None
        names = list(timeline.characters.values())
        self._slot_ids = {name: cid for cid, name in timeline.characters.items() if names.count(name) == 1}
        if isinstance(self.memory, EntityMemory):
            known = set(timeline.characters) | set(timeline.locations)
            if self.preload is not None:
                n = self.memory.import_entries(self.preload, entities=known)
                if self._sprite_layer is not None:  # a look comes back where an imported frame shows its character
                    self._sprite_layer.looks.update({str(e): look_from_data(v) for e, v in (self.preload.get("looks") or {}).items() if e in known})
                log.info("memory: %d entries imported from %s", n, self.preload_id or "a memory file")
            with torch.inference_mode():
                self._encode_cast(timeline, seed, device, known)
        if self.look_reader is not None and self._sprite_layer is not None:  # every mode: a reference is part of the script
            looks = {m.entity: read_look(self.look_reader, m.images, m.entity) for m in self.cast
                     if m.kind == "character" and m.images and m.entity in timeline.characters}
            self._sprite_layer.pin_looks(looks)

    def _restore(self, state: dict[str, Any], cache: KVCache, device: torch.device) -> None:
        saved = state.get("memory")
        if saved is None and self.memory_config.mode == "sink" and not self.memory_config.use_recache:
            return  # a CausalGenerator state: the sink baseline keeps nothing more
        if not isinstance(saved, dict) or saved.get("mode") != self.memory_config.mode:
            got = saved.get("mode") if isinstance(saved, dict) else None
            raise GenerateError(f"cannot resume from this state: it was saved with memory mode {got!r}, not {self.memory_config.mode!r}")
        self.memory = self._build_memory()
        if self.memory is not None:
            self.memory.load_state_dict(_to_device(saved["bank"], device))
        self._latents = {int(f): t.to(device) for f, t in zip(saved["latent_frames"], saved["latents"], strict=True)}
        self._sink_meta = saved["sink"]
        self._slot_ids = {str(k): str(v) for k, v in (saved.get("slot_ids") or {}).items()}
        if self.sma is not None:
            self.sma.load_state_dict(_to_device(saved["sma"], device))

    def _extra_state(self) -> dict[str, Any]:
        frames = sorted(self._latents)
        return {
            "memory": {
                "mode": self.memory_config.mode,
                "bank": None if self.memory is None else self.memory.state_dict(),
                "latent_frames": frames,
                "latents": [self._latents[f] for f in frames],
                "sink": None if self._sink_meta is None else dict(self._sink_meta),
                "sma": None if self.sma is None else self.sma.state_dict(),
                "slot_ids": dict(self._slot_ids),
            }
        }

    def _on_switch(self, chunk: Chunk, cache: KVCache) -> None:
        cfg = self.memory_config
        if not cfg.use_recache or cfg.restarts_at(chunk):
            return  # a new sink forgets the cached frames anyway
        self._recache(cache, chunk.prompt)

    def _before_sample(self, chunk: Chunk, cache: KVCache) -> None:
        cfg = self.memory_config
        if cfg.restarts_at(chunk) and cache.num_frames:
            self._release_sink(cache, chunk.prompt, self._ahead(chunk))
            cache.restart_sink()
            self._latents = {}
        if cache.num_frames == 0 and cfg.use_sink:
            self._sink_meta = {"chunk": chunk.index, "entities": list(chunk.entities), "location": chunk.location, "prompt": chunk.prompt}
        entries = self.memory.select(chunk, cache) if self.memory is not None else []
        if self.sma is not None:
            chosen = self.sma.choose(entries)  # per chunk: fewer frames; per head: all of them
            if len(chosen) < len(entries):
                install(cache, chosen)
                entries = chosen
            self.sma.prepare(entries)
        self.selected = [e.frame for e in entries]
        self.selected_tags = [(e.location, tuple(e.entities)) for e in entries]
        skipped = 0
        if self.sma is not None and self.sma.per == "head" and len(entries) > self.sma.top_k:
            skipped = (len(entries) - self.sma.top_k) * entries[0].tokens
        self.attended_tokens = cache.num_tokens - skipped

    def _after_sample(self, chunk: Chunk, x0: Tensor, layout: Tensor | None) -> Tensor:
        """Entity figures (``MemoryConfig.entity_figures``, memory/figures.py): each on-screen
        character the prompt places in a layout slot gets the figure it had at its first
        appearance composited into its box; a character without one has it kept now."""
        memory = self.memory
        if layout is None or not isinstance(memory, EntityMemory) or not self.memory_config.entity_figures or not self.dit.config.paint_hidden:
            return x0
        text = self.text_encoder
        names = [name for name, _, _ in introduced(chunk.prompt, text.tokenizer.tokens, text.max_tokens)]
        slots = self.dit.config.layout_slots
        boxes = self.layout_prior.masks(len(names), slots, *x0.shape[2:]).to(x0.device)  # (E, F, H, W), as _layout places them
        threshold = self.paint_composite or FIGURE_THRESHOLD
        for k, name in enumerate(names[:slots]):
            entity = self._slot_ids.get(name)
            if entity is None or entity not in chunk.characters:
                continue
            figure = memory.figures.get(entity)
            if figure is not None:
                x0 = paste_figure(x0, figure.to(x0.device), boxes[k], threshold)
            elif (new := crop_figure(x0, layout[:, -1], boxes[k])) is not None:
                memory.keep_figure(entity, new)
        return x0

    def stream(self, timeline: Timeline, **kwargs: Any) -> Iterator[FrameChunk]:
        """As :meth:`CausalGenerator.stream`; NAM also reads the script ahead (:meth:`_ahead`)."""
        self._timeline = timeline
        return super().stream(timeline, **kwargs)

    def _ahead(self, chunk: Chunk) -> list[str]:
        """The prompts of the chunks that begin within ``nam_lookahead`` seconds after ``chunk``
        ends, each once, in order (NAM ranks its frames by them too; none for entity memory)."""
        horizon, timeline = self.memory_config.use_nam_lookahead, self._timeline
        if not isinstance(self.memory, NarrativeMemory) or horizon <= 0 or timeline is None:
            return []
        last = chunk.end_frame + horizon * timeline.fps
        later = itertools.islice(timeline.chunks, chunk.index + 1, None)  # in order: stop at the horizon, not the story's end
        return list(dict.fromkeys(c.prompt for c in itertools.takewhile(lambda c: c.start_frame < last, later)))

    def _after_write(self, chunk: Chunk, cache: KVCache, x0: Tensor) -> None:
        frames = x0.shape[2]
        first = cache.next_frame - frames
        if self.memory_config.use_recache:
            for i in range(frames):
                self._latents[first + i] = x0[:, :, i : i + 1]  # (1, C, 1, H, W)
            held = set(cache.frame_indices)
            self._latents = {f: t for f, t in self._latents.items() if f in held}
        if isinstance(self.memory, NarrativeMemory):
            self.memory.update(chunk, cache, first, self._ahead(chunk))
        elif self.memory is not None:
            self.memory.update(chunk, cache, first)

    # ------------------------------------------------------------------ internals
    def _release_sink(self, cache: KVCache, prompt: str, ahead: Sequence[str] = ()) -> None:
        """At a shot cut: the old sink's first frame goes to memory, tagged with its chunk and
        the prompt it was written under; ``prompt`` is the new chunk's (NAM scores with it)."""
        if self.memory is None or not cache.sink_count or self._sink_meta is None:
            return
        meta = self._sink_meta
        entry = entry_from_cache(
            cache, cache.sink_start, chunk=meta["chunk"], entities=tuple(meta["entities"]), location=meta["location"], prompt=str(meta.get("prompt", ""))
        )
        if isinstance(self.memory, NarrativeMemory):
            self.memory.add(entry, cache.prompt, prompt, ahead)
        else:
            self.memory.add(entry, cache.prompt, prompt)

    def prompt_vector(self, prompt: str) -> Tensor:
        """The mean of the text encoder's token embeddings of ``prompt`` (D,), padding excluded:
        what the prompt relevance of NAM and entity memory compares; recent prompts are kept."""
        key = self.text_encoder.cache_key(prompt)
        vec = self._prompt_vectors.get(key)
        if vec is None:
            with torch.inference_mode():
                out, mask = self.text_encoder.encode([prompt])  # (1, T, D), (1, T)
            tokens = out[0][mask[0]].float().cpu()  # (T', D)
            vec = tokens.mean(dim=0) if len(tokens) else torch.zeros(out.shape[-1])
            self._prompt_vectors[key] = vec
            while len(self._prompt_vectors) > _PROMPT_VECTORS:
                self._prompt_vectors.popitem(last=False)
        self._prompt_vectors.move_to_end(key)
        return vec

    def _recache(self, cache: KVCache, prompt: str) -> None:
        """LongLive's KV re-cache: write the held sink and window frames again under the cache's
        (new) prompt, from their clean latents: sink first, then the window in one block-causal
        pass with the sink as prefix (the memory segment is re-installed before sampling).
        A layout DiT places the new prompt's characters in them too, as in training, where
        every frame carries its own prompt's layout."""
        held = cache.frame_indices
        if not held:
            return
        missing = [f for f in held if f not in self._latents]
        if missing:
            raise GenerateError(f"KV re-cache: the clean latents of frames {missing} were not kept")
        sink, local = held[: cache.sink_count], held[cache.sink_count :]
        den = self._denoiser(self._device())
        cache.clear_memory()
        cache.restart_sink(cache.sink_start)
        device = self._device()
        if sink:
            x = torch.cat([self._latents[f] for f in sink], dim=2)  # (1, C, S, H, W)
            den.write_cache(x, cache, **self._layout(prompt, x.shape[2], tuple(x.shape[3:]), device))
        if local:
            cache.seek(local[0])
            x = torch.cat([self._latents[f] for f in local], dim=2)  # (1, C, W, H, W)
            den.write_cache(x, cache, **self._layout(prompt, x.shape[2], tuple(x.shape[3:]), device))

    def _frame_kv(self, latent: Tensor, prompt: str, device: torch.device) -> list[tuple[Tensor, Tensor]]:
        """Per-layer (K, V) of the first frame of ``latent`` (1, C, F, H, W), written alone at
        sigma 0 under ``prompt`` into a scratch cache (frame 0, nothing before it)."""
        cfg = self.dit.config
        scratch = KVCache(cfg.num_layers, sink_frames=0, window_frames=None)
        scratch.set_prompt(self._prompt_kv(prompt, device))
        layout = self._layout(prompt, latent.shape[2], tuple(latent.shape[3:]), device)
        self._denoiser(self._device()).write_cache(latent.float(), scratch, **layout)
        return [scratch.frame_kv(layer, 0) for layer in range(cfg.num_layers)]

    def _encode_cast(self, timeline: Timeline, seed: int, device: torch.device, known: set[str]) -> None:
        """Reference images -> entity entries (VAE encode of the image as a one-frame video, one
        DiT pass at sigma 0); with ``casting``, one generated frame per member without images."""
        memory = self.memory
        assert isinstance(memory, EntityMemory)
        vae_dtype = _module_dtype(self.vae, torch.float32)
        for i, member in enumerate(self.cast):
            if member.entity not in known or memory.of(member.entity):
                continue  # not in this story, or covered by the memory file
            kind = KIND_REF
            if member.images:
                for img in member.images[: memory.per_entity]:
                    video = image_to_video(img, timeline.height, timeline.width).to(device=device, dtype=vae_dtype)  # (1, 3, 1, Hp, Wp)
                    latent = self.vae.encode(video)  # (1, C, 1, H, W)
                    kv = self._frame_kv(latent, member.prompt, device)
                    memory.add_external(kv, entities=(member.entity,), location=member.location, kind=kind)
            elif self.memory_config.casting:
                latent = self._cast_frame(member.prompt, seed, i, timeline, device)
                kv = self._frame_kv(latent, member.prompt, device)
                memory.add_external(kv, entities=(member.entity,), location=member.location, kind=KIND_CAST)

    def _cast_frame(self, prompt: str, seed: int, index: int, timeline: Timeline, device: torch.device) -> Tensor:
        """Casting pass (MovieDreamer's hierarchical step): one chunk from noise under the
        member's prompt with nothing cached; its first latent frame (1, C, 1, H, W)."""
        cfg = self.dit.config
        s = self.vae.spatial_factor
        shape = (1, cfg.in_channels, self.latent_frames_per_chunk, timeline.height // s, timeline.width // s)  # (B, C, F, H, W)
        gen = torch.Generator(device=device).manual_seed(chunk_seed(seed, _CAST_SEED_BASE + index))
        scratch = KVCache(cfg.num_layers, sink_frames=0, window_frames=None)
        scratch.set_prompt(self._prompt_kv(prompt, device))
        noise = torch.randn(shape, generator=gen, device=device, dtype=torch.float32)
        den, extra = self._denoiser(device), {"cache": scratch, **self._layout(prompt, shape[2], shape[3:], device)}
        if self.sampler == "few_step":
            x0 = sample_few_step(den, noise, self.sigmas, generator=gen, extra=extra)
        else:
            x0 = _SAMPLERS[self.sampler](den, noise, self.sigmas, extra=extra)
        return x0[:, :, :1]


def _to_device(obj: Any, device: torch.device) -> Any:
    if isinstance(obj, Tensor):
        return obj.to(device)
    if isinstance(obj, list):
        return [_to_device(v, device) for v in obj]
    if isinstance(obj, tuple):
        return tuple(_to_device(v, device) for v in obj)
    if isinstance(obj, dict):
        return {k: _to_device(v, device) for k, v in obj.items()}
    return obj
