"""Training-only head on the text encoder: each character's look, read at its name.

Why (session 9): every built-in run drew generic figures. The middle-block readout of
session 7 (``dit_stage.AttributeReadout``) showed why: on 240 training stories the DiT's text
path learnt each training cast by heart (held-out casts: the true prompt no better than the
empty one), and on 2 400 stories it learnt neither (held-out cross-entropy 1.379 with the
true prompt against 1.390 with the empty one after 785 steps). To turn a description into
a figure the DiT has to gather nine scattered words (the colour before "hair", the garment
after the pattern, ...) for the right character, from a text encoder that was never told
what the words mean.

This head asks the text encoder to put each character's whole look on one token, the
character's name where the prompt introduces it (``Name (description)``, the planner's
``expand_prompt``): a linear layer on the encoder's output at that token must name every
captioned attribute (``eval.probe_data.ATTRIBUTES``; targets parsed from the description
itself with ``world.parse.parse_appearance``, never from a probe). Then one cross-attention
head that finds the name finds the whole look. It is a multi-task auxiliary loss on the text
encoder; the head is not exported and the encoder's interface is unchanged.
"""

from __future__ import annotations

from functools import lru_cache

import numpy as np
import torch
import torch.nn.functional as nnf
from torch import nn

from longtake.model.layout import introduced
from longtake.model.text_builtin import BuiltinTextEncoder


class CastReadout(nn.Module):
    """Linear head (D -> all attribute classes) on the text encoder's name tokens."""

    def __init__(self, text: BuiltinTextEncoder) -> None:
        super().__init__()
        from longtake.eval.probe_data import ATTRIBUTES

        self.sizes = [len(v) for v in ATTRIBUTES.values()]
        self.proj = nn.Linear(text.dim, sum(self.sizes))
        tokenizer, limit = text.tokenizer, text.max_tokens

        @lru_cache(maxsize=65536)
        def targets(prompt: str) -> tuple[tuple[int, tuple[int, ...]], ...]:
            from longtake.eval.probe_data import attribute_labels
            from longtake.world.parse import parse_appearance

            out = []
            for _, pos, description in introduced(prompt, tokenizer.tokens, limit):
                if pos < 0:
                    continue  # cut off by max_tokens, or not one word
                labels = tuple(attribute_labels(parse_appearance(description)))
                if any(v >= 0 for v in labels):
                    out.append((pos, labels))
            return tuple(out)

        self.targets = targets

    def error(self, emb: torch.Tensor, prompts: list[str]) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
        """emb (B, T, D) the encoder's output for ``prompts`` -> summed cross-entropy over every
        introduced character's defined attributes, the number of those pairs, and how many of
        them the head gets right (argmax)."""
        rows, pos, labels = [], [], []
        for b, prompt in enumerate(prompts):
            for p, lab in self.targets(prompt):
                rows.append(b)
                pos.append(p)
                labels.append(lab)
        zero = emb.new_zeros((), dtype=torch.float32)
        if not rows:
            return zero, zero, zero
        feats = emb[torch.tensor(rows, device=emb.device), torch.tensor(pos, device=emb.device)].float()  # (N, D)
        logits = self.proj(feats)  # (N, sum(sizes))
        target = torch.from_numpy(np.asarray(labels, dtype=np.int64)).to(logits.device)  # (N, A)
        total, count, right = zero, zero, zero
        start = 0
        for k, n in enumerate(self.sizes):
            t = target[:, k]
            ok = t >= 0
            if bool(ok.any()):
                part = logits[:, start : start + n]
                total = total + nnf.cross_entropy(part, t, ignore_index=-1, reduction="sum")
                right = right + (part.argmax(-1)[ok] == t[ok]).sum()
            count = count + ok.sum()
            start += n
        return total, count, right

