"""KVCache on its own and with the model: bound, bookkeeping, state round trip, errors."""

from __future__ import annotations

import io

import pytest
import torch

from longtake.model import CausalWanDiT, KVCache, ModelError, get_preset


def _kv(frames: int, tpf: int = 3, fill: float = 0.0):
    k = torch.full((1, 2, frames * tpf, 4), fill)
    return k, k.clone() + 100


def _write(cache: KVCache, frames: int, fill: float) -> None:
    for layer in range(cache.num_layers):
        cache.append(layer, *_kv(frames, fill=fill), frames=frames)
    cache.commit(frames)


def test_cache_bounded_over_50_chunks():
    cache = KVCache(2, sink_frames=3, window_frames=6)
    tpf = 3
    for c in range(50):
        _write(cache, 3, fill=float(c))
        assert cache.num_tokens <= (3 + 6) * tpf
        assert cache.num_frames <= 9
    assert cache.next_frame == 150
    assert cache.frame_indices == [0, 1, 2] + list(range(144, 150))
    k, v = cache.view(1)
    # sink = chunk 0, then the last two chunks (48, 49): fills follow.
    assert k[0, 0, :, 0].tolist() == [0.0] * 9 + [48.0] * 9 + [49.0] * 9
    assert torch.equal(v, k + 100)


def test_model_cache_bounded_over_50_chunks():
    torch.manual_seed(0)
    cfg = get_preset("tiny")
    model = CausalWanDiT(cfg).eval()
    cache = model.new_cache()
    cache.set_prompt(model.encode_prompt(torch.randn(1, 3, cfg.text_dim)))
    tpf = cfg.tokens_per_frame(4, 4)
    with torch.no_grad():
        for _ in range(50):
            chunk = torch.randn(1, cfg.in_channels, cfg.frames_per_chunk, 4, 4)
            model(chunk, 0.0, cache=cache, write_cache=True)
            assert cache.num_tokens <= (cfg.sink_frames + cfg.local_window_frames) * tpf
    assert cache.num_tokens == cfg.cache_frames * tpf
    assert cache.next_frame == 50 * cfg.frames_per_chunk


def test_frame_kv_reads_one_frame():
    cache = KVCache(1, sink_frames=1, window_frames=2)
    for c in range(4):
        _write(cache, 1, fill=float(c))
    assert cache.frame_indices == [0, 2, 3]
    k, v = cache.frame_kv(0, 2)
    assert k.shape == (1, 2, 3, 4) and k.unique().tolist() == [2.0] and v.unique().tolist() == [102.0]
    assert cache.frame_kv(0, 0)[0].unique().tolist() == [0.0]
    with pytest.raises(ModelError, match="not held"):
        cache.frame_kv(0, 1)


def test_unbounded_cache_keeps_everything():
    cache = KVCache(1, sink_frames=2, window_frames=None)
    for c in range(5):
        _write(cache, 2, fill=c)
    assert cache.num_frames == 10 and cache.frame_indices == list(range(10))


def test_memory_segment_sits_between_sink_and_window():
    cache = KVCache(1, sink_frames=1, window_frames=1)
    for c in range(3):
        _write(cache, 1, fill=c)
    cache.set_memory(0, *_kv(1, fill=-1.0))
    k, _ = cache.view(0)
    assert k[0, 0, :, 0].tolist() == [0.0] * 3 + [-1.0] * 3 + [2.0] * 3
    cache.clear_memory()
    assert cache.num_tokens == 6


def test_state_dict_round_trip_resumes_identically():
    torch.manual_seed(0)
    cfg = get_preset("tiny")
    model = CausalWanDiT(cfg).eval()
    text = torch.randn(1, 3, cfg.text_dim)
    chunks = [torch.randn(1, cfg.in_channels, cfg.frames_per_chunk, 4, 4) for _ in range(5)]
    cache = model.new_cache()
    cache.set_prompt(model.encode_prompt(text))
    with torch.no_grad():
        for chunk in chunks[:4]:
            model(chunk, 0.0, cache=cache, write_cache=True)
        buf = io.BytesIO()
        torch.save(cache.state_dict(), buf)
        expected = model(chunks[4], 0.5, cache=cache)
        restored = model.new_cache()
        buf.seek(0)
        restored.load_state_dict(torch.load(buf))
        got = model(chunks[4], 0.5, cache=restored)
    assert torch.equal(got, expected)
    assert restored.frame_indices == cache.frame_indices and restored.next_frame == cache.next_frame


