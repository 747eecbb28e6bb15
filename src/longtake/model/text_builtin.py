"""The built-in text encoder: a word-level tokenizer and a small transformer encoder.

Trained jointly with the built-in DiT (so it only has to separate the phrases StoryWorld
scripts use). Pre-norm transformer blocks (Vaswani et al. 2017, pre-LN as in GPT-2) with
learned positions over at most ``max_tokens`` tokens. Like Wan's use of UMT5, the output is
always ``max_tokens`` long and zero past the prompt's last token.

Saved as a folder: ``text_encoder.safetensors`` (weights, config in the metadata) and
``vocab.json`` (the tokenizer's word list).
"""

from __future__ import annotations

import dataclasses
import json
import logging
import math
from dataclasses import dataclass
from pathlib import Path

import torch
import torch.nn.functional as nnf
from einops import rearrange
from torch import nn

from longtake.model.loading import config_from_dict
from longtake.model.text_encoder import TextEncoderError
from longtake.model.tokenizer import Tokenizer

log = logging.getLogger(__name__)

WEIGHTS_NAME = "text_encoder.safetensors"
VOCAB_NAME = "vocab.json"


@dataclass(frozen=True)
class BuiltinTextConfig:
    """Shape of :class:`BuiltinTextEncoder`. ``vocab_size`` must equal the tokenizer's."""

    vocab_size: int = 4096
    dim: int = 256
    num_layers: int = 3
    num_heads: int = 4
    ffn_mult: int = 4
    max_tokens: int = 96
    dropout: float = 0.0
    eps: float = 1e-5

    def __post_init__(self) -> None:
        problems = []
        if self.dim % self.num_heads:
            problems.append(f"dim={self.dim} must divide by num_heads={self.num_heads}")
        if self.vocab_size < 2 or self.max_tokens < 1 or self.num_layers < 0:
            problems.append("vocab_size >= 2, max_tokens >= 1 and num_layers >= 0 are required")
        if problems:
            raise TextEncoderError("invalid BuiltinTextConfig: " + "; ".join(problems))

    @classmethod
    def from_dict(cls, data: dict) -> "BuiltinTextConfig":
        return config_from_dict(cls, data, TextEncoderError)


TEXT_PRESETS: dict[str, BuiltinTextConfig] = {"builtin": BuiltinTextConfig()}


class _Block(nn.Module):
    """Pre-norm transformer encoder block with key-padding-masked self-attention."""

    def __init__(self, cfg: BuiltinTextConfig) -> None:
        super().__init__()
        self.heads = cfg.num_heads
        self.dropout = cfg.dropout
        self.norm1 = nn.LayerNorm(cfg.dim, eps=cfg.eps)
        self.qkv = nn.Linear(cfg.dim, 3 * cfg.dim)
        self.proj = nn.Linear(cfg.dim, cfg.dim)
        self.norm2 = nn.LayerNorm(cfg.dim, eps=cfg.eps)
        self.ff1 = nn.Linear(cfg.dim, cfg.ffn_mult * cfg.dim)
        self.ff2 = nn.Linear(cfg.ffn_mult * cfg.dim, cfg.dim)

    def forward(self, x: torch.Tensor, keep: torch.Tensor) -> torch.Tensor:
        """x (B, T, D), keep (B, 1, 1, T) bool -> (B, T, D)."""
        q, k, v = rearrange(self.qkv(self.norm1(x)), "b t (three h d) -> three b h t d", three=3, h=self.heads)
        drop = self.dropout if self.training else 0.0
        a = nnf.scaled_dot_product_attention(q, k, v, attn_mask=keep, dropout_p=drop)  # (B, Nh, T, Dh)
        x = x + self.proj(rearrange(a, "b h t d -> b t (h d)"))  # (B, T, D)
        h = self.ff2(nnf.gelu(self.ff1(self.norm2(x))))
        return x + nnf.dropout(h, p=drop)


