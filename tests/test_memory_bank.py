"""NAM bank and sparse memory activation on hand-made K/V: scoring, eviction, no duplicates,
switch scoring with the new prompt, per-head selection, and the DiT with a selector."""

from __future__ import annotations

import math

import pytest
import torch
from memory_parts import make_gen, make_story, plan_for, tiny_parts

from longtake.memory import MemoryBankError, MemoryEntry, NarrativeMemory, SparseMemoryActivation, install, nam_scores
from longtake.memory import bank as bank_mod
from longtake.model import CausalWanDiT, KVCache, get_preset
from longtake.model.kv_cache import PromptKV
from longtake.plan.timeline import Chunk

LAYERS, HEADS, DH, TPF = 2, 2, 4, 3


def direction(i: int, scale: float = 1.0) -> torch.Tensor:
    e = torch.zeros(DH)
    e[i] = scale
    return e


def entry(frame: int, key: torch.Tensor, entities=("room",)) -> MemoryEntry:
    """An entry whose every key token (all layers, heads) is ``key`` (Dh,); values mark the frame."""
    k = key.expand(1, HEADS, TPF, DH).clone()
    v = torch.full((1, HEADS, TPF, DH), float(frame))
    return MemoryEntry(frame, frame, tuple(entities), entities[0], "frame", [k] * LAYERS, [v] * LAYERS)


def prompt(key: torch.Tensor, tokens: int = 5) -> PromptKV:
    k = key.expand(1, HEADS, tokens, DH).clone()
    return PromptKV([(k, torch.zeros_like(k))] * LAYERS)


def chunk(index: int, text: str = "p", entities=("room",), cut: bool = False) -> Chunk:
    return Chunk(index, index * 8, 8, 0, 0, 0, text, tuple(entities[1:]), entities[0], "static", "cut", cut, False, (0.0, 1.0))


def test_nam_score_is_the_mean_of_scaled_dot_products():
    torch.manual_seed(0)
    p = PromptKV([(torch.randn(1, HEADS, 5, DH), torch.randn(1, HEADS, 5, DH)) for _ in range(LAYERS)])
    e = MemoryEntry(0, 0, ("room",), "room", "frame", [torch.randn(1, HEADS, TPF, DH) for _ in range(LAYERS)], [torch.zeros(1, HEADS, TPF, DH)] * LAYERS)
    naive = torch.stack([
        torch.einsum("htd,hid->hti", p.layers[layer][0][0], e.keys[layer][0]) / math.sqrt(DH) for layer in range(LAYERS)
    ]).mean()
    torch.testing.assert_close(nam_scores(p, [e])[0], naive)


def test_full_bank_keeps_the_top_scored_plus_the_newest():
    bank = NarrativeMemory(capacity=3)
    p = prompt(direction(0))
    for frame, c in [(10, 3.0), (20, 1.0), (30, 2.0)]:
        assert bank.add(entry(frame, direction(0, c)), p)
    assert bank.frames == [10, 20, 30]
    assert bank.add(entry(40, direction(0, -5.0)), p)  # the newest stays even with the lowest score
    assert bank.frames == [10, 30, 40]
    assert bank.add(entry(50, direction(0, 0.0)), p)
    assert bank.frames == [10, 30, 50]  # 40 scored lowest of the stored ones


def test_equal_scores_keep_the_newer_frame():
    bank = NarrativeMemory(capacity=2)
    p = prompt(direction(0))
    for frame in (1, 2, 3):
        bank.add(entry(frame, direction(1)), p)  # orthogonal to the prompt: every score is 0
    assert bank.frames == [2, 3]


def test_a_frame_is_never_held_twice():
    bank = NarrativeMemory(capacity=3)
    p = prompt(direction(0))
    assert bank.add(entry(7, direction(0)), p)
    assert not bank.add(entry(7, direction(0, 9.0)), p)
    assert bank.frames == [7]


def test_a_generated_stream_never_holds_a_frame_twice():
    parts = tiny_parts()
    gen = make_gen(parts, "nam")
    gen.memory_config = gen.memory_config.replace(record_every=1)  # a candidate every chunk + sinks at cuts
    tl = plan_for(gen, make_story())
    for _ in gen.stream(tl, seed=0):
        frames = gen.memory.frames
        assert len(frames) == len(set(frames)) <= gen.memory_config.capacity
        positions = gen.cache.view_positions()
        assert len(positions) == len(set(positions))  # the memory segment repeats no cached frame


def test_scoring_without_a_prompt_is_refused():
    with pytest.raises(MemoryBankError, match="prompt"):
        nam_scores(None, [entry(0, direction(0))])
    bank = NarrativeMemory(capacity=1)
    bank.add(entry(0, direction(0)), None)  # not full: nothing to score
    with pytest.raises(MemoryBankError, match="prompt"):
        bank.add(entry(1, direction(0)), None)


def _cache_with_frames(keys: list[torch.Tensor]) -> KVCache:
    cache = KVCache(LAYERS, sink_frames=0, window_frames=None)
    for key in keys:
        for layer in range(LAYERS):
            cache.append(layer, key.expand(1, HEADS, TPF, DH).clone(), torch.zeros(1, HEADS, TPF, DH), frames=1)
        cache.commit(1)
    return cache


