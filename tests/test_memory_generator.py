"""MemoryGenerator: the sink baseline, bounded attention, shot sinks, KV re-cache, exact resume."""

from __future__ import annotations

import json

import numpy as np
import pytest
import torch
from memory_parts import TPF, frames_of, make_gen, make_story, plan_for, ref_image, tiny_parts

from longtake.generate import CausalGenerator, GenerateError
from longtake.memory import CastMember, MemoryConfig
from longtake.render_state import load_state, save_state


@pytest.fixture(scope="module")
def parts():
    return tiny_parts()


def test_sink_mode_without_scene_sinks_is_the_causal_generator(parts):
    tl = plan_for(make_gen(parts, "sink"), make_story())
    a = frames_of(CausalGenerator(*parts), tl)
    b = frames_of(make_gen(parts, MemoryConfig(mode="sink", scene_sink=False)), tl)
    assert all(np.array_equal(x, y) for x, y in zip(a, b, strict=True))


@pytest.mark.parametrize("mode", ["none", "sink"])
def test_a_cut_to_another_place_starts_a_new_sink(parts, mode):
    gen = make_gen(parts, mode)
    tl = plan_for(gen, make_story())
    assert [c.index for c in tl.chunks if c.cut] == [4, 8] and [c.index for c in tl.chunks if c.new_place] == [8]
    fpc = gen.latent_frames_per_chunk
    sink = 0 if mode == "none" else 2
    keep = frames_of(make_gen(parts, MemoryConfig(mode=mode, scene_sink=False)), tl)
    for fc in gen.stream(tl, seed=1):
        i = fc.chunk.index
        held = gen.cache.frame_indices
        if i == 4:  # a cut in the same room keeps the room's frames
            assert held == ([0, 1] if mode == "sink" else []) + [8, 9] and gen.cache.sink_start == 0
        if i == 8:  # the cut to the park: only the park's frames
            assert gen.cache.sink_start == 8 * fpc and held == list(range(8 * fpc, 9 * fpc))
            assert gen.cache.sink_count == min(sink, fpc)
        # the same frames as without scene sinks up to the cut, others after it
        assert np.array_equal(fc.frames, keep[i]) == (i < 8)
    assert gen.info().settings["shot_cut"] == "new_sink_at_new_place"


def test_every_mode_renders_and_records_its_settings(parts):
    out = {}
    for mode in ("none", "sink", "nam", "nam+sma", "entity"):
        gen = make_gen(parts, mode)
        tl = plan_for(gen, make_story())
        out[mode] = frames_of(gen, tl)
        assert sum(f.shape[0] for f in out[mode]) == tl.num_frames
        settings = gen.info().settings
        json.dumps(settings)
        assert settings["memory"]["mode"] == mode
        assert settings["shot_cut"] == ("shot_sink" if mode in ("nam", "nam+sma", "entity") else "new_sink_at_new_place")
        assert settings["memory"]["scene_sink"] is True
        if mode == "none":
            assert gen.cache.sink_count == 0
    assert not np.array_equal(np.concatenate(out["none"]), np.concatenate(out["sink"]))
    assert not np.array_equal(np.concatenate(out["nam"]), np.concatenate(out["sink"]))


@pytest.mark.parametrize("mode", ["none", "sink", "nam", "nam+sma", "entity"])
def test_attended_tokens_do_not_grow_with_the_render_length(parts, mode):
    cfg = parts[0].config
    slots = {"nam": 3, "nam+sma": 2, "entity": 3}.get(mode, 0)
    bound = (cfg.sink_frames * (mode != "none") + slots + cfg.cache_frames - cfg.sink_frames) * TPF
    peaks, finals = [], []
    for repeat in (2, 20):
        gen = make_gen(parts, mode)
        tl = plan_for(gen, make_story(repeat=repeat))
        attended = []
        for _ in gen.stream(tl, seed=0):
            attended.append(gen.attended_tokens)
            assert gen.cache.num_tokens <= bound + (3 - slots) * TPF * (mode == "nam+sma")
            if gen.memory is not None:
                assert len(gen.memory) <= max(gen.memory_config.capacity, gen.memory_config.entity_capacity)
        peaks.append(max(attended))
        finals.append(gen.cache.num_tokens)
    assert len(tl) == 20 * 12
    assert peaks[0] == peaks[1] <= bound  # the same peak at 10x the length
    assert mode == "entity" or peaks[0] == bound
    assert finals[0] == finals[1]


def test_chunk_sma_installs_the_top_k_and_records_queries(parts):
    gen = make_gen(parts, MemoryConfig(mode="nam+sma", sma_per="chunk"))
    tl = plan_for(gen, make_story(repeat=2))
    sizes = []
    for _ in gen.stream(tl, seed=0):
        sizes.append(len(gen.selected))
        assert len(gen.cache.memory_positions) == len(gen.selected) <= 2
    assert max(sizes) == 2 and gen.sma.queries and set(gen.sma.queries) == {0, 1}
    assert gen.info().settings["memory"]["sma_per"] == "chunk"


