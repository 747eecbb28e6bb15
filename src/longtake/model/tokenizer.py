"""Word-level tokenizer for the built-in text encoder.

Prompts read like ``Mia (a woman with short black hair, red coat) sits down.``: the text is
lower-cased and split into words and single punctuation marks, so parentheses and commas
stay tokens and the encoder can tell a character's descriptor apart from the action. The
vocabulary is a fixed list (saved as JSON beside the weights); the index of a word is its
position. Index 0 is ``<pad>``, 1 is ``<unk>`` (any word not in the list).
"""

from __future__ import annotations

import json
import re
from collections import Counter
from collections.abc import Iterable
from pathlib import Path

import torch

from longtake.model.text_encoder import TextEncoderError

PAD = "<pad>"
UNK = "<unk>"
SPECIALS = (PAD, UNK)

# A word (letters/digits, with an inner apostrophe or hyphen: "mia's", "t-shirt") or one
# punctuation mark.
_TOKEN_RE = re.compile(r"[^\W_]+(?:['\-][^\W_]+)*|[^\w\s]|_")


def split_words(text: str) -> list[str]:
    """Lower-case ``text`` and split it into word and punctuation tokens."""
    return _TOKEN_RE.findall(text.lower())


class Tokenizer:
    """Maps prompts to fixed-length id tensors. ``vocab[i]`` is the token of id ``i``."""

    def __init__(self, vocab: list[str]) -> None:
        if list(vocab[: len(SPECIALS)]) != list(SPECIALS):
            raise TextEncoderError(f"vocabulary must start with {list(SPECIALS)}, got {list(vocab[:2])}")
        if len(set(vocab)) != len(vocab):
            raise TextEncoderError("vocabulary has duplicate entries")
        self.vocab = list(vocab)
        self.index = {tok: i for i, tok in enumerate(self.vocab)}

    @property
    def pad_id(self) -> int:
        return 0

    @property
    def unk_id(self) -> int:
        return 1

    def __len__(self) -> int:
        return len(self.vocab)

    @classmethod
    def build(cls, texts: Iterable[str], *, min_count: int = 1, max_size: int | None = None) -> "Tokenizer":
        """Vocabulary of the words seen at least ``min_count`` times, most frequent first
        (ties alphabetical, so the same corpus always gives the same ids), at most
        ``max_size`` entries including the specials."""
        if max_size is not None and max_size < len(SPECIALS):
            raise TextEncoderError(f"max_size must be >= {len(SPECIALS)}, got {max_size}")
        counts = Counter(tok for text in texts for tok in split_words(text))
        words = sorted((w for w, c in counts.items() if c >= min_count and w not in SPECIALS),
                       key=lambda w: (-counts[w], w))
        if max_size is not None:
            words = words[: max_size - len(SPECIALS)]
        return cls([*SPECIALS, *words])

    def tokens(self, text: str) -> list[str]:
        """The tokens of ``text`` with out-of-vocabulary words replaced by ``<unk>``."""
        return [tok if tok in self.index else UNK for tok in split_words(text)]

    def ids(self, text: str) -> list[int]:
        """Token ids of ``text`` (no padding, no truncation)."""
        return [self.index.get(tok, self.unk_id) for tok in split_words(text)]

    def decode(self, ids: Iterable[int]) -> str:
        """Ids -> tokens joined by single spaces; padding is dropped."""
        out = []
        for i in ids:
            i = int(i)
            if i == self.pad_id:
                continue
            if not 0 <= i < len(self.vocab):
                raise TextEncoderError(f"token id {i} is outside the vocabulary of {len(self.vocab)}")
            out.append(self.vocab[i])
        return " ".join(out)

    def __call__(self, texts: list[str], max_tokens: int) -> tuple[torch.Tensor, torch.Tensor]:
        """texts (B) -> ids (B, max_tokens) long, mask (B, max_tokens) bool.

        Longer texts are truncated to ``max_tokens``; shorter ones padded with ``<pad>``.
        """
        ids = torch.full((len(texts), max_tokens), self.pad_id, dtype=torch.long)
        mask = torch.zeros(len(texts), max_tokens, dtype=torch.bool)
        for row, text in enumerate(texts):
            seq = self.ids(text)[:max_tokens]
            ids[row, : len(seq)] = torch.tensor(seq, dtype=torch.long)
            mask[row, : len(seq)] = True
        return ids, mask

    def save(self, path: str | Path) -> None:
        """Write the vocabulary as a JSON list."""
        Path(path).write_text(json.dumps(self.vocab, ensure_ascii=False, indent=0) + "\n", encoding="utf-8")

    @classmethod
    def load(cls, path: str | Path) -> "Tokenizer":
        p = Path(path).expanduser()
        if not p.is_file():
            raise TextEncoderError(f"vocabulary file not found: {p}")
        try:
            vocab = json.loads(p.read_text(encoding="utf-8"))
        except json.JSONDecodeError as err:
            raise TextEncoderError(f"{p} is not valid JSON: {err}") from err
        if not isinstance(vocab, list) or not all(isinstance(v, str) for v in vocab):
            raise TextEncoderError(f"{p} must hold a JSON list of strings")
        return cls(vocab)
