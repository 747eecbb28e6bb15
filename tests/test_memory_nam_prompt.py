"""Prompt relevance (session 17): NAM's frames ranked by the prompt they were written under
against the current one, and the gate (NAM and entity memory) that keeps frames of other
settings out of attention."""

from __future__ import annotations

import pytest
import torch
from memory_parts import make_gen, make_story, plan_for, tiny_parts

from longtake.memory import EntityMemory, MemoryBankError, MemoryEntry, NarrativeMemory
from longtake.memory import bank as bank_mod
from longtake.memory.config import PROMPT_GATE, MemoryConfig
from longtake.memory.entry import prompt_scores, prompt_similarity
from longtake.model import KVCache
from longtake.plan.timeline import Chunk

LAYERS, HEADS, DH, TPF = 2, 2, 4, 3

#: A hand-made "text encoder": each word is a fixed vector, a prompt the mean of its words'.
WORDS = {
    "mia": [1.0, 0.0, 0.0], "tom": [0.0, 1.0, 0.0], "office": [0.0, 0.0, 1.0], "park": [0.0, 1.0, 1.0], "walks": [1.0, 1.0, 0.0],
}


def embed(text: str) -> torch.Tensor:
    return torch.tensor([WORDS[w] for w in text.split()]).mean(dim=0)


def _kv(frame: int) -> tuple[list[torch.Tensor], list[torch.Tensor]]:
    k = torch.zeros(1, HEADS, TPF, DH)
    return [k] * LAYERS, [torch.full_like(k, float(frame))] * LAYERS


def entry(frame: int, text: str) -> MemoryEntry:
    k = torch.zeros(1, HEADS, TPF, DH)
    return MemoryEntry(frame, frame, ("room",), "room", "frame", [k] * LAYERS, [torch.full_like(k, float(frame))] * LAYERS, text)


def chunk(index: int, text: str) -> Chunk:
    return Chunk(index, index * 8, 8, 0, 0, 0, text, (), "room", "static", "cut", False, False, (0.0, 1.0))


def test_prompt_similarity_is_the_cosine_of_mean_token_embeddings():
    assert prompt_similarity(embed, "mia walks office", "mia walks office") == pytest.approx(1.0)
    # means (1/2, 0, 1/2) and (1/2, 1/2, 1/2): cosine 0.5 / (sqrt(0.5) sqrt(0.75)) = 2 / sqrt(6)
    assert prompt_similarity(embed, "mia office", "mia park") == pytest.approx(2 / 6**0.5)
    assert prompt_similarity(embed, "mia park", "mia office") == pytest.approx(2 / 6**0.5)
    assert prompt_similarity(embed, "mia", "") == -1.0  # a frame whose prompt is unknown ranks last
    with pytest.raises(MemoryBankError, match="current prompt"):
        prompt_scores(embed, "", [entry(0, "mia")])
    torch.testing.assert_close(prompt_scores(embed, "tom park", [entry(0, "tom park"), entry(1, "")]), torch.tensor([1.0, -1.0]))


def test_prompt_scored_bank_keeps_the_frames_of_the_current_setting():
    bank = NarrativeMemory(capacity=3, score="prompt", embed=embed)
    for frame, text in [(0, "mia office"), (3, "tom park"), (6, "mia walks office")]:
        bank.add(entry(frame, text), None, text)
    bank.add(entry(9, "tom park"), None, "tom park")  # full: the two nearest "tom park" stay, plus the newest
    assert bank.frames == [3, 6, 9]
    bank.add(entry(12, "mia office"), None, "mia office")
    assert bank.frames == [6, 9, 12]  # "mia walks office" scores 0.87; 3 and 9 tie at 0.32, the newer stays


