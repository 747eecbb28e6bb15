"""Planner: chunk alignment, marks, prompt expansion, JSON round trip."""

import json

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from longtake.plan import PlanError, Timeline, expand_prompt, plan
from longtake.script import Story, load_story


def story_with(durations, fps=16, **shot_over):
    return Story.model_validate(
        {
            "title": "t",
            "fps": fps,
            "characters": [{"id": "mia", "name": "Mia", "description": "a woman with short black hair"}],
            "locations": [{"id": "office", "name": "the office"}, {"id": "park"}],
            "scenes": [
                {"location": "office" if i % 2 == 0 else "park", "shots": [{"prompt": f"Mia waves {i}", "characters": ["mia"], "duration": d, **shot_over}]}
                for i, d in enumerate(durations)
            ],
        }
    )


def test_chunks_are_contiguous_and_fixed_size(example_path):
    tl = plan(load_story(example_path))
    frame = 0
    for i, c in enumerate(tl.chunks):
        assert c.index == i and c.start_frame == frame and c.num_frames == 12
        frame += c.num_frames
    assert tl.num_frames == frame


@settings(max_examples=60, deadline=None)
@given(st.lists(st.floats(min_value=0.05, max_value=30), min_size=1, max_size=25), st.sampled_from([8, 12, 16, 24]), st.sampled_from([4, 12, 16]))
def test_length_stays_within_half_a_chunk_of_the_script(durations, fps, fpc):
    s = story_with(durations, fps=fps)
    tl = plan(s, frames_per_chunk=fpc)
    assert len(tl.shots) == len(durations)
    assert all(sp.num_chunks >= 1 for sp in tl.shots)
    # cumulative rounding: error bounded unless shots shorter than a chunk were stretched to one
    if all(d * fps >= fpc for d in durations):
        assert abs(tl.num_frames - s.duration * fps) <= fpc / 2 + 1e-6


def test_cut_and_switch_marks():
    tl = plan(story_with([1.5, 1.5, 1.5]))
    firsts = {sp.first_chunk for sp in tl.shots}
    for c in tl.chunks:
        assert c.cut == (c.index in firsts and c.index != 0)
        assert c.switch == (c.index in firsts and c.index != 0)  # every shot's prompt differs here
    assert tl.chunks[0].shot_span[0] == 0.0 and tl.chunks[tl.shots[0].num_chunks - 1].shot_span[1] == 1.0


def test_new_place_marks_only_cuts_to_another_location():
    s = Story.model_validate(
        {"title": "t", "locations": [{"id": "a"}, {"id": "b"}],
         "scenes": [{"location": "a", "shots": [{"prompt": "one", "duration": 2}, {"prompt": "two", "duration": 2}]},
                    {"location": "a", "shots": [{"prompt": "three", "duration": 2}]},
                    {"location": "b", "shots": [{"prompt": "four", "duration": 2}]},
                    {"location": "a", "shots": [{"prompt": "five", "duration": 2}]}]}
    )
    tl = plan(s)
    firsts = [sp.first_chunk for sp in tl.shots]
    assert [tl.chunks[i].new_place for i in firsts] == [False, False, False, True, True]
    assert sum(c.new_place for c in tl.chunks) == 2  # never inside a shot
    assert Timeline.from_dict(json.loads(tl.to_json())).chunks == tl.chunks


def test_same_prompt_is_not_a_switch():
    s = Story.model_validate(
        {"title": "t", "locations": [{"id": "a"}], "scenes": [{"location": "a", "shots": [{"prompt": "rain", "duration": 2}, {"prompt": "rain", "duration": 2}]}]}
    )
    tl = plan(s)
    assert any(c.cut for c in tl.chunks) and not any(c.switch for c in tl.chunks)


def test_first_chunk_may_be_shorter():
    tl = plan(story_with([5]), frames_per_chunk=12, first_chunk_frames=9)
    assert tl.chunks[0].num_frames == 9 and tl.chunks[1].start_frame == 9
    assert all(c.num_frames == 12 for c in tl.chunks[1:])


def test_bad_chunk_size():
    with pytest.raises(PlanError):
        plan(story_with([1]), frames_per_chunk=0)


def test_prompt_expansion_from_cast_sheet():
    s = story_with([2])
    text = expand_prompt(s, s.scenes[0], s.scenes[0].shots[0])
    assert text.startswith("Mia (a woman with short black hair) waves 0.")
    assert "Setting: the office." in text and "Static camera." in text
    # an on-screen character the prompt does not name is appended, not lost
    s2 = Story.model_validate({**s.model_dump(), "scenes": [{"location": "office", "shots": [{"prompt": "rain falls", "characters": ["mia"], "duration": 1}]}]})
    assert "With Mia (a woman with short black hair)." in expand_prompt(s2, s2.scenes[0], s2.scenes[0].shots[0])


def test_name_inside_another_word_is_not_expanded():
    s = Story.model_validate(
        {"title": "t", "characters": [{"id": "al", "name": "Al", "description": "a man"}], "locations": [{"id": "a"}],
         "scenes": [{"location": "a", "shots": [{"prompt": "Alice meets Al", "characters": ["al"], "duration": 1}]}]}
    )
    assert expand_prompt(s, s.scenes[0], s.scenes[0].shots[0]).startswith("Alice meets Al (a man).")


def test_dialogue_is_placed_inside_its_shot(example_path):
    tl = plan(load_story(example_path))
    cues = [(c.index, d) for c in tl.chunks for d in c.dialogue]
    assert [d.text for _, d in cues] == ["Good morning!", "Morning, Leo."]
    shot = tl.shots[1]
    for idx, d in cues:
        assert shot.first_chunk <= idx < shot.first_chunk + shot.num_chunks
        assert shot.start_frame / tl.fps <= d.start < d.end <= (shot.start_frame + shot.num_frames) / tl.fps + 1e-9


def test_timeline_json_round_trip(example_path):
    tl = plan(load_story(example_path))
    assert Timeline.from_dict(json.loads(tl.to_json())) == tl
