"""StoryWorld rendering: determinism, exact masks, full vocabulary, hidden-detail consistency."""

from __future__ import annotations

import numpy as np

from longtake.generate.protocol import Generator
from longtake.plan.planner import plan
from longtake.script.schema import CAMERA_MOVES, Story
from longtake.world.generator import StoryWorldGenerator
from longtake.world.renderer import WorldRenderer
from longtake.world.truth import TruthWriter, load_truth
from longtake.world.vocab import (
    ACTIONS, BODIES, HAIR_COLOURS, HAIR_STYLES, HATS, LOCATIONS, TOP_COLOURS, TOP_GARMENTS, TOP_PATTERNS,
    TROUSER_COLOURS,
)


def _story(shots, *, chars=None, location="office", seed=5, size=64) -> Story:
    chars = chars or [{"id": "mia", "name": "Mia", "description": "a woman with short black hair, a red striped shirt and blue trousers"},
                      {"id": "leo", "name": "Leo", "description": "a man with curly brown hair, a green checked jacket and glasses"}]
    return Story.model_validate({"title": "t", "seed": seed, "size": {"width": size, "height": size}, "characters": chars,
                                 "locations": [{"id": location}], "scenes": [{"location": location, "shots": shots}]})


def test_deterministic_bytes_and_seed_changes_hidden():
    story = Story.load("examples/office_day.yaml")
    tl = plan(story)
    a = WorldRenderer(story).render_chunk(tl.chunks[5])[0]
    b = WorldRenderer(story).render_chunk(tl.chunks[5])[0]
    assert a.tobytes() == b.tobytes()
    other = WorldRenderer(story, seed=story.seed + 1)
    assert other.hidden["mia"] != WorldRenderer(story).hidden["mia"]
    assert other.render_chunk(tl.chunks[5])[0].tobytes() != a.tobytes()


def test_masks_are_exactly_the_character_pixels():
    story = _story([{"prompt": "Mia walks in from the left and waves", "characters": ["mia"], "duration": 2},
                    {"prompt": "Mia talks and Leo walks in from the right", "characters": ["mia", "leo"], "duration": 2}])
    tl, r = plan(story), WorldRenderer(story)
    for chunk in (tl.chunks[1], tl.chunks[-1]):
        frames, truths = r.render_chunk(chunk)
        bare = r.render_chunk(chunk, only=[])[0]
        masks = np.stack([t.mask for t in truths])
        for cid in chunk.characters:
            k = r.labels[cid]
            solo, solo_t = r.render_chunk(chunk, only=[cid])
            solo_mask = np.stack([t.mask for t in solo_t]) == k
            drawn = (solo != bare).any(-1)
            assert not (drawn & ~solo_mask).any()  # nothing drawn outside the mask
            assert (solo_mask & ~drawn).sum() <= 0.02 * solo_mask.sum()  # colour coincidences only
            full = masks == k
            assert not (full & ~solo_mask).any()  # occlusion only removes pixels
            assert (frames[full] == solo[full]).all()
            for t, m in zip(truths, full):
                c = next(c for c in t.characters if c.id == cid)
                if m.any():
                    ys, xs = np.nonzero(m)
                    assert c.bbox == (xs.min(), ys.min(), xs.max() + 1, ys.max() + 1) and c.visible
                else:
                    assert c.bbox is None and not c.visible


def test_every_vocabulary_word_renders():
    chars = []
    for i in range(max(len(BODIES), len(HAIR_STYLES), len(TOP_COLOURS), len(TOP_GARMENTS), len(TROUSER_COLOURS), len(HAIR_COLOURS))):
        style = HAIR_STYLES[i % len(HAIR_STYLES)]
        hair = "a bald head" if style == "bald" else (f"{HAIR_COLOURS[i % len(HAIR_COLOURS)]} hair in a {style}" if style in ("ponytail", "bun") else f"{style} {HAIR_COLOURS[i % len(HAIR_COLOURS)]} hair")
        desc = f"a {BODIES[i % 4]} with {hair}, a {TOP_COLOURS[i % len(TOP_COLOURS)]} {TOP_PATTERNS[i % 4]} {TOP_GARMENTS[i % len(TOP_GARMENTS)]}, {TROUSER_COLOURS[i % len(TROUSER_COLOURS)]} trousers, a {HATS[i % 3]} and glasses"
        chars.append({"id": f"c{i}", "name": f"Cee{chr(97 + i)}", "description": desc})
    names = [c["name"] for c in chars]
    shots = [{"prompt": f"{names[i % len(names)]} {phrase}", "characters": [c["id"] for c in chars[i % 3 * 4: i % 3 * 4 + 4]] + ([chars[i % len(names)]["id"]] if i % len(names) >= 12 or i % len(names) < i % 3 * 4 or i % len(names) >= i % 3 * 4 + 4 else []),
              "duration": 0.75, "camera": CAMERA_MOVES[i % len(CAMERA_MOVES)], "transition": "fade" if i % 2 else "cut"}
             for i, phrase in enumerate(ACTIONS.values())]
    story = Story.model_validate({"title": "all", "size": {"width": 48, "height": 40}, "characters": chars,
                                  "locations": [{"id": k} for k in LOCATIONS],
                                  "scenes": [{"location": k, "shots": shots[j::3] or shots[:1]} for j, k in enumerate(LOCATIONS)]})
    moves = {s["camera"] for s in shots}
    assert len(moves) == min(len(ACTIONS), len(CAMERA_MOVES))
    r = WorldRenderer(story)
    seen_actions = set()
    for chunk in plan(story, frames_per_chunk=4).chunks:
        frames, truths = r.render_chunk(chunk)
        assert frames.shape == (4, 40, 48, 3) and frames.dtype == np.uint8
        seen_actions |= {c.action for t in truths for c in t.characters}
    assert set(ACTIONS) <= seen_actions