def test_gate_installs_only_frames_relevant_to_the_chunk_prompt():
    cache = KVCache(LAYERS, sink_frames=0, window_frames=None)
    bank = NarrativeMemory(capacity=3, score="prompt", embed=embed, gate=0.85)
    for frame, text in [(0, "mia office"), (3, "tom park"), (6, "mia walks office")]:
        bank.add(entry(frame, text), None, text)
    chosen = bank.select(chunk(9, "mia office"), cache)
    assert [e.frame for e in chosen] == [0, 6]  # scores 1, 0.32 and 0.87 against "mia office"
    assert cache.num_tokens == 2 * TPF  # the memory segment is all the cache holds here
    assert bank.select(chunk(10, "tom walks"), cache) == []  # 0.32, 0.8, 0.73: nothing installed
    assert cache.num_tokens == 0
    ungated = NarrativeMemory(capacity=3, score="prompt", embed=embed)
    for frame, text in [(0, "mia office"), (3, "tom park")]:
        ungated.add(entry(frame, text), None, text)
    assert [e.frame for e in ungated.select(chunk(9, "tom walks"), cache)] == [0, 3]  # MemFlow: the whole bank


def test_bank_and_config_refuse_inconsistent_settings():
    with pytest.raises(MemoryBankError, match="embed"):
        NarrativeMemory(score="prompt")
    with pytest.raises(MemoryBankError, match="gate"):
        NarrativeMemory(score="memflow", gate=0.5)
    with pytest.raises(MemoryBankError, match="nam_gate"):
        MemoryConfig(mode="nam", nam_score="memflow", nam_gate=0.5)
    with pytest.raises(MemoryBankError, match="nam_gate"):
        MemoryConfig(mode="nam", nam_gate=1.5)
    with pytest.raises(MemoryBankError, match="nam_score"):
        MemoryConfig(mode="nam", nam_score="clip")  # type: ignore[arg-type]
    assert MemoryConfig(mode="nam").use_nam_gate == PROMPT_GATE
    assert MemoryConfig(mode="nam", nam_gate=-1.0).use_nam_gate == -1.0
    assert MemoryConfig(mode="nam", nam_score="memflow").use_nam_gate is None
    assert MemoryConfig(mode="nam").to_dict()["nam_gate"] == PROMPT_GATE


def test_entry_prompt_survives_a_state_round_trip_and_old_states_load():
    e = entry(4, "mia office")
    again = MemoryEntry.from_state_dict(e.state_dict())
    assert again.prompt == "mia office"
    old = e.state_dict()
    del old["prompt"]  # a state saved before entries kept their prompt
    assert MemoryEntry.from_state_dict(old).prompt == ""


def test_generator_scores_and_gates_with_the_chunk_prompt(monkeypatch):
    """Default NAM (prompt score, gate): every scoring, at a record and at a chunk's selection,
    compares against the prompt of the chunk being made; each stored frame carries the prompt
    it was written under."""
    seen: list[str] = []
    real = bank_mod.prompt_scores
    monkeypatch.setattr(bank_mod, "prompt_scores", lambda emb, cur, entries: seen.append(cur) or real(emb, cur, entries))
    gen = make_gen(tiny_parts(), "nam")
    gen.memory_config = gen.memory_config.replace(capacity=1, record_every=1, nam_lookahead=0.0)  # MemFlow's ranking
    tl = plan_for(gen, make_story())
    prompts = {c.index: c.prompt for c in tl.chunks}
    scored = 0
    for fc in gen.stream(tl, seed=0):
        assert all(p == fc.chunk.prompt for p in seen), f"chunk {fc.chunk.index} scored with another prompt"
        scored += len(seen)
        seen.clear()
        for e in gen.memory.entries:
            assert e.prompt == prompts[e.chunk]
    assert scored > 0
    assert gen.info().settings["memory"]["nam_score"] == "prompt"


