"""The learned generator: a causal DiT streamed chunk by chunk over a Timeline (Self-Forcing).

Per chunk (DESIGN.md, "The flow of one render"; Self-Forcing / LongLive in REFERENCES.md):

  1. prompt: encode the chunk's prompt once per distinct text and cache its cross-attention
     K/V on the KV cache (``set_prompt``) when it differs from the current one;
  2. noise: draw the chunk's latent noise from a ``torch.Generator`` seeded from
     ``(seed, chunk index)``; the few-step sampler's re-noising draws from the same
     generator. Per-chunk seeds make a resumed render exact without saving any RNG state;
  3. sample: few-step (or Euler) flow matching; every model call *reads* the KV cache;
  4. write: one pass of the clean chunk at sigma=0 appends its self-attention K/V
     (``Denoiser.write_cache``), which advances the position and evicts past the window;
  5. decode: the streaming VAE decoder turns the chunk's latents into pixel frames, carrying
     its causal context in an explicit state; frames become uint8 RGB.

Shot cuts (``chunk.cut``) keep the cache as it is here (shot sinks, and the new sink at a cut
to another place, belong to :class:`~longtake.generate.memory.MemoryGenerator`). Prompt
switches only swap the cross-attention prompt; LongLive's KV re-cache is left to the hook
:meth:`CausalGenerator._on_switch`. The other hooks (``_new_cache``, ``_start``, ``_before_sample``,
``_after_sample``, ``_after_write``, ``_extra_state``, ``_restore``) let a subclass add memory
(:class:`longtake.generate.memory.MemoryGenerator`) without copying the loop.

Resume: :meth:`CausalGenerator.state_dict` after any chunk holds the next chunk index, the
KV cache (with the prompt K/V), the VAE decoder state and the current prompt text;
``stream(timeline, seed=s, start_chunk=k, state=state)`` continues with identical frames.
"""

from __future__ import annotations

import dataclasses
import logging
from collections import OrderedDict
from collections.abc import Iterator
from typing import Any, Literal

import numpy as np
import torch
from einops import rearrange
from torch import Tensor, nn

from longtake.errors import LongtakeError
from longtake.generate.protocol import FrameChunk, GeneratorInfo
from longtake.generate.sprite_layer import FigureSprites, SpriteLayer
from longtake.model.dit import CausalWanDiT
from longtake.model.kv_cache import KVCache, PromptKV
from longtake.model.layout import LayoutPrior, composite_paint, introduced, name_embeddings
from longtake.model.text_encoder import TextEncoder
from longtake.model.vae import VideoVAE
from longtake.plan.timeline import Chunk, Timeline
from longtake.sample.denoiser import Denoiser
from longtake.sample.samplers import sample_euler, sample_few_step, sample_heun
from longtake.sample.schedules import self_forcing_sigmas

log = logging.getLogger(__name__)

SamplerName = Literal["few_step", "euler", "heun"]
GUIDANCE_CHUNKS = ("all", "shot_start")

_SAMPLERS = {"few_step": sample_few_step, "euler": sample_euler, "heun": sample_heun}
_STATE_VERSION = 2  # 2: the VAE decoder state is plain data (VideoVAE.decoder_state_dict)
# Cross-attention K/V of recent prompts kept for re-use (shot / reverse shot alternate prompts).
# Bounded in bytes, not entries: one prompt is ~1 MB for the built-in model but ~90 MB for Wan
# 1.3B (30 layers x 512 tokens), and a 10-minute story has ~100 distinct prompts, so an entry
# bound let RSS grow by ~60 MB over a built-in render (bench/bench_render.py). The current
# prompt is always kept, whatever its size.
_PROMPT_CACHE_BYTES = 16 * 2**20


def _prompt_bytes(kv: PromptKV) -> int:
    return sum(k.numel() * k.element_size() + v.numel() * v.element_size() for k, v in kv.layers)


class GenerateError(LongtakeError):
    """Bad input to a generator: a timeline whose chunks do not fit the model, a state saved
    by another render, parts (DiT, VAE, text encoder) whose shapes do not fit together."""


