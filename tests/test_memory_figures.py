"""Entity figures (memory/figures.py): a character's figure latents at its first appearance,
kept by the entity memory and composited into its box whenever it is on screen."""

from __future__ import annotations

import numpy as np
import pytest
import torch
from memory_parts import WORDS, make_story, plan_for, tiny_parts

from longtake.generate.memory import MemoryGenerator
from longtake.memory import EntityMemory, MemoryBankError, MemoryConfig
from longtake.memory.figures import crop_figure, paste_figure
from longtake.model import CausalWanDiT, get_preset
from longtake.model.layout import LayoutPrior, introduced
from longtake.render_state import load_state, save_state


def _box(f: int, h: int, w: int, r0: int, r1: int, c0: int, c1: int) -> torch.Tensor:
    box = torch.zeros(f, h, w)
    box[:, r0:r1, c0:c1] = 1
    return box


def test_a_cropped_figure_pastes_back_into_a_box_of_another_size_where_it_covers():
    torch.manual_seed(0)
    x0 = torch.randn(1, 3, 2, 8, 8)
    cover = torch.zeros(1, 2, 8, 8)
    cover[:, :, 1:7, 2:4] = 0.9  # the figure: rows 1-6, columns 2-3 of its box
    box = _box(2, 8, 8, 1, 7, 2, 4)
    fig = crop_figure(x0, cover, box)
    assert fig.shape == (4, 6, 2)
    # back into the same box: the latents of frame 0 there, in every frame; nothing else moves
    out = paste_figure(torch.zeros(1, 3, 2, 8, 8), fig, box, 0.3)
    for f in range(2):
        torch.testing.assert_close(out[0, :, f, 1:7, 2:4], x0[0, :, 0, 1:7, 2:4], atol=0, rtol=0)
    assert out[:, :, :, :, :2].abs().sum() == 0 and out[:, :, :, 0].abs().sum() == 0
    # into a larger box: a resampled copy, only inside the box
    big = paste_figure(torch.zeros(1, 3, 2, 8, 8), fig, _box(2, 8, 8, 0, 8, 4, 8), 0.3)
    assert big[:, :, :, :, :4].abs().sum() == 0 and big[:, :, :, :, 4:].abs().sum() > 0
    # coverage under the threshold: nothing pasted; an empty box: nothing cropped or pasted
    low = fig.clone()
    low[-1] = 0.1
    torch.testing.assert_close(paste_figure(x0, low, box, 0.3), x0, atol=0, rtol=0)
    assert crop_figure(x0, cover, torch.zeros(2, 8, 8)) is None
    torch.testing.assert_close(paste_figure(x0, fig, torch.zeros(2, 8, 8), 0.3), x0, atol=0, rtol=0)


def test_entity_memory_keeps_the_first_figure_bounded_and_saves_imports_it(tmp_path):
    mem = EntityMemory(slots=1, per_entity=1, capacity=2)
    a, b, c = torch.ones(5, 4, 2), 2 * torch.ones(5, 4, 2), 3 * torch.ones(5, 4, 2)
    mem.keep_figure("ann", a)
    mem.keep_figure("ann", b)  # the first appearance stays
    assert torch.equal(mem.figures["ann"], a)
    mem._see(("bob",))
    mem.keep_figure("bob", b)
    mem._see(("cy",))
    mem.keep_figure("cy", c)  # past capacity 2: ann, seen least recently (never), goes
    assert set(mem.figures) == {"bob", "cy"}
    state = load_state(save_state(mem.state_dict(), tmp_path / "m.safetensors"))  # as in state and memory files
    again = EntityMemory(slots=1, per_entity=1, capacity=2)
    again.load_state_dict(state)
    assert set(again.figures) == {"bob", "cy"} and torch.equal(again.figures["cy"], c)
    other = EntityMemory(slots=1, per_entity=1, capacity=2)
    other.import_entries(state, entities={"cy", "dan"})  # only the story's entities
    assert set(other.figures) == {"cy"}
    old = {k: v for k, v in state.items() if k != "figures"}  # a memory saved before figures existed
    EntityMemory(slots=1, per_entity=1, capacity=2).load_state_dict(old)
    with pytest.raises(MemoryBankError, match="entity_figures"):
        MemoryConfig(mode="sink", entity_figures=True)
    assert not MemoryConfig(mode="entity").entity_figures and MemoryConfig(mode="entity", entity_figures=True).to_dict()["entity_figures"]


