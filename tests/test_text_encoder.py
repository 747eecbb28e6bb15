"""Tokenizer, built-in text encoder, LRU cache and the local-path UMT5 encoder (tiny, CPU)."""

from __future__ import annotations

import dataclasses

import pytest
import torch

from longtake.model.text_builtin import BuiltinTextConfig, BuiltinTextEncoder
from longtake.model.text_encoder import CachedTextEncoder, TextEncoder, TextEncoderError
from longtake.model.tokenizer import Tokenizer, split_words

CORPUS = [
    "Mia (a woman with short black hair, red coat) sits down.",
    "Tom (a tall man, green hat) walks to the door.",
    "Mia waves at Tom.",
]


def _encoder(max_tokens: int = 24, seed: int = 0) -> BuiltinTextEncoder:
    tok = Tokenizer.build(CORPUS)
    cfg = BuiltinTextConfig(vocab_size=len(tok), dim=32, num_layers=2, num_heads=4, max_tokens=max_tokens)
    torch.manual_seed(seed)
    return BuiltinTextEncoder(cfg, tok).eval()


# ---------------------------------------------------------------- tokenizer
def test_split_keeps_parentheses_and_commas() -> None:
    assert split_words("Mia (a woman, RED coat) sits.") == ["mia", "(", "a", "woman", ",", "red", "coat", ")", "sits", "."]
    assert split_words("Mia's t-shirt") == ["mia's", "t-shirt"]


def test_tokenizer_roundtrip_and_unknown() -> None:
    tok = Tokenizer.build(CORPUS)
    assert tok.vocab[:2] == ["<pad>", "<unk>"]
    text = CORPUS[0]
    assert tok.decode(tok.ids(text)) == " ".join(split_words(text))
    ids = tok.ids("Mia rides a dragon")
    assert ids[1] == tok.unk_id and ids[3] == tok.unk_id and ids[0] != tok.unk_id
    assert tok.decode(ids) == "mia <unk> a <unk>"


def test_tokenizer_build_min_count_max_size_deterministic() -> None:
    tok = Tokenizer.build(CORPUS, min_count=2)
    assert "mia" in tok.index and "door" not in tok.index
    small = Tokenizer.build(CORPUS, max_size=6)
    assert len(small) == 6
    assert Tokenizer.build(CORPUS).vocab == Tokenizer.build(list(CORPUS)).vocab


def test_tokenizer_padding_mask_truncation() -> None:
    tok = Tokenizer.build(CORPUS)
    ids, mask = tok(["Mia waves.", CORPUS[0]], max_tokens=8)
    assert ids.shape == mask.shape == (2, 8)
    assert mask[0].tolist() == [True] * 3 + [False] * 5 and (ids[0, 3:] == tok.pad_id).all()
    assert mask[1].all()  # truncated to 8


def test_tokenizer_save_load(tmp_path) -> None:
    tok = Tokenizer.build(CORPUS)
    tok.save(tmp_path / "vocab.json")
    assert Tokenizer.load(tmp_path / "vocab.json").vocab == tok.vocab
    (tmp_path / "bad.json").write_text('{"a": 1}')
    with pytest.raises(TextEncoderError):
        Tokenizer.load(tmp_path / "bad.json")
    with pytest.raises(TextEncoderError, match="not found"):
        Tokenizer.load(tmp_path / "none.json")


# ---------------------------------------------------------------- built-in encoder
def test_builtin_encoder_shapes_mask_and_padding() -> None:
    enc = _encoder()
    assert isinstance(enc, TextEncoder)
    with torch.inference_mode():
        emb, mask = enc.encode(["Mia waves.", CORPUS[0], ""])
    assert emb.shape == (3, 24, 32) and mask.shape == (3, 24) and mask.dtype == torch.bool
    assert mask.sum(1).tolist() == [3, 15, 0]
    assert torch.isfinite(emb).all()
    assert (emb[~mask] == 0).all() and (emb[mask].abs().sum(-1) > 0).all()


def test_builtin_encoder_deterministic_and_batch_independent() -> None:
    enc = _encoder()
    with torch.inference_mode():
        a, _ = enc.encode(["Mia waves.", CORPUS[1]])
        b, _ = enc.encode(["Mia waves."])
        c, _ = enc.encode(["Mia waves.", CORPUS[1]])
    torch.testing.assert_close(a, c, rtol=0, atol=0)
    torch.testing.assert_close(a[:1], b, rtol=1e-5, atol=1e-6)  # padding does not leak


def test_builtin_encoder_save_load(tmp_path) -> None:
    enc = _encoder(seed=3)
    enc.save_pretrained(tmp_path / "te")
    back = BuiltinTextEncoder.from_pretrained(tmp_path / "te")
    assert back.config == enc.config and back.tokenizer.vocab == enc.tokenizer.vocab
    with torch.inference_mode():
        torch.testing.assert_close(back.encode(CORPUS)[0], enc.encode(CORPUS)[0])
    with pytest.raises(TextEncoderError, match="not found"):
        BuiltinTextEncoder.from_pretrained(tmp_path / "missing")


