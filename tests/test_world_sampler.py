"""StoryWorld story sampler, the held-out rule and the shipped storyworld-bench."""

import json
from pathlib import Path

import pytest
from typer.testing import CliRunner

from longtake.cli import app
from longtake.script.schema import Story
from longtake.world.bench_set import (
    BENCH_SECONDS,
    LONG_MIN_RETURN_GAP,
    LONG_SECONDS,
    LONG_SIZE,
    MIN_RETURN_GAP,
    SEGMENT_SECONDS,
    bench_story,
    check_bench,
    long_story,
    make_long_bench,
    protocol_problems,
    write_bench,
)
from longtake.world.errors import WorldError
from longtake.world.sampler import (
    HELDOUT_SEED_OFFSET,
    is_heldout_look,
    presence,
    returns,
    revisited_locations,
    sample_story,
)
from longtake.world.vocab import MOVING_ACTIONS, check_story, parse_actions, parse_appearance

BENCH = Path(__file__).resolve().parents[1] / "benchmarks" / "storyworld-bench"


def _yaml(story: Story, tmp_path: Path, name: str) -> bytes:
    path = tmp_path / name
    story.save(path)
    return path.read_bytes()


def test_same_split_and_seed_give_the_same_bytes(tmp_path):
    for split in ("train", "heldout"):
        a = sample_story(11, 45.0, split=split)
        b = sample_story(11, 45.0, split=split)
        assert _yaml(a, tmp_path, "a.yaml") == _yaml(b, tmp_path, "b.yaml")
        assert a.content_hash() == b.content_hash()
    assert sample_story(11, 45.0).content_hash() != sample_story(12, 45.0).content_hash()


def test_train_and_heldout_are_disjoint():
    n = 40
    train = [sample_story(s, 30.0, split="train") for s in range(n)]
    held = [sample_story(s, 30.0, split="heldout") for s in range(n)]
    assert not {s.content_hash() for s in train} & {s.content_hash() for s in held}
    assert len({s.content_hash() for s in train}) == n
    # the casts never overlap: every training look is outside the held-out bucket and back
    for story in train:
        assert story.seed < HELDOUT_SEED_OFFSET
        assert not any(is_heldout_look(parse_appearance(c.description)) for c in story.characters)
    for story in held:
        assert story.seed >= HELDOUT_SEED_OFFSET
        assert all(is_heldout_look(parse_appearance(c.description)) for c in story.characters)


@pytest.mark.parametrize("duration", [10.0, 37.5, 120.0, 600.0])
def test_sampled_stories_are_valid_storyworld_scripts(duration, tmp_path):
    for seed in range(6):
        story = sample_story(seed, duration, split="train" if seed % 2 else "heldout")
        check_story(story)
        assert abs(story.duration - duration) < 1e-6
        # a round trip through YAML keeps the story exactly
        path = tmp_path / f"s{seed}.yaml"
        story.save(path)
        assert Story.load(path).content_hash() == story.content_hash()
        shots = [shot for _, _, shot in story.shots()]
        assert all(0 < s.duration <= 8.0 for s in shots)
        assert all(2.0 <= s.duration for s in shots[:-1]) or len(shots) <= 2
        # a prompt switch at every shot
        assert all(a.prompt != b.prompt for a, b in zip(shots, shots[1:]))
        assert 1 <= len(story.characters) <= 4
        names = {c.name: c.id for c in story.characters}
        for shot in shots:
            on_screen = {n: i for n, i in names.items() if i in shot.characters}
            parse_actions(shot.prompt, on_screen)


def test_long_stories_have_exits_returns_revisits_and_camera_moves():
    stories = [sample_story(seed, 600.0, num_characters=(2, 4)) for seed in range(4)]
    for story in stories:
        assert len(story.scenes) >= 4
        long_returns = returns(story, min_gap=20.0)
        assert long_returns, story.title
        assert revisited_locations(story)
        assert len({shot.camera for _, _, shot in story.shots()}) >= 5
        prompts = " ".join(shot.prompt for _, _, shot in story.shots())
        assert "walks out" in prompts or "walk out" in prompts
        assert "again" in prompts
        assert len({shot.duration for _, _, shot in story.shots()}) >= 5
    assert "walk_out_left" in MOVING_ACTIONS


def test_num_characters_is_respected():
    for seed in range(10):
        assert len(sample_story(seed, 20.0, num_characters=(3, 3)).characters) == 3
        assert len(sample_story(seed, 20.0, num_characters=(1, 1)).characters) == 1


def test_bad_arguments_are_world_errors():
    with pytest.raises(WorldError, match="split"):
        sample_story(0, 10.0, split="test")  # type: ignore[arg-type]
    with pytest.raises(WorldError, match="seed"):
        sample_story(HELDOUT_SEED_OFFSET, 10.0)
    with pytest.raises(WorldError, match="duration"):
        sample_story(0, 0.0)


