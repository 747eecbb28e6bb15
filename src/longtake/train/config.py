"""Training settings: one frozen dataclass and named presets.

``builtin`` is the schedule that makes the shipped weights on a 2-core CPU in about
80 minutes (docs/training.md); ``smoke`` is a seconds-long run on tiny shapes for tests.
Stages run in order and each resumes from its last checkpoint:

  1. ``vae_data``  render StoryWorld training stories into frame shards (world/shards.py)
  2. ``vae``       train the built-in autoencoder on windows of those frames
  3. ``latents``   render more stories, planned exactly as a render plans them (first chunk
                   9 frames, then 12), encode them with the trained VAE, write latent shards
  4. ``forcing``   train the text encoder and the causal DiT by diffusion forcing on
                   [sink chunk | 3 consecutive chunks] clips, a prompt per chunk
  5. ``rollout``   Self-Forcing-style phase: the context chunks are the model's own few-step
                   rollouts (no gradient), the next chunk learns to continue them
  6. ``export``    the EMA weights -> a model folder (model/builtin.py format)
"""

from __future__ import annotations

import dataclasses
import re
from dataclasses import dataclass, field

from longtake.errors import LongtakeError

STAGES = ("vae_data", "vae", "latents", "forcing", "rollout", "export")


class TrainError(LongtakeError):
    """Bad training settings or a run folder that does not fit them."""


