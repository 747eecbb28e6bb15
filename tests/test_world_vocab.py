"""StoryWorld vocabulary: parsing, round trips, hidden details, story checks."""

from __future__ import annotations

import itertools

import pytest

from longtake.script.schema import Story
from longtake.world.errors import WorldError
from longtake.world.vocab import (
    ACTIONS, BODIES, HAIR_COLOURS, HAIR_STYLES, HATS, LOCATIONS, TOP_COLOURS, TOP_GARMENTS, TOP_PATTERNS,
    TROUSER_COLOURS, Appearance, check_story, draw_hidden, parse_actions, parse_appearance, parse_location,
    resolve_appearance, vocabulary,
)


def _story(prompt: str = "Mia waves", description: str = "a woman with short black hair", location: str = "office") -> Story:
    return Story.model_validate({
        "title": "t", "characters": [{"id": "mia", "name": "Mia", "description": description}, {"id": "leo", "name": "Leo"}],
        "locations": [{"id": location, "name": ""}],
        "scenes": [{"location": location, "shots": [{"prompt": "Mia sits down", "characters": ["mia"], "duration": 1}, {"prompt": prompt, "characters": ["mia", "leo"], "duration": 1}]}],
    })


def test_vocabulary_sizes():
    assert len(LOCATIONS) >= 8 and len(ACTIONS) >= 8
    v = vocabulary()
    assert set(v["locations"]) == set(LOCATIONS) and "walks in from the left" in v["actions"].values()


def test_appearance_round_trip_all_values():
    combos = itertools.product(BODIES, HAIR_STYLES, TOP_GARMENTS)
    for i, (body, style, garment) in enumerate(combos):
        a = Appearance(body, HAIR_COLOURS[i % len(HAIR_COLOURS)], style, TOP_COLOURS[i % len(TOP_COLOURS)], TOP_PATTERNS[i % 4], garment,
                       TROUSER_COLOURS[i % len(TROUSER_COLOURS)], glasses=bool(i % 2), hat=(None, *HATS)[i % 4])
        assert parse_appearance(a.describe()) == a, a.describe()
    for partial in (Appearance(), Appearance(body="man"), Appearance(top_colour="red"), Appearance(hair_style="bald", glasses=True)):
        assert parse_appearance(partial.describe()) == partial


def test_describe_canonical():
    a = Appearance("woman", "black", "short", "red", "striped", "shirt", "blue", glasses=True)
    assert a.describe() == "a woman with short black hair, a red striped shirt, blue trousers and glasses"


def test_unspecified_filled_deterministically():
    a = parse_appearance("a man with glasses")
    assert a.hair_colour is None and "hair_colour" in a.unspecified()
    r1, r2 = resolve_appearance(a, 3, "leo"), resolve_appearance(a, 3, "leo")
    assert r1 == r2 and r1.body == "man" and r1.glasses and not r1.unspecified()


def test_hidden_details_deterministic_and_distinct():
    assert draw_hidden(1, "mia") == draw_hidden(1, "mia")
    assert draw_hidden(1, "mia") != draw_hidden(2, "mia")
    assert len({draw_hidden(1, f"c{i}") for i in range(10)}) == 10


def test_parse_location():
    assert parse_location("street_night") == "street_night"
    assert parse_location("a dark street with lamps") == "street_night"
    assert parse_location("the park") == "park"
    assert parse_location("the moon") is None


def test_parse_actions_grammar():
    names = {"Mia": "mia", "Leo": "leo"}
    assert parse_actions("Mia walks in from the left and sits down", names) == {"mia": ["walk_in_left", "sit"], "leo": ["idle"]}
    assert parse_actions("Leo walks in from the right and waves at Mia", names) == {"mia": ["idle"], "leo": ["walk_in_right", "wave"]}
    assert parse_actions("Mia and Leo wave. Then Leo jumps", names) == {"mia": ["wave"], "leo": ["wave", "jump"]}
    assert parse_actions("Leo walks in the park", names)["leo"] == ["walk"]
    with pytest.raises(WorldError, match="dances"):
        parse_actions("Mia dances", names)


def test_check_story_names_word_and_close_match():
    check_story(Story.load("examples/office_day.yaml"))
    with pytest.raises(WorldError) as err:
        check_story(_story(prompt="Mia dances"))
    msg = str(err.value)
    assert "scenes[0].shots[1].prompt: unknown action 'dances'" in msg and "'dances'->'" in msg
    with pytest.raises(WorldError, match=r"characters\[0\].description: unknown word 'purpel'.*purple"):
        check_story(_story(description="a woman with a purpel shirt"))
    with pytest.raises(WorldError, match=r"locations\[0\]"):
        check_story(_story(location="moon"))