def chunk_seed(seed: int, chunk_index: int) -> int:
    """The 63-bit seed of one chunk's noise, derived from the render seed and the chunk index.

    numpy's SeedSequence mixes the pair so neighbouring (seed, chunk) pairs give unrelated
    streams; the result is the same on every machine.
    """
    ss = np.random.SeedSequence([int(seed) % 2**64, int(chunk_index)])
    return int(ss.generate_state(1, dtype=np.uint64)[0]) & (2**63 - 1)


Precision = Literal["auto", "float32", "bfloat16"]


def resolve_autocast(precision: str, device: torch.device | str) -> torch.dtype | None:
    """The autocast dtype for a ``precision`` choice on ``device`` (None = plain float32).

    "auto" picks bfloat16 where the hardware computes it natively (a CUDA GPU with bf16, or
    a CPU whose oneDNN has bf16 kernels: AVX512-BF16 / AMX), where it halves a chunk
    (docs/models.md), and float32 elsewhere, where emulated bf16 would be slower.
    """
    if precision not in ("auto", "float32", "bfloat16"):
        raise GenerateError(f"precision must be auto, float32 or bfloat16, got {precision!r}")
    if precision in ("float32", "bfloat16"):
        return None if precision == "float32" else torch.bfloat16
    kind = torch.device(device).type
    if kind == "cuda":
        return torch.bfloat16 if torch.cuda.is_bf16_supported() else None
    if kind == "cpu":
        return torch.bfloat16 if torch.ops.mkldnn._is_mkldnn_bf16_supported() else None
    return None


def _module_dtype(module: Any, default: torch.dtype) -> torch.dtype:
    if isinstance(module, nn.Module):
        p = next(module.parameters(), None)
        if p is not None:
            return p.dtype
    return default


def to_uint8(video: Tensor) -> np.ndarray:
    """(1, 3, N, H, W) in [-1, 1] -> (N, H, W, 3) uint8 RGB."""
    if video.ndim != 5 or video.shape[0] != 1 or video.shape[1] != 3:
        raise GenerateError(f"decoded video must be (1, 3, N, H, W), got {tuple(video.shape)}")
    x = ((video[0].float().clamp(-1.0, 1.0) + 1.0) * 127.5).round().to(torch.uint8)  # (3, N, H, W)
    return rearrange(x, "c n h w -> n h w c").cpu().numpy()  # (N, H, W, 3)