@pytest.mark.parametrize("new_prompt_dir, kept", [(1, [1, 2]), (0, [0, 2])])
def test_bank_update_scores_with_the_prompt_of_the_chunk_being_recorded(new_prompt_dir, kept):
    """Frame 0 matches prompt A, frame 1 prompt B. At chunk 2 the prompt switches: the bank is
    scored with the cache's prompt at that moment (the new one), never an empty or old one."""
    cache = _cache_with_frames([direction(0), direction(1), direction(2)])
    bank = NarrativeMemory(capacity=2, record_every=1)
    cache.set_prompt(prompt(direction(0)))
    bank.update(chunk(0), cache, 0)
    bank.update(chunk(1), cache, 1)
    cache.set_prompt(prompt(direction(new_prompt_dir)))  # the switch
    bank.update(chunk(2, "new"), cache, 2)
    assert bank.frames == kept


def test_generator_scores_with_the_new_prompt_from_the_first_chunk_after_a_switch(monkeypatch):
    seen = []
    real = bank_mod.nam_scores
    monkeypatch.setattr(bank_mod, "nam_scores", lambda p, entries: seen.append(p) or real(p, entries))  # MemFlow's score (the default is the prompt score)
    parts = tiny_parts()
    gen = make_gen(parts, "nam")
    gen.memory_config = gen.memory_config.replace(capacity=1, record_every=1, nam_score="memflow")  # score at every record
    tl = plan_for(gen, make_story())
    switches = 0
    for fc in gen.stream(tl, seed=0):
        want = gen._prompt_kv(fc.chunk.prompt, torch.device("cpu"))
        assert all(p is want for p in seen), f"chunk {fc.chunk.index} scored with another prompt"
        assert seen or fc.chunk.index == 0  # chunk 0 fills an empty bank: nothing to score
        switches += fc.chunk.switch
        seen.clear()
    assert switches == 2


def test_sma_keeps_per_head_the_frames_nearest_to_the_pooled_queries():
    a = entry(0, direction(0))
    b = entry(1, direction(1))
    b.keys = [torch.stack([direction(1), direction(0, 2.0)])[None, :, None].expand(1, HEADS, TPF, DH).clone()] * LAYERS  # head 1 of b: 2 e0
    sma = SparseMemoryActivation(top_k=1)
    sma.prepare([a, b])
    q = direction(0).expand(1, HEADS, 7, DH)  # every head queries along e0
    keep = sma(0, q, 2)
    assert keep.tolist() == [[[0], [1]]]  # head 0 -> a, head 1 -> b
    assert sma(0, q, 1) is None  # not more frames than top_k: keep all


def test_chunk_sma_chooses_by_the_recorded_queries_of_the_last_pass():
    sma = SparseMemoryActivation(top_k=1, per="chunk")
    a, b = entry(3, direction(0)), entry(5, direction(1))
    assert sma.choose([a, b]) == [b]  # nothing recorded yet: the newest
    for layer in range(LAYERS):
        assert sma(layer, direction(1).expand(1, HEADS, 7, DH), 1) is None  # records, never narrows
        assert sma(layer, direction(0).expand(1, HEADS, 7, DH), 1) is None  # the last pass wins
    assert sma.choose([a, b]) == [a]
    restored = SparseMemoryActivation(top_k=1, per="chunk")
    restored.load_state_dict(sma.state_dict())
    assert restored.choose([a, b]) == [a]


def test_select_prefix_gathers_the_kept_frames_per_head():
    cache = KVCache(1, sink_frames=1, window_frames=1)
    for f in range(3):
        cache.append(0, torch.full((1, HEADS, TPF, DH), float(f)), torch.full((1, HEADS, TPF, DH), 100.0 + f), frames=1)
        cache.commit(1)
    install(cache, [entry(f, direction(0)) for f in (-3, -2, -1)])  # values mark the frame ids
    cache.memory_selector = lambda layer, q, frames: torch.tensor([[[0, 2], [1, 2]]])
    k, v = cache.select_prefix(0, torch.zeros(1, HEADS, 2, DH), cache.view(0))
    marks = v[0, :, ::TPF, 0].tolist()  # one mark per frame: sink, 2 memory frames, window
    assert marks == [[100.0, -3.0, -1.0, 102.0], [100.0, -2.0, -1.0, 102.0]]
    assert k.shape == (1, HEADS, 4 * TPF, DH)


def test_dit_with_a_selector_equals_the_kept_frames_at_their_positions():
    torch.manual_seed(0)
    cfg = get_preset("tiny")
    model = CausalWanDiT(cfg).eval()
    nh, dh = cfg.num_heads, cfg.head_dim
    with torch.no_grad():
        full = model.new_cache()
        full.set_prompt(model.encode_prompt(torch.randn(1, 3, cfg.text_dim)))
        for _ in range(3):
            model(torch.randn(1, 4, 2, 4, 4), 0.0, cache=full, write_cache=True)
        mem = [MemoryEntry(f, 0, ("room",), "room", "frame", [torch.randn(1, nh, 4, dh) for _ in range(cfg.num_layers)],
                           [torch.randn(1, nh, 4, dh) for _ in range(cfg.num_layers)]) for f in (2, 3, 4)]
        x = torch.randn(1, 4, 2, 4, 4)
        install(full, mem)
        plain = model(x, 0.5, cache=full)
        full.memory_selector = lambda layer, q, frames: None  # keeps everything: bit-identical
        assert torch.equal(model(x, 0.5, cache=full), plain)
        full.memory_selector = lambda layer, q, frames: torch.tensor([[[0, 2]] * nh])
        sparse = model(x, 0.5, cache=full)
        full.memory_selector = None
        install(full, [mem[0], mem[2]])  # absolute positions: the same frames at the same places
        torch.testing.assert_close(sparse, model(x, 0.5, cache=full), atol=1e-5, rtol=0)
        assert (sparse - plain).abs().max() > 1e-4