class BuiltinTextEncoder(nn.Module):
    """:class:`~longtake.model.text_encoder.TextEncoder` with its own tokenizer."""

    def __init__(self, config: BuiltinTextConfig, tokenizer: Tokenizer) -> None:
        super().__init__()
        if len(tokenizer) != config.vocab_size:
            raise TextEncoderError(
                f"tokenizer has {len(tokenizer)} words but the config says vocab_size={config.vocab_size}; "
                "build the config with dataclasses.replace(cfg, vocab_size=len(tokenizer))"
            )
        self.config = config
        self.tokenizer = tokenizer
        self.tok_emb = nn.Embedding(config.vocab_size, config.dim)
        self.pos_emb = nn.Parameter(torch.zeros(config.max_tokens, config.dim))
        self.blocks = nn.ModuleList(_Block(config) for _ in range(config.num_layers))
        self.norm_out = nn.LayerNorm(config.dim, eps=config.eps)
        self.reset_parameters()

    def reset_parameters(self) -> None:
        nn.init.normal_(self.tok_emb.weight, std=0.02)
        nn.init.normal_(self.pos_emb, std=0.02)
        for block in self.blocks:
            for lin in (block.qkv, block.ff1):
                nn.init.normal_(lin.weight, std=0.02)
                nn.init.zeros_(lin.bias)
            for lin in (block.proj, block.ff2):  # scaled residual init (GPT-2)
                nn.init.normal_(lin.weight, std=0.02 / math.sqrt(2 * max(1, len(self.blocks))))
                nn.init.zeros_(lin.bias)

    # ------------------------------------------------------------------ TextEncoder
    @property
    def dim(self) -> int:
        return self.config.dim

    @property
    def max_tokens(self) -> int:
        return self.config.max_tokens

    def cache_key(self, prompt: str) -> str:
        """Prompts with the same (truncated, unk-mapped) tokens encode identically."""
        return " ".join(self.tokenizer.tokens(prompt)[: self.max_tokens])

    def encode(self, prompts: list[str]) -> tuple[torch.Tensor, torch.Tensor]:
        """prompts (B) -> embeddings (B, T, D) (zero on padding), mask (B, T) bool."""
        if not prompts:
            raise TextEncoderError("encode() needs at least one prompt")
        ids, mask = self.tokenizer(prompts, self.max_tokens)  # (B, T), (B, T)
        device = self.pos_emb.device
        ids, mask = ids.to(device), mask.to(device)
        return self(ids, mask), mask

    def forward(self, ids: torch.Tensor, mask: torch.Tensor) -> torch.Tensor:
        """ids (B, T) long, mask (B, T) bool -> (B, T, D), zero where mask is False."""
        t = ids.shape[1]
        if t > self.max_tokens:
            raise TextEncoderError(f"{t} tokens exceed max_tokens={self.max_tokens}")
        x = self.tok_emb(ids) + self.pos_emb[:t]  # (B, T, D)
        # An empty prompt has no key to attend to; let it attend to position 0 (a pad) so
        # softmax stays finite. Its output is zeroed below anyway.
        keep = mask.clone()
        keep[:, 0] |= ~mask.any(dim=1)
        keep = rearrange(keep, "b t -> b 1 1 t")  # (B, 1, 1, T)
        for block in self.blocks:
            x = block(x, keep)
        x = self.norm_out(x)
        return x * mask.unsqueeze(-1).to(x.dtype)  # (B, T, D)

    # ------------------------------------------------------------------ weights
    def save_pretrained(self, folder: str | Path) -> None:
        """Write ``text_encoder.safetensors`` (config in metadata) and ``vocab.json``."""
        from safetensors.torch import save_file

        out = Path(folder)
        out.mkdir(parents=True, exist_ok=True)
        tensors = {k: v.detach().contiguous().cpu() for k, v in self.state_dict().items()}
        meta = {"longtake_config": json.dumps(dataclasses.asdict(self.config))}
        save_file(tensors, str(out / WEIGHTS_NAME), metadata=meta)
        self.tokenizer.save(out / VOCAB_NAME)

    @classmethod
    def from_pretrained(cls, folder: str | Path, *, device: str | torch.device = "cpu") -> "BuiltinTextEncoder":
        """Load a folder written by :meth:`save_pretrained`."""
        from safetensors import safe_open

        root = Path(folder).expanduser()
        weights = root / WEIGHTS_NAME
        if not weights.is_file():
            raise TextEncoderError(f"built-in text encoder not found: {weights} does not exist")
        tokenizer = Tokenizer.load(root / VOCAB_NAME)
        with safe_open(str(weights), framework="pt", device=str(device)) as fh:
            meta = fh.metadata() or {}
            if "longtake_config" not in meta:
                raise TextEncoderError(f"{weights} has no longtake_config metadata")
            cfg = BuiltinTextConfig.from_dict(json.loads(meta["longtake_config"]))
            state = {k: fh.get_tensor(k) for k in fh.keys()}
        model = cls(cfg, tokenizer)
        missing, unexpected = model.load_state_dict(state, strict=False)
        if missing or unexpected:
            raise TextEncoderError(f"{weights} does not match: missing {missing[:5]}, unexpected {unexpected[:5]}")
        log.info("loaded built-in text encoder from %s (%d words)", root, len(tokenizer))
        return model.to(device).eval()