def test_entity_gate_keeps_out_generated_frames_of_other_settings_but_never_refs():
    mem = EntityMemory(slots=3, per_entity=3, capacity=10, embed=embed, gate=0.85)
    for frame, ents, text in [(0, ("office", "mia"), "mia office"), (5, ("park", "mia"), "mia park"), (9, ("office", "mia"), "mia walks office")]:
        mem.add(MemoryEntry(frame, frame, ents, ents[0], "frame", *_kv(frame), text))
    ref = MemoryEntry(-1, -1, ("mia",), "", "ref", *_kv(-1))  # a reference image: no prompt, never gated
    mem.add(ref)
    cache = KVCache(LAYERS, sink_frames=0, window_frames=None)
    at_office = Chunk(12, 96, 8, 0, 0, 0, "mia office", ("mia",), "office", "static", "cut", False, False, (0.0, 1.0))
    # mia's queue: her anchor 0, then newest first: -1 (the ref, added last), 9, 5; "mia park" scores 0.82 < 0.85
    assert [e.frame for e in mem.select(at_office, cache)] == [-1, 0, 9]
    at_park = Chunk(13, 104, 8, 0, 0, 0, "tom park", ("mia",), "park", "static", "cut", False, False, (0.0, 1.0))
    assert [e.frame for e in mem.select(at_park, cache)] == [-1]  # "mia park" vs "tom park": 0.77; the office frames 0.32
    plain = EntityMemory(slots=3, per_entity=3, capacity=10)
    for e in mem.entries.values():
        plain.add(e)
    assert len(plain.select(at_park, cache)) == 3  # without a gate: mia's frames from everywhere
    with pytest.raises(MemoryBankError, match="embed"):
        EntityMemory(gate=0.5)


def test_place_gate_keeps_out_other_places_whatever_the_prompts_say_but_never_refs():
    # the same prompt at two places: the prompt gate lets both in, the place tag does not
    mem = EntityMemory(slots=3, per_entity=3, capacity=10, embed=embed, gate=0.85, same_place=True)
    for frame, ents in [(0, ("office", "mia")), (5, ("park", "mia")), (9, ("office", "mia"))]:
        mem.add(MemoryEntry(frame, frame, ents, ents[0], "frame", *_kv(frame), "mia walks"))
    mem.add(MemoryEntry(-1, -1, ("mia",), "park", "ref", *_kv(-1)))  # a reference image: never held back
    cache = KVCache(LAYERS, sink_frames=0, window_frames=None)
    at_park = Chunk(12, 96, 8, 0, 0, 0, "mia walks", ("mia",), "park", "static", "cut", False, False, (0.0, 1.0))
    assert [e.frame for e in mem.select(at_park, cache)] == [-1, 5]
    at_office = Chunk(13, 104, 8, 0, 0, 0, "mia walks", ("mia",), "office", "static", "cut", False, False, (0.0, 1.0))
    assert [e.frame for e in mem.select(at_office, cache)] == [-1, 0, 9]
    mem.same_place = False
    assert [e.frame for e in mem.select(at_park, cache)] == [-1, 0, 5]  # without it: anchor 0 from the office too
    assert MemoryConfig(mode="entity").to_dict()["entity_place"] is True
    assert make_gen(tiny_parts(), MemoryConfig(mode="entity", entity_place=False)).memory_config.entity_place is False


def test_entity_gate_settings():
    assert MemoryConfig(mode="entity").use_entity_gate == PROMPT_GATE
    assert MemoryConfig(mode="entity", entity_gate=-1.0).use_entity_gate is None
    assert MemoryConfig(mode="entity").to_dict()["entity_gate"] == PROMPT_GATE
    with pytest.raises(MemoryBankError, match="entity_gate"):
        MemoryConfig(mode="entity", entity_gate=2.0)
    gen = make_gen(tiny_parts(), MemoryConfig(mode="entity"))
    tl = plan_for(gen, make_story())
    for _ in gen.stream(tl, seed=0):
        assert gen.memory.gate == PROMPT_GATE and gen.memory.embed is not None
    off = make_gen(tiny_parts(), MemoryConfig(mode="entity", entity_gate=-1.0))
    for _ in off.stream(tl, seed=0):
        assert off.memory.gate is None