def test_builtin_encoder_config_errors() -> None:
    tok = Tokenizer.build(CORPUS)
    with pytest.raises(TextEncoderError, match="vocab_size"):
        BuiltinTextEncoder(BuiltinTextConfig(vocab_size=len(tok) + 1, dim=32, num_heads=4), tok)
    with pytest.raises(TextEncoderError, match="num_heads"):
        BuiltinTextConfig(dim=30, num_heads=4)
    assert dataclasses.replace(BuiltinTextConfig(), dim=128).dim == 128


def test_builtin_encoder_trains() -> None:
    enc = _encoder().train()
    ids, mask = enc.tokenizer(CORPUS, enc.max_tokens)
    enc(ids, mask).square().mean().backward()
    assert enc.tok_emb.weight.grad is not None and torch.isfinite(enc.tok_emb.weight.grad).all()


# ---------------------------------------------------------------- LRU cache
class _Counting:
    def __init__(self, inner: BuiltinTextEncoder) -> None:
        self.inner, self.seen = inner, []
        self.dim, self.max_tokens = inner.dim, inner.max_tokens

    def cache_key(self, prompt: str) -> str:
        return self.inner.cache_key(prompt)

    def encode(self, prompts):
        self.seen.extend(prompts)
        return self.inner.encode(prompts)


def test_cache_encodes_each_prompt_once_and_evicts() -> None:
    inner = _encoder()
    counting = _Counting(inner)
    cache = CachedTextEncoder(counting, max_entries=2)
    with torch.inference_mode():
        emb, mask = cache.encode([CORPUS[0], CORPUS[1], CORPUS[0]])
        ref, ref_mask = inner.encode([CORPUS[0], CORPUS[1], CORPUS[0]])
        torch.testing.assert_close(emb, ref)
        assert torch.equal(mask, ref_mask)
        assert counting.seen == [CORPUS[0], CORPUS[1]]
        cache.encode(["MIA (a woman with short black hair, red coat) sits down. "])  # same key
        assert len(counting.seen) == 2 and cache.hits == 2 and cache.misses == 2
        cache.encode([CORPUS[2]])  # evicts CORPUS[1], the least recently used
        cache.encode([CORPUS[1]])
    assert counting.seen == [CORPUS[0], CORPUS[1], CORPUS[2], CORPUS[1]]
    assert len(cache) == 2
    with pytest.raises(TextEncoderError):
        cache.encode([])


# ---------------------------------------------------------------- UMT5 from a local folder
def _tiny_umt5(folder) -> None:
    transformers = pytest.importorskip("transformers")
    tokenizers = pytest.importorskip("tokenizers")
    words = sorted({w for text in CORPUS for w in text.lower().replace(",", " ").replace(".", " ").split()})
    vocab = {"<pad>": 0, "</s>": 1, "<unk>": 2, **{w: i + 3 for i, w in enumerate(words)}}
    core = tokenizers.Tokenizer(tokenizers.models.WordLevel(vocab, unk_token="<unk>"))
    core.normalizer = tokenizers.normalizers.Lowercase()
    core.pre_tokenizer = tokenizers.pre_tokenizers.Whitespace()
    core.post_processor = tokenizers.processors.TemplateProcessing(single="$A </s>", special_tokens=[("</s>", 1)])
    fast = transformers.PreTrainedTokenizerFast(
        tokenizer_object=core, pad_token="<pad>", eos_token="</s>", unk_token="<unk>"
    )
    fast.save_pretrained(folder)
    cfg = transformers.UMT5Config(
        vocab_size=len(vocab), d_model=16, d_kv=4, d_ff=32, num_layers=2, num_heads=4,
        relative_attention_num_buckets=8, pad_token_id=0, eos_token_id=1, decoder_start_token_id=0,
    )
    torch.manual_seed(0)
    transformers.UMT5EncoderModel(cfg).save_pretrained(folder)


def test_umt5_local_encode(tmp_path) -> None:
    from longtake.model.text_umt5 import UMT5TextEncoder

    _tiny_umt5(tmp_path)
    enc = UMT5TextEncoder.from_pretrained(tmp_path, max_tokens=16)
    assert isinstance(enc, TextEncoder) and enc.dim == 16 and enc.max_tokens == 16
    emb, mask = enc.encode(["Mia waves at Tom", "Tom walks to the door  &amp; sits"])
    assert emb.shape == (2, 16, 16) and mask.shape == (2, 16)
    assert mask.sum(1).tolist() == [5, 8]  # words + </s>; "&amp;" became "&", an unknown token
    assert (emb[~mask] == 0).all() and torch.isfinite(emb).all()
    assert enc.cache_key("a   &amp;amp; b ") == "a & b"
    single, _ = enc.encode(["Mia waves at Tom"])
    torch.testing.assert_close(single[0], emb[0], rtol=1e-5, atol=1e-6)


def test_umt5_missing_path(tmp_path) -> None:
    from longtake.model.text_umt5 import UMT5TextEncoder

    with pytest.raises(TextEncoderError, match="never downloads"):
        UMT5TextEncoder.from_pretrained(tmp_path / "nope")


def test_builtin_encoder_state_dict_keys_stable() -> None:
    keys = set(_encoder().state_dict())
    assert {"tok_emb.weight", "pos_emb", "norm_out.weight", "blocks.1.qkv.weight", "blocks.1.proj.bias",
            "blocks.0.ff1.weight", "blocks.0.ff2.bias", "blocks.0.norm1.weight", "blocks.0.norm2.bias"} <= keys