def test_hidden_details_fixed_within_story():
    story = _story([{"prompt": "Mia stands", "characters": ["mia", "leo"], "duration": 2},
                    {"prompt": "Leo jumps", "characters": ["leo"], "duration": 180},
                    {"prompt": "Mia stands", "characters": ["mia", "leo"], "duration": 2}], size=128)
    tl, r = plan(story), WorldRenderer(story)
    f0, t0 = r.render_chunk(tl.chunks[0])
    f1, t1 = r.render_chunk(tl.chunks[-1])
    assert tl.chunks[-1].start_frame - tl.chunks[0].start_frame > 16 * 170
    a0 = next(c for c in t0[0].characters if c.id == "mia")
    a1 = next(c for c in t1[0].characters if c.id == "mia")
    assert a0.hidden == a1.hidden and a0.bbox == a1.bbox
    x0, y0, x1, y1 = a0.bbox
    assert (f0[0, y0:y1, x0:x1] == f1[0, y0:y1, x0:x1]).all()  # shoes, badge, pattern: same pixels
    assert r.hidden["mia"] != r.hidden["leo"]


def test_office_day_renders_and_generator_resumes(tmp_path):
    story = Story.load("examples/office_day.yaml")
    tl = plan(story)
    r = WorldRenderer(story)
    with TruthWriter(tmp_path / "office", meta=r.meta()) as w:
        n = 0
        for chunk, frames, truths in r.render(tl):
            assert frames.shape == (chunk.num_frames, 128, 128, 3)
            w.write(truths)
            n += len(frames)
    assert n == tl.num_frames
    truth = load_truth(tmp_path / "office")
    assert len(truth.frames) == n and truth.meta["seed"] == story.seed
    assert truth.frames[40].mask.shape == (128, 128) and truth.frames[40].characters[0].hidden == r.hidden["mia"]
    gen = StoryWorldGenerator(story)
    assert isinstance(gen, Generator) and gen.info().name == "storyworld" and gen.info().kind == "procedural"
    it = gen.stream(tl, seed=story.seed)
    first = [next(it) for _ in range(3)]
    state = gen.state_dict()
    assert state == {"next_chunk": 3}
    resumed = next(StoryWorldGenerator(story).stream(tl, seed=story.seed, state=state))
    assert resumed.chunk.index == 3
    assert resumed.frames.tobytes() == r.render_chunk(tl.chunks[3])[0].tobytes()
    assert first[0].frames.tobytes() == r.render_chunk(tl.chunks[0])[0].tobytes()


def _figure_canvas(sprite, size=200):
    """A sprite pasted with its foot point at a fixed spot, so sprites of other sizes compare."""
    canvas = np.zeros((size, size, 3), np.int64)
    top, left = size - 20 - sprite.ay, size // 2 - sprite.ax
    canvas[top : top + sprite.alpha.shape[0], left : left + sprite.alpha.shape[1]][sprite.alpha] = sprite.rgb[sprite.alpha]
    return canvas


def test_undrawn_attributes_are_exactly_those_the_figure_does_not_show():
    """A bun under a top hat draws the same pixels as short hair at every size, under a
    beanie up to 45 px tall (2 pixels differ at 60); without a hat or under a cap it shows.
    ``undrawn_attributes`` names hair style exactly in the first two cases."""
    import dataclasses

    from longtake.eval.probe_data import ATTRIBUTES, attribute_labels
    from longtake.world.characters import Pose, draw_figure, undrawn_attributes
    from longtake.world.sampler import sample_story

    story = sample_story(3, 20.0, split="train")
    r = WorldRenderer(story)
    app, hid = r.appearance[r.cast[0]], r.hidden[r.cast[0]]

    def differ(hat, fig_h, pose=Pose()):
        a, b = (dataclasses.replace(app, body="woman", hair_colour="brown", hair_style=s, hat=hat) for s in ("bun", "short"))
        return int((np.abs(_figure_canvas(draw_figure(a, hid, pose, fig_h)) - _figure_canvas(draw_figure(b, hid, pose, fig_h))).sum(-1) > 0).sum())

    for fig_h in (30, 45, 60, 120):
        for pose in (Pose(), Pose(legs="walk", leg_phase=3), Pose(arms="wave", arm_level=3)):
            assert differ("hat", fig_h, pose) == 0
    assert differ("beanie", 30) == differ("beanie", 45) == 0 and differ("beanie", 60) <= 2
    assert min(differ(None, h) for h in (45, 60)) >= 5 and differ("cap", 60) >= 5
    j = list(ATTRIBUTES).index("hair_style")
    for hat, hidden in ((None, False), ("cap", False), ("hat", True), ("beanie", True)):
        bun = dataclasses.replace(app, hair_style="bun", hat=hat)
        assert ("hair_style" in undrawn_attributes(bun)) == hidden
        assert (attribute_labels(bun)[j] == -1) == hidden
        assert attribute_labels(dataclasses.replace(bun, hair_style="short"))[j] == ATTRIBUTES["hair_style"].index("short")