@dataclass(frozen=True)
class TrainConfig:
    """Everything that decides a training run (saved as ``train.json`` in the run folder)."""

    seed: int = 0
    size: int = 128
    fps: int = 16
    # model presets (model/config.py, model/vae_builtin.py, model/text_builtin.py)
    dit_preset: str = "builtin"
    dit_changes: dict = field(default_factory=dict)
    vae_preset: str = "builtin"
    vae_changes: dict = field(default_factory=dict)
    # 128 tokens: 7% of the builtin prompts (three characters) ran past 96 and lost their setting
    text_changes: dict = field(default_factory=lambda: {"max_tokens": 128})
    # 1-2. VAE
    vae_stories: int = 32
    vae_duration: tuple[float, float] = (10.0, 30.0)
    vae_steps: int = 2500
    vae_batch: int = 6
    vae_latent_frames: int = 2  # windows of 1 + t*(n-1) pixel frames: a first frame and one group
    vae_crop: int | None = 64
    vae_lr: float = 1e-3
    # Weight of character pixels in the VAE's reconstruction loss (1 = every pixel alike).
    # Characters are ~6% of StoryWorld's pixels, so a plain L1 spends the VAE on backgrounds;
    # the weight needs shards with label masks (write_shards stores them).
    vae_char_weight: float = 1.0
    # Fraction of VAE crops centred on a character pixel (the rest uniform); needs masks too.
    vae_char_crops: float = 0.0
    # 3. latents
    dit_stories: int = 120
    dit_duration: tuple[float, float] = (12.0, 30.0)
    # 4. diffusion forcing
    clip_chunks: int = 4  # sink chunk + 3 consecutive chunks = sink + local window
    forcing_steps: int = 1500
    forcing_batch: int = 4
    # single chunks from anywhere, made from their prompt alone (no context): the text-to-
    # video examples. Clips start with the story's first chunk, so without these the model
    # sees one text-only example per story and learns to ignore the text (session 3).
    solo_batch: int = 16
    # memory in the loop (issue 5): clips [shot sink | memory frames | clip_chunks-1 chunks]
    # whose memory frames come from earlier shots and show the same characters and places
    # (LatentClips.memory_clip), as a memory mode renders after a cut. 0 = off.
    memory_batch: int = 0
    memory_frames: int = 3
    # clips [memory frames | a shot's first chunk] (LatentClips.cut_clip): the first chunk after
    # a cut, which a memory mode makes from memory alone (the cut forgets sink and window). 0 = off.
    cut_batch: int = 0
    # probability that a training prompt is replaced by the empty one, so the model also
    # learns the unconditional prediction that classifier-free guidance needs
    text_dropout: float = 0.1
    # loss weight of character pixels: each latent pixel's error counts 1 + char_weight * (its
    # fraction of character pixels, from the renderer's label images), normalised per frame.
    # Characters cover a few percent of a StoryWorld frame; with 0 the session 4 model
    # learnt every place and drew no one. Needs latents with character maps (session 6+).
    char_weight: float = 0.0
    # weight of the attribute readout (dit_stage.AttributeReadout): a training-only head on
    # the middle DiT block names each character's captioned attributes from the block's
    # features pooled over its pixels, so the block must read them from the prompt. Needs latents with who maps
    # (session 7+). 0 = off.
    attr_weight: float = 0.0
    # weight of the cast readout (train.cast_readout.CastReadout): a training-only head on the
    # text encoder names each character's captioned attributes from the encoder's output at
    # the character's name, so one token carries the whole look (session 9); on the prompts
    # of each step's chunks, whose embeddings the DiT reads anyway. 0 = off.
    cast_weight: float = 0.0
    # weight of the figure painter's own loss (a DiT with dit_changes.paint_hidden; model/layout.py
    # FigurePainter): per slot, the squared error of the painted latents on the character's
    # own latent pixels plus the cross-entropy of its coverage on the pixels of its box,
    # against the renderer's exact label images (session 12). Ignored without a painter.
    paint_weight: float = 1.0
    # the painter's learning rate, on the DiT's schedule (scaled by the DiT's rate over ``lr``):
    # a small MLP with a direct target; at the DiT's rates (2.6e-4 falling) it fitted its
    # loss to 0.75 in 400 steps where 3e-3 reached 0.56 in 500 (session 12)
    paint_lr: float = 3e-3
    lr: float = 4e-4
    text_lr: float = 4e-4
    warmup: int = 200
    clean_context: float = 0.5  # probability that a context chunk is clean (sigma 0, no loss)
    sigma_shift: float = 3.0
    ema: float = 0.998
    # 5. rollout (Self-Forcing-style)
    rollout_steps: int = 100
    rollout_batch: int = 4
    rollout_lr: float = 1e-4
    # inference schedule the rollouts (and the shipped model) use: "few_step" (Self-Forcing's
    # x0-and-renoise steps on its shifted timesteps) or "euler" (the flow ODE on evenly
    # spaced, shifted sigmas). Half of the training noise levels are this schedule's.
    sampler: str = "few_step"
    sample_steps: int = 4
    sample_shift: float = 5.0
    # classifier-free guidance written into model.json (the empty prompt as unconditional;
    # text_dropout trains it), on the chunks that start a shot (generate/causal.py)
    guidance_scale: float = 1.0
    guidance_chunks: str = "shot_start"
    # written into model.json: 0 = off, else the coverage above which the figure painter's
    # latents replace the sampled ones (generate/causal.py ``paint_composite``, session 13)
    paint_composite: float = 0.0
    # Mixed precision: bfloat16 autocast for the forward passes (weights, optimiser state and
    # EMA stay float32). On this CPU (AVX512-BF16) it halves a DiT step (2.42 -> 1.21 s) and
    # cuts a VAE step 2.8x (bench numbers in docs/training.md).
    bf16: bool = True
    # Fine-tuning: a built-in model folder (e.g. src/longtake/assets/builtin) to start from
    # instead of random weights. Its VAE becomes the run's (copied to vae/, so no VAE is
    # trained and the latents are encoded as the model encodes), its vocabulary the run's,
    # and its DiT and text encoder the starting weights of the DiT stage (the EMA starts
    # there too); the optimiser starts afresh. The DiT and text settings must be the model's.
    init_from: str | None = None
    # housekeeping
    checkpoint_seconds: float = 120.0
    log_every: int = 10
    threads: int | None = None
    # where the DiT stage runs ("cpu", "cuda", "cuda:1"): every random number is still drawn on
    # the CPU from the (seed, stage, step) generators, so a run may resume on another device
    device: str = "cpu"
    # processes that render and encode the latent shards side by side (one shard each at a time)
    workers: int = 1

    def __post_init__(self) -> None:
        problems = []
        for name in ("vae_stories", "vae_steps", "vae_batch", "dit_stories", "forcing_batch", "rollout_batch", "clip_chunks", "sample_steps"):
            if getattr(self, name) < 1:
                problems.append(f"{name} must be >= 1, got {getattr(self, name)}")
        for name in ("forcing_steps", "rollout_steps"):
            if getattr(self, name) < 0:
                problems.append(f"{name} must be >= 0, got {getattr(self, name)}")
        if self.memory_batch < 0 or self.cut_batch < 0 or self.memory_frames < 1:
            problems.append(f"memory_batch and cut_batch must be >= 0 and memory_frames >= 1, got {self.memory_batch}, {self.cut_batch}, "
                            f"{self.memory_frames}")
        if self.sampler not in ("few_step", "euler"):
            problems.append(f"sampler must be few_step or euler, got {self.sampler!r}")
        if not self.sample_shift > 0 or not self.sigma_shift > 0:
            problems.append(f"sample_shift and sigma_shift must be > 0, got {self.sample_shift}, {self.sigma_shift}")
        if self.lr <= 0 or self.paint_lr <= 0:
            problems.append(f"lr and paint_lr must be > 0, got {self.lr}, {self.paint_lr}")
        if self.char_weight < 0 or self.attr_weight < 0 or self.cast_weight < 0 or self.paint_weight < 0:
            problems.append(f"char_weight, attr_weight, cast_weight and paint_weight must be >= 0, got {self.char_weight}, {self.attr_weight}, "
                            f"{self.cast_weight}, {self.paint_weight}")
        if self.vae_char_weight < 1.0 or not 0.0 <= self.vae_char_crops <= 1.0:
            problems.append(f"vae_char_weight must be >= 1 and vae_char_crops in [0, 1], got {self.vae_char_weight}, {self.vae_char_crops}")
        if self.workers < 1:
            problems.append(f"workers must be >= 1, got {self.workers}")
        if not (self.device == "cpu" or self.device == "cuda" or re.fullmatch(r"cuda:\d+", self.device)):
            problems.append(f"device must be cpu, cuda or cuda:N, got {self.device!r}")
        if self.solo_batch < 0:
            problems.append(f"solo_batch must be >= 0, got {self.solo_batch}")
        from longtake.generate.causal import GUIDANCE_CHUNKS

        if self.guidance_chunks not in GUIDANCE_CHUNKS:
            problems.append(f"guidance_chunks must be one of {GUIDANCE_CHUNKS}, got {self.guidance_chunks!r}")
        if not 0.0 <= self.paint_composite < 1.0:
            problems.append(f"paint_composite must be in [0, 1), got {self.paint_composite}")
        if not 0.0 <= self.text_dropout < 1.0:
            problems.append(f"text_dropout must be in [0, 1), got {self.text_dropout}")
        if not 0.0 <= self.clean_context <= 1.0:
            problems.append(f"clean_context must be in [0, 1], got {self.clean_context}")
        if not 0.0 <= self.ema < 1.0:
            problems.append(f"ema must be in [0, 1), got {self.ema}")
        if self.clip_chunks < 2:
            problems.append("clip_chunks must be >= 2 (a sink chunk and at least one more)")
        if problems:
            raise TrainError("invalid training settings: " + "; ".join(problems))

    def to_dict(self) -> dict:
        d = dataclasses.asdict(self)
        return {k: list(v) if isinstance(v, tuple) else v for k, v in d.items()}

    @classmethod
    def from_dict(cls, data: dict) -> "TrainConfig":
        from longtake.model.loading import config_from_dict

        return config_from_dict(cls, data, TrainError)

    def replace(self, **changes) -> "TrainConfig":
        from longtake.model.loading import check_fields

        check_fields(type(self), changes, TrainError)
        return dataclasses.replace(self, **changes)


