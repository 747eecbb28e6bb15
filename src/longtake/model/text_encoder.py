"""The text encoder interface and a per-render LRU cache over it.

Every encoder returns a fixed number of tokens, ``max_tokens``, per prompt, zero-padded past
the prompt's end the way Wan2.1 feeds UMT5 states to its DiT, so embeddings of different
prompts stack without re-padding:

    encode(prompts) -> embeddings (B, T, D) float, mask (B, T) bool   with T = max_tokens
"""

from __future__ import annotations

import logging
from collections import OrderedDict
from typing import Protocol, runtime_checkable

import torch

from longtake.model.errors import ModelError

log = logging.getLogger(__name__)


class TextEncoderError(ModelError):
    """Bad input to a text encoder (empty prompt list, missing weights or vocabulary)."""


@runtime_checkable
class TextEncoder(Protocol):
    """Turns prompts into token embeddings for the DiT's cross-attention."""

    @property
    def dim(self) -> int:
        """D, the width of one token embedding."""
        ...

    @property
    def max_tokens(self) -> int:
        """T, the fixed number of tokens per prompt (longer prompts are truncated)."""
        ...

    def cache_key(self, prompt: str) -> str:
        """A key equal for prompts that encode identically (e.g. after normalisation)."""
        ...

    def encode(self, prompts: list[str]) -> tuple[torch.Tensor, torch.Tensor]:
        """prompts (B) -> embeddings (B, T, D), mask (B, T) bool (True on real tokens)."""
        ...


class CachedTextEncoder:
    """LRU cache in front of a :class:`TextEncoder`: each distinct prompt is encoded once.

    Entries are kept on the encoder's output device and dtype. ``hits``/``misses`` count
    prompts (not calls) so a render can report how much encoding it saved.
    """

    def __init__(self, encoder: TextEncoder, max_entries: int = 256) -> None:
        if max_entries < 1:
            raise TextEncoderError(f"max_entries must be >= 1, got {max_entries}")
        self.encoder = encoder
        self.max_entries = max_entries
        self._cache: OrderedDict[str, tuple[torch.Tensor, torch.Tensor]] = OrderedDict()
        self.hits = 0
        self.misses = 0

    @property
    def dim(self) -> int:
        return self.encoder.dim

    @property
    def max_tokens(self) -> int:
        return self.encoder.max_tokens

    def cache_key(self, prompt: str) -> str:
        return self.encoder.cache_key(prompt)

    def __len__(self) -> int:
        return len(self._cache)

    def clear(self) -> None:
        self._cache.clear()

    def encode(self, prompts: list[str]) -> tuple[torch.Tensor, torch.Tensor]:
        """prompts (B) -> (B, T, D), (B, T); encodes only prompts not cached, in one batch."""
        if not prompts:
            raise TextEncoderError("encode() needs at least one prompt")
        keys = [self.encoder.cache_key(p) for p in prompts]
        todo: dict[str, str] = {}
        for key, prompt in zip(keys, prompts):
            if key in self._cache:
                self.hits += 1
                self._cache.move_to_end(key)
            elif key not in todo:
                todo[key] = prompt
                self.misses += 1
            else:
                self.hits += 1
        # Hold the hits locally first so evictions below cannot drop an entry this call needs.
        found = {k: self._cache[k] for k in keys if k in self._cache}
        if todo:
            emb, mask = self.encoder.encode(list(todo.values()))  # (N, T, D), (N, T)
            for i, key in enumerate(todo):
                found[key] = (emb[i], mask[i])
                self._cache[key] = found[key]
                self._cache.move_to_end(key)
            while len(self._cache) > self.max_entries:
                self._cache.popitem(last=False)
            log.debug("text cache: encoded %d prompts, %d entries", len(todo), len(self._cache))
        emb = torch.stack([found[k][0] for k in keys])  # (B, T, D)
        mask = torch.stack([found[k][1] for k in keys])  # (B, T)
        return emb, mask
