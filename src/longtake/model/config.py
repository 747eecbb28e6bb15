"""Configuration of the causal video DiT: one frozen dataclass plus a registry of presets.

Field names follow diffusers' ``WanTransformer3DModel`` config where one exists
(``patch_size``, ``in_channels``, ``ffn_dim``, ``text_dim``, ``freq_dim``, ``eps``,
``cross_attn_norm``, ``qk_norm``, ``rope_max_seq_len``); the streaming fields
(``frames_per_chunk``, ``sink_frames``, ``local_window_frames``) follow Self-Forcing and
LongLive (REFERENCES.md). Change a preset with ``dataclasses.replace``.

Frames below are *latent* frames (the patch size in time is 1).
"""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass

from longtake.model.errors import ModelError
from longtake.model.loading import check_fields


@dataclass(frozen=True)
class DiTConfig:
    """Shape and streaming settings of :class:`~longtake.model.dit.CausalWanDiT`.

    Streaming window (LongLive): every query chunk attends to the ``sink_frames`` first
    frames of the video (kept forever) plus the most recent ``local_window_frames`` frames
    *including its own chunk*; LongLive uses sink 3 + 9 recent = 12 frames in all. The
    KV cache therefore keeps ``sink_frames + local_window_frames - frames_per_chunk`` frames.
    ``local_window_frames=None`` means an unbounded window (plain Self-Forcing).
    """

    patch_size: tuple[int, int, int] = (1, 2, 2)
    in_channels: int = 16
    out_channels: int = 16
    num_layers: int = 30
    num_heads: int = 12
    head_dim: int = 128
    ffn_dim: int = 8960
    text_dim: int = 4096
    freq_dim: int = 256
    eps: float = 1e-6
    cross_attn_norm: bool = True
    qk_norm: str = "rms_norm_across_heads"
    rope_max_seq_len: int = 1024
    rope_theta: float = 10000.0
    # Timesteps fed to the sinusoidal embedding are sigma * num_train_timesteps (Wan: 0..1000).
    num_train_timesteps: int = 1000
    frames_per_chunk: int = 3
    sink_frames: int | None = None  # None -> frames_per_chunk (the first chunk is the sink)
    local_window_frames: int | None = 9
    # RoPE frame positions of what a chunk attends to. "absolute": the frame's index in the
    # video (Wan2.1 / Self-Forcing; a chunk at minute 10 sees the sink ~2400 positions away,
    # a distance never seen in training). "compact": positions numbered in attention order
    # [sink | memory | window | chunk] = 0, 1, 2, ..., so every chunk of a long render sees
    # the same relative layout as a chunk of a short training clip (longtake's built-in
    # model; it is what makes per-frame quality independent of video length).
    rope_positions: str = "absolute"
    # What the output head predicts. "velocity": v = eps - x0 directly (Wan2.1 and its causal
    # checkpoints). "sample": the head predicts the clean latent x0 and the DiT returns
    # v = (x - x0_hat) / max(sigma, sample_sigma_min), so callers still get a velocity.
    # Predicting x0 is what makes a small model with wide tokens work: a 4x4x16 patch is a
    # 256-dim token in a 256-wide model, and a velocity head must copy that much noise
    # through the network, which it had not learned after 400 steps (renders were noise
    # while x0 denoising error was already low; "Back to Basics: Let Denoising Generative
    # Models Denoise", Li & He 2025, make the same point for high-dimensional patches).
    prediction: str = "velocity"
    sample_sigma_min: float = 0.05
    # Learned absolute position of each token in the frame, (rows, cols) of tokens, added
    # after the patch embedding (parameter ``pos_embed``; not in Wan, None keeps Wan's keys).
    # RoPE only says where tokens are relative to each other; a chunk made from text alone
    # starts from pure noise, where nothing says which token is sky and which is floor.
    abs_pos_tokens: tuple[int, int] | None = None
    # Hidden channels of a per-frame convolutional refine head after the output projection
    # (parameters ``refine.*``; not in Wan, 0 = none, Wan's keys). With ``prediction="sample"``
    # it adds a correction to the unpatchified x0 estimate from that estimate, the noisy input
    # and sigma: 3x3 convolutions over the latent grid, which see across patch borders and
    # the input's detail that a token as wide as the model loses (docs/training.md, session 10).
    # Its last layer starts at zero, so adding it to a trained model changes nothing at first.
    refine_channels: int = 0
    # Entity layout input (model/layout.py; parameters ``layout_proj.*`` and
    # ``layout_embedding.*``, not in Wan, 0 = none): a map of ``layout_channels`` channels, per
    # latent pixel the sum over the characters whose box covers it of their projected name
    # embedding, embedded like the latents and added to the tokens. Tells the DiT where each
    # described character stands, so the description decides the figure's pixels even at high
    # noise (docs/training.md, session 11). ``layout_slots``: the most characters per chunk.
    layout_channels: int = 0
    layout_slots: int = 4
    # Figure painter (model/layout.py ``FigurePainter``; parameters ``paint.*``,
    # ``paint_embedding.*`` and ``refine.paint_in.*``, not in Wan, 0 = none; needs a layout):
    # a per-pixel MLP of ``paint_hidden`` channels that, from a character's name embedding and
    # the pixel's place inside its box, paints the latent the figure has there and how likely
    # the figure covers it. The painted latents and coverage join the layout map (the
    # layout is ``layout_width`` channels) and reach the refine head, so even at sigma 1 the
    # DiT starts from a rough figure in the described colours (docs/training.md, session 12).
    paint_hidden: int = 0
    # Product term of the painter (``paint.basis.*``, ``paint.template.*``; 0 = none): ``paint_rank``
    # learned functions of the place in the box, each weighted by a linear map of the name
    # embedding, added to the MLP's output, so "this colour only at the top rows" is one
    # product instead of a sum the MLP must build (session 13: painter over the true latents
    # 57.6% of the attributes right with 16, 52.1% without, same steps).
    paint_rank: int = 0

    def __post_init__(self) -> None:
        if self.sink_frames is None:
            object.__setattr__(self, "sink_frames", self.frames_per_chunk)
        object.__setattr__(self, "patch_size", tuple(int(p) for p in self.patch_size))
        if self.abs_pos_tokens is not None:  # a list when read from model.json
            object.__setattr__(self, "abs_pos_tokens", tuple(int(n) for n in self.abs_pos_tokens))
        problems = []
        if len(self.patch_size) != 3 or self.patch_size[0] != 1:
            problems.append(f"patch_size must be (1, ph, pw) (one latent frame per token frame), got {self.patch_size}")
        if self.head_dim % 2 or self.head_dim < 6:
            problems.append(f"head_dim must be even and >= 6 for 3D RoPE, got {self.head_dim}")
        if self.rope_positions not in ("absolute", "compact"):
            problems.append(f"rope_positions must be 'absolute' or 'compact', got {self.rope_positions!r}")
        if self.prediction not in ("velocity", "sample"):
            problems.append(f"prediction must be 'velocity' or 'sample', got {self.prediction!r}")
        elif self.prediction == "sample" and self.in_channels != self.out_channels:
            problems.append("prediction='sample' needs out_channels == in_channels (the head predicts x0)")
        if self.refine_channels < 0 or (self.refine_channels and self.prediction != "sample"):
            problems.append(f"refine_channels must be >= 0 and needs prediction='sample', got {self.refine_channels} with {self.prediction!r}")
        if self.layout_channels < 0 or self.layout_slots < 1:
            problems.append(f"layout_channels must be >= 0 and layout_slots >= 1, got {self.layout_channels}, {self.layout_slots}")
        if self.paint_hidden < 0 or (self.paint_hidden and not self.layout_channels):
            problems.append(f"paint_hidden must be >= 0 and needs layout_channels > 0, got {self.paint_hidden} with {self.layout_channels}")
        if self.paint_rank < 0 or (self.paint_rank and not self.paint_hidden):
            problems.append(f"paint_rank must be >= 0 and needs paint_hidden > 0, got {self.paint_rank} with {self.paint_hidden}")
        if self.abs_pos_tokens is not None and (len(self.abs_pos_tokens) != 2 or min(self.abs_pos_tokens) < 1):
            problems.append(f"abs_pos_tokens must be (rows, cols) >= 1, got {self.abs_pos_tokens!r}")
        if not 0.0 < self.sample_sigma_min <= 1.0:
            problems.append(f"sample_sigma_min must be in (0, 1], got {self.sample_sigma_min}")
        if self.qk_norm != "rms_norm_across_heads":
            problems.append(f"qk_norm must be 'rms_norm_across_heads' (the only kind Wan uses), got {self.qk_norm!r}")
        for name in ("in_channels", "out_channels", "num_layers", "num_heads", "ffn_dim", "text_dim", "freq_dim", "frames_per_chunk"):
            if getattr(self, name) <= 0:
                problems.append(f"{name} must be positive, got {getattr(self, name)}")
        if self.sink_frames < 0:
            problems.append(f"sink_frames must be >= 0, got {self.sink_frames}")
        if self.local_window_frames is not None and self.local_window_frames < self.frames_per_chunk:
            problems.append(
                f"local_window_frames ({self.local_window_frames}) must be >= frames_per_chunk ({self.frames_per_chunk}):"
                " the window includes the chunk being generated"
            )
        if problems:
            raise ModelError("invalid DiTConfig: " + "; ".join(problems))

    @property
    def dim(self) -> int:
        """Model width D = num_heads * head_dim."""
        return self.num_heads * self.head_dim

    @property
    def cache_frames(self) -> int | None:
        """Frames the KV cache keeps between chunks (sink + recent), None when unbounded."""
        if self.local_window_frames is None:
            return None
        return self.sink_frames + self.local_window_frames - self.frames_per_chunk

    @property
    def layout_width(self) -> int:
        """Channels of the DiT's ``layout`` input: the layout map, then, with a figure
        painter, the painted latents (``out_channels``) and their coverage (1)."""
        return self.layout_channels + (self.out_channels + 1 if self.paint_hidden else 0)

    def tokens_per_frame(self, height: int, width: int) -> int:
        """Tokens of one latent frame of size (height, width) after patching."""
        _, ph, pw = self.patch_size
        if height % ph or width % pw:
            raise ModelError(f"latent size {height}x{width} is not divisible by the patch size {ph}x{pw}")
        return (height // ph) * (width // pw)

    def replace(self, **changes) -> "DiTConfig":
        """``dataclasses.replace`` with a ModelError for unknown field names."""
        check_fields(type(self), changes, ModelError)
        return dataclasses.replace(self, **changes)


PRESETS: dict[str, DiTConfig] = {
    # Wan2.1-T2V-1.3B (REFERENCES.md); streaming settings of Self-Forcing / LongLive.
    "wan2.1-1.3b": DiTConfig(),
    # The CPU model: 128x128 video at 16 fps -> the built-in 4x spatial, 4x temporal VAE with
    # 16 latent channels -> 32x32 latents -> 4x4 patches -> 8x8 = 64 tokens per latent frame. Sized so one chunk
    # (4 denoising steps + 1 cache write) fits in well under 0.75 s of a 2-core CPU
    # (3 latent frames = 12 video frames at 16 fps); see bench/bench_dit.py.
    "builtin": DiTConfig(
        in_channels=16,
        out_channels=16,
        patch_size=(1, 4, 4),
        prediction="sample",
        abs_pos_tokens=(8, 8),
        num_layers=6,
        num_heads=4,
        head_dim=64,
        ffn_dim=1024,
        text_dim=256,
        rope_max_seq_len=1024,
        frames_per_chunk=3,
        local_window_frames=9,
        rope_positions="compact",
    ),
    # Unit tests: seconds on CPU.
    "tiny": DiTConfig(
        in_channels=4,
        out_channels=4,
        num_layers=2,
        num_heads=2,
        head_dim=16,
        ffn_dim=64,
        text_dim=32,
        rope_max_seq_len=64,
        frames_per_chunk=2,
        local_window_frames=4,
    ),
}


def get_preset(name: str) -> DiTConfig:
    """The preset called ``name``; a ModelError listing the known names otherwise."""
    try:
        return PRESETS[name]
    except KeyError:
        raise ModelError(f"unknown DiT preset {name!r}; known presets: {', '.join(sorted(PRESETS))}") from None
