"""The cast readout: targets at the name tokens, gradients into the text encoder only, and
on a small encoder it learns looks that carry over to casts it never saw."""

from __future__ import annotations

import numpy as np
import torch

from longtake.eval.probe_data import ATTRIBUTES, attribute_labels
from longtake.model.text_builtin import BuiltinTextConfig, BuiltinTextEncoder
from longtake.model.tokenizer import Tokenizer
from longtake.train.cast_readout import CastReadout
from longtake.world.parse import parse_appearance
from longtake.world.vocab import HAIR_COLOURS, TOP_COLOURS

STEPS = 300

PROMPT = ("In the kitchen, Zoe (a girl with brown hair in a ponytail, a green striped sweater, brown trousers and a hat) waves. "
          "Noah (a man with curly white hair, a white striped sweater and grey trousers) drinks coffee. Setting: kitchen.")


def _encoder(words, max_tokens=96, dim=32, layers=1) -> BuiltinTextEncoder:
    tok = Tokenizer.build(words)
    torch.manual_seed(0)
    return BuiltinTextEncoder(BuiltinTextConfig(vocab_size=len(tok), dim=dim, num_layers=layers, num_heads=2, max_tokens=max_tokens), tok)


def test_targets_sit_on_the_names_and_come_from_the_descriptions():
    enc = _encoder([PROMPT])
    head = CastReadout(enc)
    got = head.targets(PROMPT)
    toks = enc.tokenizer.tokens(PROMPT)
    assert [toks[p] for p, _ in got] == ["zoe", "noah"]
    zoe = attribute_labels(parse_appearance("a girl with brown hair in a ponytail, a green striped sweater, brown trousers and a hat"))
    assert list(got[0][1]) == zoe and zoe[list(ATTRIBUTES).index("hat")] > 0
    assert head.targets("Zoe waves. Setting: kitchen.") == ()  # no introduction, no target
    short = CastReadout(_encoder([PROMPT], max_tokens=20))
    assert [p for p, _ in short.targets(PROMPT)] == [4]  # Noah is past the encoder's 20 tokens


def test_the_error_counts_defined_attributes_and_trains_only_the_text_path():
    enc = _encoder([PROMPT])
    head = CastReadout(enc)
    emb, _ = enc.encode([PROMPT, "", PROMPT])
    ce, n, right = head.error(emb, [PROMPT, "", PROMPT])
    defined = sum(v >= 0 for _, lab in head.targets(PROMPT) for v in lab)
    assert int(n) == 2 * defined and 0 <= int(right) <= int(n) and float(ce) > 0
    (ce / n).backward()
    assert enc.tok_emb.weight.grad.abs().sum() > 0 and head.proj.weight.grad.abs().sum() > 0
    zero = head.error(emb[:1], ["The park."])
    assert all(float(z) == 0 for z in zero)


def test_a_small_encoder_learns_looks_that_carry_over_to_unseen_casts():
    """Train on 4 of every 5 (hair colour, top colour) pairs, test on the rest: the colour
    words are shared by both roles, so the head must read each word in its place, not
    remember whole prompts."""
    pairs = [(h, t) for h in HAIR_COLOURS for t in TOP_COLOURS]
    rng = np.random.default_rng(0)
    order = rng.permutation(len(pairs))
    test = [pairs[i] for i in order[: len(pairs) // 5]]
    train = [pairs[i] for i in order[len(pairs) // 5 :]]

    def text(h, t):
        return f"Ann (a woman with {h} hair, a {t} shirt and grey trousers) waves. Setting: park."

    enc = _encoder([text(h, t) for h, t in pairs], dim=32, layers=2)
    head = CastReadout(enc)
    opt = torch.optim.AdamW(list(enc.parameters()) + list(head.parameters()), lr=3e-3)
    for _ in range(STEPS):
        batch = [text(*train[i]) for i in rng.integers(0, len(train), 16)]
        ce, n, _ = head.error(enc.encode(batch)[0], batch)
        opt.zero_grad()
        (ce / n).backward()
        opt.step()
    names = list(ATTRIBUTES)
    starts = np.cumsum([0] + head.sizes)
    with torch.no_grad():  # the two colours of every unseen pair, read from the name token
        logits = head.proj(enc.encode([text(h, t) for h, t in test])[0][:, 0].float())
    hair = logits[:, starts[names.index("hair_colour")] : starts[names.index("hair_colour") + 1]].argmax(-1)
    top = logits[:, starts[names.index("top_colour")] : starts[names.index("top_colour") + 1]].argmax(-1)
    right = [HAIR_COLOURS.index(h) == int(a) and TOP_COLOURS.index(t) == int(b) for (h, t), a, b in zip(test, hair, top)]
    assert sum(right) >= 0.8 * len(test), f"{sum(right)} of {len(test)} unseen pairs read right"  # chance: 1 in 77