def test_presence_returns_and_revisits_of_a_hand_written_story():
    story = Story.model_validate({
        "title": "t",
        "characters": [{"id": "mia", "name": "Mia"}, {"id": "leo", "name": "Leo"}],
        "locations": [{"id": "park"}, {"id": "office"}],
        "scenes": [
            {"location": "park", "shots": [{"prompt": "Mia waves", "characters": ["mia", "leo"], "duration": 5},
                                           {"prompt": "Leo waits", "characters": ["leo"], "duration": 20}]},
            {"location": "office", "shots": [{"prompt": "Leo sits", "characters": ["leo"], "duration": 5}]},
            {"location": "park", "shots": [{"prompt": "Mia waves", "characters": ["mia"], "duration": 5}]},
        ],
    })
    assert presence(story) == {"mia": [(0.0, 5.0), (30.0, 35.0)], "leo": [(0.0, 30.0)]}
    [back] = returns(story, min_gap=15)
    assert (back.character, back.left_at, back.back_at, back.gap_s) == ("mia", 5.0, 30.0, 25.0)
    assert returns(story, min_gap=26) == []
    assert revisited_locations(story) == ["park"]


# -- storyworld-bench ------------------------------------------------------------------------


def test_shipped_bench_stories_follow_the_protocol():
    index = json.loads((BENCH / "index.json").read_text())
    assert index["num_stories"] >= 50 and len(index["stories"]) == index["num_stories"]
    assert check_bench(BENCH) == []
    for entry in index["stories"]:
        story = Story.load(BENCH / entry["file"])
        check_story(story)
        assert story.duration == BENCH_SECONDS
        assert protocol_problems(story) == []
        assert [s.duration for _, _, s in story.shots()] == [SEGMENT_SECONDS] * 6
        assert entry["returns"] and all(r["gap_s"] >= MIN_RETURN_GAP for r in entry["returns"])
        assert entry["revisited_locations"]
        assert entry["segment_boundaries_s"] == [10.0, 20.0, 30.0, 40.0, 50.0]
        assert story.seed >= HELDOUT_SEED_OFFSET  # held-out split
        assert bench_story(entry["seed"]).content_hash() == entry["story_hash"] == story.content_hash()


def test_long_bench_stories_return_after_more_than_a_minute():
    items = make_long_bench(LONG_SIZE)
    # session 23's eight stories (docs/memory.md, "Returns after more than 60 s") come first
    assert [it.seed for it in items[:8]] == [700_001, 700_002, 700_004, 700_005, 700_007, 700_009, 700_010, 700_011]
    assert sum(len(returns(it.story, min_gap=LONG_MIN_RETURN_GAP)) for it in items[:8]) == 14
    for it in items:
        assert it.story.duration == LONG_SECONDS and it.story.seed >= HELDOUT_SEED_OFFSET
        assert protocol_problems(it.story, seconds=LONG_SECONDS, min_return_gap=LONG_MIN_RETURN_GAP) == []
        assert [s.duration for _, _, s in it.story.shots()] == [SEGMENT_SECONDS] * 18
        assert long_story(it.seed).content_hash() == it.story.content_hash()
    # a skipped seed fails the protocol, and says why
    assert "no character returns after 65 s" in " ".join(protocol_problems(long_story(700_003), seconds=LONG_SECONDS, min_return_gap=LONG_MIN_RETURN_GAP))
    # a 60 s bench story is not a long one
    assert "lasts 60 s; expected 180 s" in protocol_problems(bench_story(0), seconds=LONG_SECONDS, min_return_gap=LONG_MIN_RETURN_GAP)[0]
    with pytest.raises(WorldError, match="out of range"):
        make_long_bench(0)


def test_long_bench_files_write_and_check(tmp_path):
    r = CliRunner().invoke(app, ["world", "bench", str(tmp_path / "long"), "--long", "--n", "3"])
    assert r.exit_code == 0, r.output
    index = json.loads((tmp_path / "long" / "index.json").read_text())
    assert index["name"] == "storyworld-bench-long" and index["protocol"]["min_return_gap_s"] == LONG_MIN_RETURN_GAP
    assert [e["seed"] for e in index["stories"]] == [700_001, 700_002, 700_004]
    assert all(e["returns"] and min(x["gap_s"] for x in e["returns"]) >= LONG_MIN_RETURN_GAP for e in index["stories"])
    assert check_bench(tmp_path / "long") == []
    # the long protocol is checked: a story cut to 60 s is refused
    bench_story(0).save(tmp_path / "long" / "story_001.yaml")
    assert any("story_001.yaml: lasts 60 s; expected 180 s" in p for p in check_bench(tmp_path / "long"))


def test_bench_regenerates_byte_for_byte(tmp_path):
    index = json.loads((BENCH / "index.json").read_text())
    write_bench(tmp_path, n=index["num_stories"], seed=index["seed"])
    shipped = sorted(p.name for p in BENCH.iterdir() if p.suffix in (".yaml", ".json"))
    made = sorted(p.name for p in tmp_path.iterdir())
    assert made == shipped
    for name in made:
        assert (tmp_path / name).read_bytes() == (BENCH / name).read_bytes(), name