TRAIN_PRESETS: dict[str, TrainConfig] = {
    "builtin": TrainConfig(),
    # Seconds on a CPU: 32x32 video, a 2-level VAE, the tiny-width DiT.
    "smoke": TrainConfig(
        size=32,
        dit_preset="builtin",
        dit_changes={"num_layers": 1, "num_heads": 2, "head_dim": 16, "ffn_dim": 64, "text_dim": 32, "in_channels": 4, "out_channels": 4,
                     "abs_pos_tokens": [2, 2], "refine_channels": 4, "layout_channels": 4, "paint_hidden": 8, "paint_rank": 2},
        vae_changes={"latent_channels": 4, "channels": [8, 8, 8], "dec_res_blocks": [1, 0, 0]},
        text_changes={"dim": 32, "num_layers": 1, "num_heads": 2, "max_tokens": 96},
        vae_stories=2, vae_duration=(4.0, 5.0), vae_steps=6, vae_batch=2, vae_crop=None, vae_char_weight=4.0,
        dit_stories=3, dit_duration=(4.0, 6.0), forcing_steps=6, forcing_batch=2, solo_batch=2, warmup=2,
        rollout_steps=2, rollout_batch=2, sample_steps=2, checkpoint_seconds=0.0, log_every=1, char_weight=2.0, attr_weight=0.1, cast_weight=0.1,
    ),
}


def get_train_preset(name: str) -> TrainConfig:
    try:
        return TRAIN_PRESETS[name]
    except KeyError:
        raise TrainError(f"unknown training preset {name!r}; known presets: {', '.join(sorted(TRAIN_PRESETS))}") from None