# Mia (chunks 0-3), Tom (4-7), Mia again (8-11), each introduced as "Name (description)".
CHARACTERS = [{"id": "mia", "name": "Mia", "description": "a woman with red hair"},
              {"id": "tom", "name": "Tom", "description": "a man in blue"}]


@pytest.fixture(scope="module")
def painter_parts():
    _, vae, text = tiny_parts()
    torch.manual_seed(0)
    dit = CausalWanDiT(get_preset("tiny").replace(prediction="sample", layout_channels=3, paint_hidden=8)).eval()
    return dit, vae, text


def _gen(parts, memory, **kw):
    prior = LayoutPrior({1: ((0.25, 0.25, 1.0, 0.75),)})
    return MemoryGenerator(*parts, memory=memory, layout_prior=prior, paint_composite=0.3, **kw)


def _record(gen):
    seen = []
    inner = gen._after_sample

    def spy(chunk, x0, layout):
        out = inner(chunk, x0, layout)
        seen.append((chunk, x0.clone(), out.clone()))
        return out

    gen._after_sample = spy
    return seen


def test_entity_figures_put_a_returning_characters_first_figure_back_and_resume_exactly(painter_parts, tmp_path):
    story = make_story(characters=CHARACTERS)
    figures = MemoryConfig(mode="entity", entity_figures=True)
    gen = _gen(painter_parts, figures)
    tl = plan_for(gen, story)
    text = painter_parts[2]
    assert "Mia" in WORDS and [n for n, p, _ in introduced(tl.chunks[0].prompt, text.tokenizer.tokens, text.max_tokens)] == ["Mia"]
    seen = _record(gen)
    full = [fc.frames for fc in gen.stream(tl, seed=1)]
    first = next(i for i, (c, _, _) in enumerate(seen) if "mia" in c.characters)
    back = next(i for i, (c, _, _) in enumerate(seen) if "mia" in c.characters and i > first and "mia" not in seen[i - 1][0].characters)
    f, h, w = seen[0][1].shape[2:]
    box = gen.layout_prior.masks(1, gen.dit.config.layout_slots, f, h, w)[0]
    # the figure kept is the first appearance's; on the return it is composited over the sample
    fig = gen.memory.figures["mia"]
    _, _, out_first = seen[first]
    _, before, after = seen[back]
    torch.testing.assert_close(fig[:-1], crop_figure(out_first, torch.zeros(1, f, h, w), box)[:-1])
    torch.testing.assert_close(after, paste_figure(before, fig, box, 0.3))
    assert float((after - before).abs().sum()) > 0 and float(fig[-1].max()) > 0.3
    assert set(gen.memory.figures) == {"mia", "tom"} and gen.info().settings["memory"]["entity_figures"] is True
    # without figures (the default) the sampled chunk is what the cache gets
    plain = _gen(painter_parts, "entity")
    plain_seen = _record(plain)
    list(plain.stream(tl, seed=1))
    assert all(torch.equal(x, y) for _, x, y in plain_seen) and not plain.memory.figures
    # the figures are part of the saved state: a resumed render gives the same frames
    k = back - 1
    it = gen.stream(tl, seed=1)
    for _ in range(k):
        next(it)
    path = save_state(gen.state_dict(), tmp_path / "s.safetensors")
    it.close()
    resumed = [fc.frames for fc in _gen(painter_parts, figures).stream(tl, seed=1, start_chunk=k, state=load_state(path))]
    for x, y in zip(full[k:], resumed, strict=True):
        np.testing.assert_array_equal(x, y)