def test_a_shot_cut_starts_a_shot_sink_and_sends_the_old_one_to_memory(parts):
    gen = make_gen(parts, "nam")
    tl = plan_for(gen, make_story())
    fpc = gen.latent_frames_per_chunk
    for fc in gen.stream(tl, seed=0):
        if fc.chunk.index == 4:  # the first cut
            assert fc.chunk.cut and gen.cache.sink_start == 4 * fpc
            assert gen.cache.frame_indices == [4 * fpc, 4 * fpc + 1]
            assert 0 in gen.memory.frames and 0 in gen.selected  # the old sink, attended from memory
            old = next(e for e in gen.memory.entries if e.frame == 0)
            assert old.entities == ("room", "mia") and old.chunk == 0


def _kv_of(cache):
    return [tuple(t.clone() for t in cache.view(layer)) for layer in range(cache.num_layers)]


@pytest.mark.parametrize("memory", [MemoryConfig(mode="nam", shot_sink=False), MemoryConfig(mode="sink", recache=True)])
def test_recache_at_a_switch_equals_a_fresh_write_under_the_new_prompt(parts, memory):
    dit = parts[0]
    snaps = {}

    class Spy(type(make_gen(parts))):
        def _after_write(self, chunk, cache, x0):
            super()._after_write(chunk, cache, x0)
            snaps.setdefault("x0", {})[chunk.index] = x0.clone()

        def _on_switch(self, chunk, cache):
            snaps["before"] = (_kv_of(cache), cache.frame_indices)
            super()._on_switch(chunk, cache)
            snaps["after"] = (_kv_of(cache), cache.frame_indices, cache.sink_count, chunk)
            raise StopIteration  # look at the first switch only

    gen = Spy(*parts, memory=memory)
    tl = plan_for(gen, make_story())
    with pytest.raises(RuntimeError):  # StopIteration inside a generator
        frames_of(gen, tl)
    after, held, sink_count, chunk = snaps["after"]
    assert held == snaps["before"][1] == [0, 1, 6, 7] and sink_count == 2
    fpc = gen.latent_frames_per_chunk
    latent = {c * fpc + i: x[:, :, i : i + 1] for c, x in snaps["x0"].items() for i in range(fpc)}
    with torch.no_grad():
        fresh = dit.new_cache()
        fresh.set_prompt(gen._prompt_kv(chunk.prompt, torch.device("cpu")))
        dit(torch.cat([latent[f] for f in held[:2]], dim=2), 0.0, cache=fresh, write_cache=True)
        fresh.seek(held[2])
        dit(torch.cat([latent[f] for f in held[2:]], dim=2), 0.0, cache=fresh, write_cache=True)
    for layer, (k, v) in enumerate(after):
        torch.testing.assert_close(k, fresh.view(layer)[0], atol=1e-6, rtol=0)
        torch.testing.assert_close(v, fresh.view(layer)[1], atol=1e-6, rtol=0)
    old_k = snaps["before"][0][1][0]
    assert (after[1][0] - old_k).abs().max() > 1e-3  # the cached K/V really changed


MODES_TO_RESUME = [
    ("nam", {}), (MemoryConfig(mode="nam+sma", sma_per="head"), {}), ("none", {}),
    ("entity", {"cast": [CastMember("mia", "character", "Mia.", (ref_image(3),))]}),
    (MemoryConfig(mode="nam", shot_sink=False), {}),  # re-cache at the switches needs the kept latents
    (MemoryConfig(mode="nam+sma", sma_per="chunk"), {}),  # the previous chunk's queries are state
]


@pytest.mark.parametrize("k", [3, 5, 9])
@pytest.mark.parametrize("mode, kw", MODES_TO_RESUME, ids=["nam", "sma-head", "none", "entity", "recache", "sma-chunk"])
def test_resume_from_a_saved_state_gives_identical_frames(parts, tmp_path, mode, kw, k):
    gen = make_gen(parts, mode, **kw)
    tl = plan_for(gen, make_story())
    full = frames_of(gen, tl)
    it = gen.stream(tl, seed=1)
    for _ in range(k):
        next(it)
    path = save_state(gen.state_dict(), tmp_path / "s.safetensors")  # pickle-free: plain data only
    it.close()
    state = load_state(path)
    resumed = frames_of(make_gen(parts, mode, **kw), tl, start_chunk=k, state=state)
    assert len(resumed) == len(tl) - k
    for x, y in zip(full[k:], resumed, strict=True):
        np.testing.assert_array_equal(x, y)


def test_sink_mode_resumes_a_causal_generator_state(parts):
    gen = CausalGenerator(*parts)
    tl = plan_for(make_gen(parts, "sink"), make_story())
    full = frames_of(gen, tl)
    it = gen.stream(tl, seed=1)
    next(it)
    resumed = frames_of(make_gen(parts, MemoryConfig(mode="sink", scene_sink=False)), tl, start_chunk=1, state=gen.state_dict())
    assert all(np.array_equal(x, y) for x, y in zip(full[1:], resumed, strict=True))


def test_resume_refuses_another_memory_mode(parts):
    gen = make_gen(parts, "nam")
    tl = plan_for(gen, make_story())
    it = gen.stream(tl, seed=1)
    next(it)
    with pytest.raises(GenerateError, match="memory mode 'nam', not 'entity'"):
        next(make_gen(parts, "entity").stream(tl, seed=1, start_chunk=1, state=gen.state_dict()))