class CausalGenerator:
    """:class:`~longtake.generate.protocol.Generator` over a causal DiT, a VAE and a text encoder.

    Args:
        dit: the causal DiT (weights already loaded, on the device and dtype to run in).
        vae: streaming video VAE; its latent channels must equal the DiT's input channels.
        text_encoder: prompts -> (B, T, text_dim) embeddings for the DiT.
        sigmas: the noise schedule (1-D, ending at 0); default Self-Forcing's 4 steps.
        sampler: "few_step" (Self-Forcing / DMD inference, re-noises with fresh noise),
            "euler" or "heun" (deterministic ODE samplers).
        guidance_scale: classifier-free guidance; 1.0 = off (distilled checkpoints). Other
            values use the empty prompt as the unconditional one.
        guidance_chunks: which chunks are guided: "all", or "shot_start" (the first chunk
            and the first chunk after every shot cut, the ones that must follow a new prompt
            over what the cache shows; guiding only those costs one extra pass per
            denoising step on about one chunk in six instead of on every chunk).
        dtype: the dtype the DiT runs in; must equal its parameter dtype (cast the model at
            the entry point, not here).
        autocast: run the DiT and the VAE decoder under ``torch.autocast`` with this dtype
            (bfloat16 halves a chunk on CPUs with native bf16; :func:`resolve_autocast`);
            None = plain ``dtype``.
        name: the generator name in the manifest.
        weights: file name -> sha256 of the weights used, for the manifest.
        layout_prior: where characters stand (model/layout.py), required when the DiT has a
            layout input: each chunk places the characters its prompt introduces in the
            prior's boxes, carrying their name embeddings.
        paint_composite: 0 = off; else a coverage threshold in (0, 1): after sampling, the
            figure painter's latents replace the chunk's where its coverage exceeds it
            (:func:`~longtake.model.layout.composite_paint`), before the cache and the decoder
            see the chunk. Needs a DiT with a figure painter.
        sprites: the built-in model's figure layer (:mod:`longtake.generate.sprite_layer`) or
            None; pasted into the decoded frames only; its looks are saved in the state.
            Needs a layout DiT.

    Attributes:
        frames_per_chunk: output frames of every chunk after the first (``t * F``).
        first_chunk_frames: output frames of the first chunk (``1 + t * (F - 1)``; the causal
            VAE's first latent frame stands for one pixel frame).
        latent_frames_per_chunk: F, the DiT's latent frames per chunk.
        cache: the KV cache of the current (or last) stream, None before the first; for
            inspection and for the memory module (read it between chunks only).
    """

    def __init__(
        self,
        dit: CausalWanDiT,
        vae: VideoVAE,
        text_encoder: TextEncoder,
        *,
        sigmas: Tensor | list[float] | None = None,
        sampler: SamplerName = "few_step",
        guidance_scale: float = 1.0,
        guidance_chunks: str = "all",
        dtype: torch.dtype = torch.float32,
        autocast: torch.dtype | None = None,
        name: str = "builtin",
        weights: dict[str, str] | None = None,
        layout_prior: LayoutPrior | None = None,
        paint_composite: float = 0.0,
        sprites: FigureSprites | None = None,
    ) -> None:
        cfg = dit.config
        if paint_composite and not (cfg.paint_hidden and 0.0 < paint_composite < 1.0):
            raise GenerateError(f"paint_composite must be 0 (off) or a coverage threshold in (0, 1) for a DiT with a figure painter, "
                                f"got {paint_composite} (paint_hidden={cfg.paint_hidden})")
        if cfg.layout_channels and layout_prior is None:
            raise GenerateError("this DiT has a layout input (layout_channels) but no layout_prior was given (model.json 'layout_prior')")
        if cfg.layout_channels and not hasattr(text_encoder, "tokenizer"):
            raise GenerateError("a layout DiT needs a text encoder with a word tokenizer (the built-in one) to find the characters' names")
        if sampler not in _SAMPLERS:
            raise GenerateError(f"sampler must be one of {sorted(_SAMPLERS)}, got {sampler!r}")
        if vae.latent_channels != cfg.in_channels or cfg.out_channels != cfg.in_channels:
            raise GenerateError(
                f"the VAE has {vae.latent_channels} latent channels but the DiT takes {cfg.in_channels} "
                f"and predicts {cfg.out_channels}; use a DiT preset that matches the VAE"
            )
        if text_encoder.dim != cfg.text_dim:
            raise GenerateError(f"the text encoder gives {text_encoder.dim}-dim embeddings but the DiT expects text_dim={cfg.text_dim}")
        model_dtype = _module_dtype(dit, dtype)
        if model_dtype != dtype:
            raise GenerateError(f"dtype={dtype} but the DiT's parameters are {model_dtype}; cast the model with .to({dtype}) first")
        if guidance_chunks not in GUIDANCE_CHUNKS:
            raise GenerateError(f"guidance_chunks must be one of {GUIDANCE_CHUNKS}, got {guidance_chunks!r}")
        s = torch.as_tensor(sigmas if sigmas is not None else self_forcing_sigmas(), dtype=torch.float32).flatten()
        if s.numel() < 2 or float(s[-1]) != 0.0:
            raise GenerateError(f"sigmas must hold at least 2 values and end at 0, got {s.tolist()}")
        self.dit = dit
        self.vae = vae
        self.text_encoder = text_encoder
        self.sigmas = s
        self.sampler = sampler
        self.guidance_scale = float(guidance_scale)
        self.guidance_chunks = guidance_chunks
        self.dtype = dtype
        self.autocast = autocast
        self.name = name
        self.weights = dict(weights or {})
        self.layout_prior = layout_prior if cfg.layout_channels else None
        self.paint_composite = float(paint_composite)
        self.sprites = sprites
        self._sprite_layer = SpriteLayer(sprites, text_encoder, cfg, vae.spatial_factor) if sprites is not None else None
        self._names: OrderedDict[str, Tensor] = OrderedDict()  # prompt cache key -> slot name embeddings (1, E, text_dim)
        t = vae.temporal_factor
        self.latent_frames_per_chunk = cfg.frames_per_chunk
        self.frames_per_chunk = t * cfg.frames_per_chunk
        self.first_chunk_frames = vae.frames_for_latents(cfg.frames_per_chunk)
        self._prompts: OrderedDict[str, PromptKV] = OrderedDict()
        self._prompts_bytes = 0
        self._uncond: PromptKV | None = None
        self._state: dict[str, Any] | None = None
        self.cache: KVCache | None = None

    # ------------------------------------------------------------------ protocol
    def info(self) -> GeneratorInfo:
        cfg = self.dit.config
        dit = dataclasses.asdict(cfg)
        dit["patch_size"] = list(cfg.patch_size)
        settings = {
            "sigmas": [round(float(x), 6) for x in self.sigmas],
            "sampler": self.sampler,
            "guidance_scale": self.guidance_scale,
            "guidance_chunks": self.guidance_chunks,
            "paint_composite": self.paint_composite,
            "sprites": None if self.sprites is None else self.sprites.config.to_dict(),
            "dtype": str(self.dtype).removeprefix("torch."),
            "autocast": None if self.autocast is None else str(self.autocast).removeprefix("torch."),
            "dit": dit,
            "vae": {
                "latent_channels": self.vae.latent_channels,
                "spatial_factor": self.vae.spatial_factor,
                "temporal_factor": self.vae.temporal_factor,
            },
            "text": {"dim": self.text_encoder.dim, "max_tokens": self.text_encoder.max_tokens},
            "frames_per_chunk": self.frames_per_chunk,
            "first_chunk_frames": self.first_chunk_frames,
            "shot_cut": "keep_cache",
        }
        if self.layout_prior is not None:
            settings["layout_prior"] = self.layout_prior.to_dict()
        return GeneratorInfo(self.name, "learned", weights=dict(self.weights), settings=settings)

    def state_dict(self) -> dict[str, Any] | None:
        """State after the last yielded chunk (None before any): see the module docstring.

        Keys: ``version``, ``next_chunk``, ``seed``, ``story_hash``, ``prompt`` (current prompt
        text or None), ``cache`` (:meth:`KVCache.state_dict`, prompt K/V included), ``vae``
        (:meth:`VideoVAE.decoder_state_dict` of the decoder state). Only tensors, numbers,
        strings, None, lists and dicts: :func:`longtake.render_state.save_state` writes it
        without pickle. Tensors are shared with the generator but never modified in place by it.
        """
        return self._state

    def stream(self, timeline: Timeline, *, seed: int, start_chunk: int = 0, state: dict[str, Any] | None = None) -> Iterator[FrameChunk]:
        """Yield one FrameChunk per chunk of ``timeline`` from ``start_chunk`` on, in order.

        ``state`` (from :meth:`state_dict`) must be given to resume at ``start_chunk > 0`` and
        must have been saved right before that chunk of a render of the same timeline and seed.
        """
        self._check_timeline(timeline)
        if not 0 <= start_chunk <= len(timeline):
            raise GenerateError(f"start_chunk {start_chunk} is outside the timeline's {len(timeline)} chunks")
        device = self._device()
        cache = self._new_cache()
        vae_state = self.vae.decoder_state()
        prompt: str | None = None
        latent_hw = (timeline.height // self.vae.spatial_factor, timeline.width // self.vae.spatial_factor)
        if self._sprite_layer is not None:
            self._sprite_layer.start(timeline, seed, state)
        if state is not None:
            self._check_state(state, timeline, seed, start_chunk)
            cache.load_state_dict(state["cache"])
            cache.to(device)
            vae_state = self.vae.load_decoder_state(state["vae"])
            prompt = state["prompt"]
            self._restore(state, cache, device)
        elif start_chunk != 0:
            raise GenerateError(f"resuming at chunk {start_chunk} needs the state saved after chunk {start_chunk - 1} (state=...)")
        else:
            self._start(timeline, seed, cache, latent_hw, device)
        self._state = None
        self.cache = cache
        for chunk in timeline.chunks[start_chunk:]:
            frames, vae_state, prompt = self._chunk(chunk, cache, vae_state, prompt, seed, latent_hw, device)
            self._state = {
                "version": _STATE_VERSION,
                "next_chunk": chunk.index + 1,
                "seed": int(seed),
                "story_hash": timeline.story_hash,
                "prompt": prompt,
                "cache": cache.state_dict(),
                "vae": self.vae.decoder_state_dict(vae_state),
                **self._extra_state(),
                **({"sprites": self._sprite_layer.state_dict()} if self._sprite_layer else {}),
            }
            yield FrameChunk(chunk, frames)

    # ------------------------------------------------------------------ hooks
    def _new_cache(self) -> KVCache:
        """The empty KV cache of a stream (the DiT config's sink and window)."""
        return self.dit.new_cache()

    def _start(self, timeline: Timeline, seed: int, cache: KVCache, latent_hw: tuple[int, int], device: torch.device) -> None:
        """Called once before the first chunk of a fresh (not resumed) stream."""

    def _restore(self, state: dict[str, Any], cache: KVCache, device: torch.device) -> None:
        """Called when a stream resumes, after the cache was restored from ``state``."""

    def _before_sample(self, chunk: Chunk, cache: KVCache) -> None:
        """Called after the chunk's prompt is set (and ``_on_switch``), before sampling."""

    def _after_sample(self, chunk: Chunk, x0: Tensor, layout: Tensor | None) -> Tensor:
        """The clean chunk x0 (1, C, F, H, W) as sampled (and composited), with the chunk's
        layout map (None without a layout DiT) -> the chunk the cache and the decoder get."""
        return x0

    def _after_write(self, chunk: Chunk, cache: KVCache, x0: Tensor) -> None:
        """Called after the clean chunk ``x0`` (1, C, F, H, W) wrote its K/V into ``cache``."""

    def _extra_state(self) -> dict[str, Any]:
        """More plain-data state saved after every chunk (merged into :meth:`state_dict`)."""
        return {}

    def _on_switch(self, chunk: Chunk, cache: KVCache) -> None:
        """Called after the cache's prompt changed to ``chunk.prompt`` at a prompt switch.

        Does nothing here: the cached frames keep the K/V computed under the old prompt.
        LongLive re-computes the cached frames' K/V under the new prompt (KV re-cache) so the
        switch takes effect at once; that belongs to the memory module, which overrides this.
        """

    # ------------------------------------------------------------------ internals
    def _device(self) -> torch.device:
        p = next(self.dit.parameters(), None)
        return p.device if p is not None else torch.device("cpu")

    def _check_timeline(self, timeline: Timeline) -> None:
        want = (self.first_chunk_frames, self.frames_per_chunk)
        if (timeline.first_chunk_frames, timeline.frames_per_chunk) != want:
            raise GenerateError(
                f"timeline '{timeline.title}' was planned with {timeline.first_chunk_frames} frames in the first chunk "
                f"and {timeline.frames_per_chunk} in the others, but generator '{self.name}' makes {want[0]} and {want[1]} "
                f"({self.latent_frames_per_chunk} latent frames x temporal factor {self.vae.temporal_factor}); "
                f"plan with frames_per_chunk={want[1]}, first_chunk_frames={want[0]}"
            )
        for c in timeline.chunks:
            expected = want[0] if c.index == 0 else want[1]
            if c.num_frames != expected:
                raise GenerateError(f"timeline chunk {c.index} has {c.num_frames} frames; generator '{self.name}' makes {expected}")
        _, ph, pw = self.dit.config.patch_size
        s = self.vae.spatial_factor
        if timeline.height % (s * ph) or timeline.width % (s * pw):
            raise GenerateError(
                f"video size {timeline.width}x{timeline.height} must be a multiple of {s * pw}x{s * ph} "
                f"(VAE spatial factor {s} x DiT patch {pw}x{ph})"
            )
        grid = self.dit.config.abs_pos_tokens
        if grid is not None and (timeline.height // (s * ph), timeline.width // (s * pw)) != tuple(grid):
            raise GenerateError(
                f"video size {timeline.width}x{timeline.height}: generator '{self.name}' draws {grid[1] * s * pw}x{grid[0] * s * ph} "
                f"frames only (its DiT has learned positions for {grid[1]}x{grid[0]} tokens); set the script's size to "
                f"{{width: {grid[1] * s * pw}, height: {grid[0] * s * ph}}}"
            )

    def _check_state(self, state: dict[str, Any], timeline: Timeline, seed: int, start_chunk: int) -> None:
        if not isinstance(state, dict) or state.get("version") != _STATE_VERSION:
            raise GenerateError(f"resume state is not a CausalGenerator state of version {_STATE_VERSION}")
        problems = []
        if state["next_chunk"] != start_chunk:
            problems.append(f"it was saved before chunk {state['next_chunk']}, not {start_chunk}")
        if state["seed"] != int(seed):
            problems.append(f"it was saved with seed {state['seed']}, not {seed}")
        if state["story_hash"] != timeline.story_hash:
            problems.append("it was saved while rendering another story")
        if problems:
            raise GenerateError("cannot resume from this state: " + "; ".join(problems))

    def _prompt_kv(self, text: str, device: torch.device) -> PromptKV:
        """Cross-attention K/V of one prompt, computed once per distinct (normalised) text."""
        key = self.text_encoder.cache_key(text)
        kv = self._prompts.get(key)
        if kv is None:
            emb, _ = self.text_encoder.encode([text])  # (1, T, text_dim); padding is zero
            self._keep_names(key, text, emb, device)
            kv = self.dit.encode_prompt(emb.to(device))
            self._prompts[key] = kv
            self._prompts_bytes += _prompt_bytes(kv)
        self._prompts.move_to_end(key)
        while len(self._prompts) > 1 and self._prompts_bytes > _PROMPT_CACHE_BYTES:
            _, old = self._prompts.popitem(last=False)
            self._prompts_bytes -= _prompt_bytes(old)
        return kv

    def _layout(self, prompt: str, frames: int, latent_hw: tuple[int, int], device: torch.device) -> dict[str, Tensor]:
        """The DiT's ``layout`` argument for a chunk of ``frames`` latent frames under
        ``prompt`` ({} for a DiT without a layout input): the characters the prompt
        introduces, in the prior's boxes, each carrying its name embedding."""
        if self.layout_prior is None:
            return {}
        key = self.text_encoder.cache_key(prompt)
        if key not in self._names:  # normally filled when the prompt's K/V were computed
            self._keep_names(key, prompt, self.text_encoder.encode([prompt])[0], device)
        n = len(introduced(prompt, self.text_encoder.tokenizer.tokens, self.text_encoder.max_tokens))
        boxes = self.layout_prior.masks(n, self.dit.config.layout_slots, frames, *latent_hw).to(device)[None]  # (1, E, F, H, W)
        return {"layout": self.dit.layout_map(boxes, self._names[key])}

    def _keep_names(self, key: str, prompt: str, emb: Tensor, device: torch.device) -> None:
        """Keep the slot name embeddings (1, E, text_dim) of a prompt's embeddings (1, T, text_dim)
        for its chunks' layouts (a layout DiT only; the last 64 prompts)."""
        if self.layout_prior is None:
            return
        tokens, limit = self.text_encoder.tokenizer.tokens, self.text_encoder.max_tokens
        self._names[key] = name_embeddings(emb, [prompt], tokens, limit, self.dit.config.layout_slots).to(device)
        while len(self._names) > 64:
            self._names.popitem(last=False)

    def _denoiser(self, device: torch.device, chunk: Chunk | None = None) -> Denoiser:
        guided = self.guidance_chunks == "all" or chunk is None or chunk.index == 0 or chunk.cut
        if self.guidance_scale == 1.0 or not guided:
            return Denoiser(self.dit, dtype=self.dtype, autocast=self.autocast)
        if self._uncond is None:
            self._uncond = self._prompt_kv("", device)
        return Denoiser(self.dit, guidance_scale=self.guidance_scale, uncond_text=self._uncond, dtype=self.dtype, autocast=self.autocast)

    @torch.inference_mode()
    def _chunk(
        self,
        chunk: Chunk,
        cache: KVCache,
        vae_state: Any,
        prompt: str | None,
        seed: int,
        latent_hw: tuple[int, int],
        device: torch.device,
    ) -> tuple[np.ndarray, Any, str]:
        """Generate, cache and decode one chunk -> frames (N, H, W, 3) uint8, VAE state, prompt."""
        if chunk.prompt != prompt or cache.prompt is None:
            cache.set_prompt(self._prompt_kv(chunk.prompt, device))
            if prompt is not None:
                self._on_switch(chunk, cache)
            prompt = chunk.prompt
        if chunk.cut:
            log.debug("chunk %d: shot cut (%d frames cached)", chunk.index, cache.num_frames)
        self._before_sample(chunk, cache)
        attended = cache.frame_indices  # the frames this chunk reads (the figure layer keeps the looks they show)
        gen = torch.Generator(device=device).manual_seed(chunk_seed(seed, chunk.index))
        cfg = self.dit.config
        shape = (1, cfg.in_channels, self.latent_frames_per_chunk, *latent_hw)  # (B, C, F, H, W)
        noise = torch.randn(shape, generator=gen, device=device, dtype=torch.float32)
        den = self._denoiser(device, chunk)
        layout = self._layout(chunk.prompt, self.latent_frames_per_chunk, latent_hw, device)
        extra = {"cache": cache, **layout}
        if self.sampler == "few_step":
            x0 = sample_few_step(den, noise, self.sigmas, generator=gen, extra=extra)
        else:
            x0 = _SAMPLERS[self.sampler](den, noise, self.sigmas, extra=extra)
        if self.paint_composite and layout:
            x0 = composite_paint(x0, layout["layout"], self.paint_composite)
        x0 = self._after_sample(chunk, x0, layout.get("layout"))
        den.write_cache(x0, cache, **layout)
        self._after_write(chunk, cache, x0)
        latent = x0.to(_module_dtype(self.vae, torch.float32))
        # One latent frame per decode call (streaming decode is exact at any split): a third of the
        # working set, and faster on the CPU (built-in VAE, 128x128: 136-139 vs 163-168 ms per chunk).
        parts = []
        for i in range(latent.shape[2]):
            with torch.autocast(device.type, dtype=self.autocast or torch.bfloat16, enabled=self.autocast is not None):
                part, vae_state = self.vae.decode_chunk(latent[:, :, i : i + 1], vae_state)  # (1, 3, n, Hp, Wp)
            parts.append(to_uint8(part))
        frames = np.concatenate(parts)  # (N, Hp, Wp, 3)
        if frames.shape[0] != chunk.num_frames:
            raise GenerateError(f"chunk {chunk.index}: the VAE decoded {frames.shape[0]} frames, the timeline wants {chunk.num_frames}")
        if self._sprite_layer is not None:  # memory modes name what their memory holds of whom (look_tags)
            frames = self._sprite_layer(chunk, frames, latent_hw, self.layout_prior, attended, cache.frame_indices[-x0.shape[2] :], getattr(self, "look_tags", ()))
        return frames, vae_state, prompt