def test_lookahead_keeps_a_frame_the_script_needs_again():
    """Ranked by the current prompt alone, the frame of Mia in the office goes first while the
    prompts are about Tom; with the script's next prompt about Mia it stays."""
    def filled(ahead: list[str]) -> NarrativeMemory:
        bank = NarrativeMemory(capacity=3, score="prompt", embed=embed)
        for frame, text in [(0, "mia office"), (3, "tom park"), (6, "tom walks")]:
            bank.add(entry(frame, text), None, text)
        bank.add(entry(9, "tom park"), None, "tom park", ahead)
        return bank

    # against "tom park": mia office 0.32, tom park 1.0, tom walks 0.73 -> frame 0 out
    assert filled([]).frames == [3, 6, 9]
    # "mia office" ahead: the new frame 9 covers "tom park" (1.0) but "mia office" only at 0.32;
    # frame 0 raises that to 1.0, then nothing gains and frame 3 (1.0 on "tom park") beats 6 (0.73)
    assert filled(["mia office"]).frames == [0, 3, 9]
    assert filled(["tom park", "tom park"]).frames == [3, 6, 9]  # the current prompt again changes nothing
    memflow = NarrativeMemory(capacity=1)
    memflow.add(entry(1, "x"), None, "x")
    with pytest.raises(MemoryBankError, match="ahead"):
        memflow.add(entry(2, "x"), None, "x", ["y"])  # the MemFlow score has no text to look ahead with


def test_covering_keeps_one_frame_per_prompt_ahead_not_the_best_scored():
    """Ranked by the best score over the prompts, two more frames of the current prompt (1.0
    each) would push out the only frame of the character the script brings back."""
    bank = NarrativeMemory(capacity=3, score="prompt", embed=embed)
    for frame, text in [(0, "mia office"), (3, "tom park"), (6, "tom park")]:
        bank.add(entry(frame, text), None, text)
    bank.add(entry(9, "tom park"), None, "tom park", ["tom park", "mia office"])
    assert bank.frames == [0, 6, 9]  # mia's frame 0 stays; of the two "tom park" frames the newer


def test_generator_ranks_by_the_chunk_prompt_and_the_script_ahead(monkeypatch):
    """Default NAM looks ahead: at a record, the chunk's own prompt is scored first, then the
    prompts of the chunks that begin within ``nam_lookahead`` seconds after it, nothing else."""
    calls: list[tuple[int, str]] = []
    real = bank_mod.prompt_scores
    gen = make_gen(tiny_parts(), "nam")
    gen.memory_config = gen.memory_config.replace(capacity=1, record_every=1, nam_lookahead=1.0)
    tl = plan_for(gen, make_story())
    assert len({c.prompt for c in tl.chunks}) > 1, "the test story needs prompt switches"
    current: list[int] = [0]
    monkeypatch.setattr(bank_mod, "prompt_scores", lambda emb, cur, entries: calls.append((current[0], cur)) or real(emb, cur, entries))
    horizon = tl.fps * 1.0
    looked_ahead = 0
    for fc in gen.stream(tl, seed=0):
        c = fc.chunk
        ahead = list(dict.fromkeys(o.prompt for o in tl.chunks[c.index + 1 :] if o.start_frame < c.end_frame + horizon))
        assert gen._ahead(c) == ahead
        mine = [p for k, p in calls if k == c.index]
        assert not mine or mine[0] == c.prompt  # the select gate (or the record) scores the chunk prompt first
        assert set(mine) <= {c.prompt, *ahead}, f"chunk {c.index} ranked by a prompt outside its horizon"
        looked_ahead += any(p != c.prompt for p in mine)
        current[0] = c.index + 1
    assert looked_ahead > 0
    assert MemoryConfig(mode="nam").use_nam_lookahead == 60.0
    assert MemoryConfig(mode="nam", nam_score="memflow").use_nam_lookahead == 0.0
    assert MemoryConfig(mode="nam").to_dict()["nam_lookahead"] == 60.0
    with pytest.raises(MemoryBankError, match="nam_lookahead"):
        MemoryConfig(mode="nam", nam_score="memflow", nam_lookahead=5.0)
    with pytest.raises(MemoryBankError, match="nam_lookahead"):
        MemoryConfig(mode="nam", nam_lookahead=-1.0)
