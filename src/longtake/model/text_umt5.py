"""UMT5-XXL (the Wan2.1 text encoder) read from a local folder.

Follows what diffusers' ``WanPipeline`` does with it (REFERENCES.md: 4096 wide, 512 tokens):
clean the prompt (unescape HTML, collapse whitespace), tokenize padded to ``max_tokens``
with the end-of-sequence token, run ``UMT5EncoderModel`` with the attention mask, then zero
every state past the prompt's length. transformers is an optional dependency (the ``wan``
extra), imported on first use; nothing is downloaded (``local_files_only=True``).
"""

from __future__ import annotations

import html
import logging
import re
from pathlib import Path
from typing import Any

import torch

from longtake.model.loading import require_model_folder
from longtake.model.text_encoder import TextEncoderError

log = logging.getLogger(__name__)

WAN_TEXT_TOKENS = 512


def clean_prompt(text: str) -> str:
    """Unescape HTML entities (twice, as Wan does) and collapse whitespace."""
    return re.sub(r"\s+", " ", html.unescape(html.unescape(text))).strip()


class UMT5TextEncoder:
    """:class:`~longtake.model.text_encoder.TextEncoder` over ``transformers.UMT5EncoderModel``.

    Args:
        model: the encoder (eval mode; its device and dtype set the outputs').
        tokenizer: a Hugging Face tokenizer for it.
        max_tokens: T, the fixed output length (512 for Wan2.1).
    """

    def __init__(self, model: Any, tokenizer: Any, *, max_tokens: int = WAN_TEXT_TOKENS) -> None:
        self.model = model.eval()
        self.tokenizer = tokenizer
        self._max_tokens = int(max_tokens)
        self._dim = int(model.config.d_model)

    @classmethod
    def from_pretrained(
        cls,
        path: str | Path,
        *,
        tokenizer_path: str | Path | None = None,
        dtype: torch.dtype = torch.float32,
        max_tokens: int = WAN_TEXT_TOKENS,
    ) -> "UMT5TextEncoder":
        """Load model and tokenizer from local folders (the tokenizer defaults to ``path``).

        For a diffusers Wan pipeline folder pass ``path=<root>/text_encoder`` and
        ``tokenizer_path=<root>/tokenizer``.
        """
        folder = Path(path).expanduser()
        tok_folder = Path(tokenizer_path).expanduser() if tokenizer_path is not None else folder
        hint = "Pass the local path of the Wan2.1 'text_encoder' (and 'tokenizer') folders"
        require_model_folder(folder, "UMT5 text encoder", hint, TextEncoderError)
        if not tok_folder.is_dir():
            raise TextEncoderError(f"UMT5 tokenizer not found: {tok_folder} is not a folder. {hint}; longtake never downloads weights.")
        try:
            from transformers import AutoTokenizer, UMT5EncoderModel
        except ImportError as err:  # pragma: no cover - depends on the environment
            raise TextEncoderError("the UMT5 text encoder needs transformers: pip install 'longtake[wan]'") from err
        log.info("loading UMT5EncoderModel from %s", folder)
        model = UMT5EncoderModel.from_pretrained(str(folder), dtype=dtype, local_files_only=True)
        try:
            tokenizer = AutoTokenizer.from_pretrained(str(tok_folder), local_files_only=True)
        except (OSError, ValueError) as err:
            raise TextEncoderError(f"cannot load a tokenizer from {tok_folder}: {err}") from err
        return cls(model, tokenizer, max_tokens=max_tokens)

    @property
    def dim(self) -> int:
        return self._dim

    @property
    def max_tokens(self) -> int:
        return self._max_tokens

    def cache_key(self, prompt: str) -> str:
        return clean_prompt(prompt)

    @torch.no_grad()
    def encode(self, prompts: list[str]) -> tuple[torch.Tensor, torch.Tensor]:
        """prompts (B) -> embeddings (B, T, D) zero past each prompt, mask (B, T) bool."""
        if not prompts:
            raise TextEncoderError("encode() needs at least one prompt")
        batch = self.tokenizer(
            [clean_prompt(p) for p in prompts],
            padding="max_length",
            max_length=self._max_tokens,
            truncation=True,
            add_special_tokens=True,
            return_attention_mask=True,
            return_tensors="pt",
        )
        device = next(self.model.parameters()).device
        ids = batch["input_ids"].to(device)  # (B, T)
        mask = batch["attention_mask"].to(device).bool()  # (B, T)
        states = self.model(input_ids=ids, attention_mask=mask.long()).last_hidden_state  # (B, T, D)
        # Zero-pad past each prompt's length, as Wan does before the DiT's cross-attention.
        states = states * mask.unsqueeze(-1).to(states.dtype)
        return states, mask