def test_reset_and_prompt():
    cache = KVCache(1, sink_frames=1, window_frames=2)
    _write(cache, 2, fill=1)
    cache.reset()
    assert cache.num_tokens == 0 and cache.next_frame == 0 and cache.view(0) is None
    cache.seek(5)
    assert cache.next_frame == 5
    _write(cache, 1, fill=1)
    assert cache.frame_indices == [5]  # past the sink: goes to the window


def test_cache_misuse_raises():
    cache = KVCache(2, sink_frames=1, window_frames=2)
    cache.append(0, *_kv(1), frames=1)
    with pytest.raises(ModelError, match="twice"):
        cache.append(0, *_kv(1), frames=1)
    with pytest.raises(ModelError, match="every layer"):
        cache.commit(1)
    with pytest.raises(ModelError, match="commit"):
        cache.state_dict()
    cache.append(1, *_kv(1), frames=1)
    cache.commit(1)
    with pytest.raises(ModelError, match="tokens per frame"):
        cache.append(0, *_kv(1, tpf=5), frames=1)
    other = KVCache(3, sink_frames=1, window_frames=2)
    with pytest.raises(ModelError, match="layers"):
        other.load_state_dict(cache.state_dict())


def test_model_errors_are_model_errors():
    model = CausalWanDiT(get_preset("tiny"))
    x = torch.randn(1, 4, 2, 4, 4)
    with pytest.raises(ModelError, match="no text"):
        model(x, 0.5)
    with pytest.raises(ModelError, match="x must be"):
        model(torch.randn(1, 3, 2, 4, 4), 0.5, torch.randn(1, 2, 32))
    with pytest.raises(ModelError, match="sigma"):
        model(x, torch.zeros(1, 3), torch.randn(1, 2, 32))
    with pytest.raises(ModelError, match="causal"):
        model(x, 0.5, torch.randn(1, 2, 32), cache=model.new_cache(), mode="bidirectional")
    with pytest.raises(ModelError, match="divisible"):
        model(torch.randn(1, 4, 2, 5, 4), 0.5, torch.randn(1, 2, 32))


def test_rotated_view_is_remembered_until_the_cache_changes():
    """rotated_view rotates once and reuses the result while the cache holds the same
    tensors and the key is equal; a write, a memory change or another key makes it again."""
    cache = KVCache(1, sink_frames=1, window_frames=2)
    calls = []

    def rot(k):
        calls.append(1)
        return k * 2

    assert cache.rotated_view(0, "a", rot) is None
    k = torch.randn(1, 2, 3, 4)
    cache.append(0, k, k.clone(), 1)
    cache.commit(1)
    first = cache.rotated_view(0, "a", rot)
    again = cache.rotated_view(0, "a", rot)
    assert len(calls) == 1 and again[0] is first[0]
    torch.testing.assert_close(first[0], cache.view(0)[0] * 2)
    cache.rotated_view(0, "b", rot)
    assert len(calls) == 2
    cache.append(0, torch.randn(1, 2, 3, 4), torch.randn(1, 2, 3, 4), 1)
    cache.commit(1)
    after_write = cache.rotated_view(0, "b", rot)
    assert len(calls) == 3 and after_write[0].shape[2] == 6
    torch.testing.assert_close(after_write[0], cache.view(0)[0] * 2)
    cache.set_memory(0, torch.randn(1, 2, 3, 4), torch.randn(1, 2, 3, 4))
    with_memory = cache.rotated_view(0, "b", rot)
    assert len(calls) == 4 and with_memory[0].shape[2] == 9
    torch.testing.assert_close(with_memory[0], cache.view(0)[0] * 2)
