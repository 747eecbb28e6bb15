"""Importers: plain text, LongLive/MemFlow prompt files (JSONL) and Fountain screenplays."""

import pytest

from longtake.plan.planner import plan
from longtake.script import ScriptError, load_story, loads_story
from longtake.script.importers.fountain import MAX_SHOT_SECONDS, MIN_SHOT_SECONDS, parse_fountain, slug
from longtake.script.importers.prompts import parse_prompts
from longtake.script.importers.text import DEFAULT_SHOT_SECONDS, parse_text

from conftest import DATA

GOOD = DATA / "good"


def error(text: str, fmt: str) -> ScriptError:
    with pytest.raises(ScriptError) as info:
        loads_story(text, format=fmt, name="s")
    assert type(info.value) is ScriptError
    return info.value


def shots(story):
    return [(shot.prompt, shot.duration) for _, _, shot in story.shots()]


# --- plain text --------------------------------------------------------------------------------


def test_text_defaults():
    story = loads_story("A dog runs\nA dog sleeps [2.5s]\n", format="text")
    assert shots(story) == [("A dog runs", DEFAULT_SHOT_SECONDS), ("A dog sleeps", 2.5)]
    assert DEFAULT_SHOT_SECONDS == 5.0
    assert story.title == "Untitled story" and story.characters == []
    assert [loc.id for loc in story.locations] == ["scene"] and story.locations[0].name == "the scene"


def test_text_header_and_tags():
    story = load_story(GOOD / "shots.txt")
    assert (story.title, story.fps, story.size.width, story.size.height, story.seed) == ("The lighthouse", 16, 128, 128, 3)
    assert story.style == "watercolour, soft evening light"
    first = story.scenes[0].shots[0]
    assert (first.prompt, first.duration, first.camera) == ("A lighthouse on a cliff above a grey sea", 6.0, "zoom_in")
    keeper = story.scenes[1]
    assert keeper.location == "keeper_room" and keeper.shots[0].transition == "fade"
    assert story.location("keeper_room").description == "a small round room at the top of the lighthouse"


def test_text_tag_anywhere_and_unknown_brackets_kept():
    story = loads_story("She [3 sec] reads [sic] a letter [tilt_up]\n", format="text")
    shot = story.scenes[0].shots[0]
    assert (shot.prompt, shot.duration, shot.camera) == ("She reads [sic] a letter", 3.0, "tilt_up")


def test_text_comments_blank_lines_and_a_shot_that_looks_like_a_header():
    story = loads_story("# hi\n\nNight: the city sleeps\n   \n# bye\n", format="text")
    assert shots(story) == [("Night: the city sleeps", 5.0)]


def test_text_location_switch_back_and_forth():
    story = loads_story("@beach: sand and sea\nwaves\n@town\nstreets\n@beach\nmore waves\n", format="text")
    assert [s.location for s in story.scenes] == ["beach", "town", "beach"]
    assert [loc.id for loc in story.locations] == ["beach", "town"]


def test_text_marks_point_at_tags():
    data, marks = parse_text("title: t\n\n  walk [pan_left] [2s]\n")
    assert data["scenes"][0]["shots"][0] == {"prompt": "walk", "duration": 2.0, "camera": "pan_left"}
    assert marks[("scenes", 0, "shots", 0, "prompt")] == (3, 3)
    assert marks[("scenes", 0, "shots", 0, "camera")] == (3, 8)
    assert marks[("scenes", 0, "shots", 0, "duration")] == (3, 19)
    assert marks[("title",)] == (1, 8)


def test_text_per_second_merges_runs():
    story = load_story(GOOD / "per_second.txt")
    assert shots(story) == [
        ("A cat sleeps on a sunny windowsill", 4.0),
        ("The cat wakes and stretches", 2.0),
        ("The cat jumps down to the floor", 1.0),
        ("A cat sleeps on a sunny windowsill", 1.0),
    ]
    assert story.duration == 8.0


def test_text_per_second_planned_in_whole_chunks():
    story = loads_story("mode: per-second\n" + "a\n" * 3 + "b\n" * 3, format="text")
    timeline = plan(story, frames_per_chunk=12)
    assert timeline.num_frames == 6 * 16
    assert [span.num_chunks for span in timeline.shots] == [4, 4]


@pytest.mark.parametrize(
    "text, needle, line",
    [
        ("a [2s] [3s]\n", "two duration tags", 1),
        ("title: a\ntitle: b\nx\n", "header 'title' given twice", 2),
        ("x\nstyle: noir\n", "header 'style' after the first shot", 2),
        ("mode: every-second\nx\n", "unknown mode", 1),
        ("@Beach\nx\n", "bad location id 'Beach'", 1),
        ("@beach: sand\nx\n@beach: rocks\ny\n", "described again", 3),
        ("ok\n[4s] [fade]\n", "tags but no text", 2),
        ("mode: per-second\na\na [2s]\n", "per-second mode", 3),
        ("size: 128 x\nx\n", "WIDTHxHEIGHT", 1),
        ("styel: noir\nx\n", "did you mean 'style'", 1),
    ],
)
def test_text_errors(text, needle, line):
    err = error(text, "text")
    assert needle in str(err) and err.issues[0].line == line


def test_text_schema_errors_point_at_lines():
    err = error("title: t\nfps: 0\na\n", "text")
    assert err.issues[0].path == ("fps",) and err.issues[0].line == 2
    err = error("@beach\n@town\nx\n", "text")
    assert err.issues[0].path == ("scenes", 0, "shots") and err.issues[0].line == 1


# --- LongLive / MemFlow prompt files -------------------------------------------------------------


def test_prompts_switch_indices_to_seconds():
    story = load_story(GOOD / "prompts.jsonl")
    assert [d for _, d in shots(story)] == [10.0] * 6 and story.duration == 60.0
    assert story.scenes[0].shots[1].prompt == "She stops and picks up a shell"


def test_prompts_uneven_switches_and_total():
    line = '{"prompts": ["a", "b", "c"], "switch_frame_indices": [20, 60], "num_output_frames": 120}'
    data, _ = parse_prompts(line)
    # latent k -> pixel 4k -> 4k/16 s: switches at 5 s and 15 s, end at 30 s
    assert [s["duration"] for s in data["scenes"][0]["shots"]] == [5.0, 10.0, 15.0]
    data, _ = parse_prompts('{"prompts": ["a", "b"], "switch_frame_indices": [24], "fps": 24, "duration": 10}')
    assert [s["duration"] for s in data["scenes"][0]["shots"]] == [4.0, 6.0]
    data, _ = parse_prompts('{"prompts": ["a", "b"], "switch_frame_indices": [20]}')
    assert [s["duration"] for s in data["scenes"][0]["shots"]] == [5.0, 5.0]  # last = mean of earlier


def test_prompts_equal_split_without_switches():
    data, _ = parse_prompts('{"prompts": ["a", "b", "c", "d"], "duration": 20}')
    assert [s["duration"] for s in data["scenes"][0]["shots"]] == [5.0] * 4
    data, _ = parse_prompts('{"prompts": ["a", "b"]}')
    assert [s["duration"] for s in data["scenes"][0]["shots"]] == [10.0, 10.0]


def test_prompts_index_picks_a_line_and_skips_blank_lines():
    text = (GOOD / "prompts.jsonl").read_text()
    data, marks = parse_prompts(text, index=2)
    assert data["title"] == "Lantern" and marks[("scenes", 0, "shots", 0)][0] == 4
    data, _ = parse_prompts(text, index=1)
    assert [s["duration"] for s in data["scenes"][0]["shots"]] == [6.0, 6.0]
    with pytest.raises(ScriptError, match="index 3 is out of range; the file holds 3"):
        parse_prompts(text, index=3)


def test_prompts_extra_keys_ignored():
    story = loads_story('{"prompts": ["a cat"], "id": 17, "caption": "x", "seed": 5}', format="prompts")
    assert story.seed == 5 and story.title == "Prompt sequence 1"


@pytest.mark.parametrize(
    "text, needle, line",
    [
        ('{"prompts": ["a"]}\nnot json\n', "malformed JSON", 2),
        ('{"prompt": ["a"]}', "did you mean 'prompts'", 1),
        ('{"title": "x"}', "missing 'prompts'", 1),
        ('{"prompts": ["a", 3]}', "prompts[1] must be a string", 1),
        ('{"prompts": ["a", "b"], "switch_frame_indices": [true]}', "list of integers", 1),
        ('{"prompts": ["a", "b"], "switch_frame_indices": [0]}', "strictly increasing and above 0", 1),
        ('{"prompts": ["a", "b"], "switch_frame_indices": 40}', "list of integers", 1),
        ('{"prompts": ["a"], "duration": 5, "num_output_frames": 20}', "not both", 1),
        ('{"prompts": ["a"], "duration": -5}', "positive number of seconds", 1),
        ('{"prompts": ["a"], "num_output_frames": 2.5}', "positive integer", 1),
        ('{"prompts": ["a", "b"], "switch_frame_indices": [40], "num_output_frames": 40}', "expected a longer 'num_output_frames'", 1),
        ('{"prompts": ["a"], "fps": "16"}', "'fps' must be an integer", 1),
        ("\n\n", "empty prompt file", 1),
        ('{"prompts": ["a"]}\n{"prompts": ' + "1" * 5000 + "}\n", "malformed JSON", 2),
    ],
)
def test_prompts_errors(text, needle, line):
    err = error(text, "prompts")
    assert needle in str(err) and err.issues[0].line == line


def test_prompts_error_column_names_the_key():
    err = error('{"prompts": ["a", "b"], "switch_frame_indices": [1, 2]}', "prompts")
    assert err.issues[0].column == 25 and err.issues[0].path == ("switch_frame_indices",)


# --- Fountain ------------------------------------------------------------------------------------


def test_fountain_good_screenplay():
    story = load_story(GOOD / "screenplay.fountain")
    assert story.title == "Mia's long day"
    assert [(c.id, c.name) for c in story.characters] == [("leo", "Leo"), ("mia", "Mia")]
    assert [(loc.id, loc.name) for loc in story.locations] == [("office", "Office"), ("park", "Park")]
    assert [s.location for s in story.scenes] == ["office", "park", "office"]
    assert [s.title for s in story.scenes] == ["INT. OFFICE - DAY", "EXT. PARK - DAY", "INT. OFFICE - LATER"]
    first = story.scenes[0].shots[0]
    assert first.prompt.startswith("Mia, a woman with short black hair")  # MIA -> Mia for the planner
    assert first.transition == "fade"  # FADE IN:
    assert [(d.speaker, d.text) for d in first.dialogue] == [("leo", "Good morning!"), ("mia", "Morning, Leo.")]
    assert set(first.characters) == {"mia", "leo"}
    second = story.scenes[0].shots[1]
    assert second.prompt == "Mia stands and walks out to the right."  # boneyard and note removed
    assert second.characters == ["mia"]
    assert story.scenes[1].shots[0].transition == "cut"
    assert story.scenes[2].shots[0].transition == "fade"  # > DISSOLVE TO:
    assert story.scenes[2].shots[0].dialogue[0].text == "Some days are longer than others."


def test_fountain_duration_estimate():
    words = "word " * 20
    data, _ = parse_fountain(f"INT. ROOM\n\n{words}\n\nShort.\n\n{'word ' * 500}\n")
    durations = [s["duration"] for s in data["scenes"][0]["shots"]]
    assert durations == [20 / 2.5, MIN_SHOT_SECONDS, MAX_SHOT_SECONDS]


def test_fountain_heading_forms_and_location_reuse():
    text = (
        "INT./EXT. CAR - MOVING\n\na\n\nI/E CAR - LATER\n\nb\n\nEST. CITY #12A#\n\nc\n\n"
        ".CAR\n\nd\n\nint. mia's flat - night\n\ne\n\nEXT. CAFÉ 2 – DAY\n\nf\n"
    )
    story = loads_story(text, format="fountain")
    assert [s.location for s in story.scenes] == ["car", "car", "city", "car", "mia_s_flat", "cafe_2"]
    assert story.location("mia_s_flat").name == "mia's flat"
    assert story.scenes[2].title == "EST. CITY"


def test_fountain_heading_only_scene_gets_an_establishing_shot():
    story = loads_story("EXT. HARBOUR - DUSK\n\nINT. BOAT - NIGHT\n\nWaves.\n", format="fountain")
    assert shots(story)[0] == ("Harbour, dusk", 3.0)


def test_fountain_dialogue_forms():
    text = "INT. BAR - NIGHT\n\n@McCLANE\n(quietly)\nYippee.\n\nHANS (O.S.) ^\nNow.\n~Sung line.\n\nHANS\n(nods)\n"
    story = loads_story(text, format="fountain")
    assert [(c.id, c.name) for c in story.characters] == [("mcclane", "McCLANE"), ("hans", "Hans")]
    shot = story.scenes[0].shots[0]
    assert shot.prompt == "McCLANE speaks"  # dialogue opened the scene
    assert [(d.speaker, d.text) for d in shot.dialogue] == [("mcclane", "Yippee."), ("hans", "Now. Sung line.")]
    assert shot.characters == ["mcclane", "hans"]


def test_fountain_ignored_elements_and_emphasis():
    text = (
        "# Act one\n\n= a synopsis\n\nINT. ROOM\n\n*Bold* and _underlined_ \\*stars\\*.\n\n===\n\n"
        ">THE END<\n\n!SHOUTING IN ACTION\nstill action\n"
    )
    story = loads_story(text, format="fountain")
    assert [p for p, _ in shots(story)] == ["Bold and underlined *stars*.", "SHOUTING IN ACTION still action"]


def test_fountain_boneyard_keeps_line_numbers():
    text = "INT. ROOM\n\n/* one\ntwo\nthree */\n\nA " + "x" * 4001 + "\n"
    err = error(text, "fountain")
    assert err.issues[0].path == ("scenes", 0, "shots", 0, "prompt") and err.issues[0].line == 7


def test_fountain_without_headings_uses_one_place():
    story = loads_story("Title:\n    A long\n    title\n\nA bird sings.\n\nBIRD\nTweet.\n", format="fountain")
    assert story.title == "A long title"
    assert [loc.id for loc in story.locations] == ["scene"]
    assert story.scenes[0].shots[0].characters == ["bird"]


def test_fountain_place_named_like_a_character_gives_way():
    story = loads_story("INT. BAR - NIGHT\n\nBAR\nWelcome.\n", format="fountain")
    assert story.characters[0].id == "bar" and story.scenes[0].location == "bar_place"


def test_fountain_spmd_suffix(tmp_path):
    path = tmp_path / "play.spmd"
    path.write_text("EXT. FIELD - DAY\n\nGrass sways.\n")
    assert load_story(path).scenes[0].location == "field"


@pytest.mark.parametrize(
    "text, needle, line",
    [
        ("", "empty screenplay", 1),
        ("Title: Nothing\n\n[[just a note]]\n", "empty screenplay", 1),
        ("INT. A\n\nx\n\n[[ open note\n", "unterminated note", 5),
        ("INT. A\n\nx /* open\n", "unterminated boneyard", 3),
        ("INT. A\n\nx\n\nEXT.\n\ny\n", "names no place", 5),
    ],
)
def test_fountain_errors(text, needle, line):
    err = error(text, "fountain")
    assert needle in str(err) and err.issues[0].line == line


def test_slug():
    assert slug("Dr. Smith", "c") == "dr_smith"
    assert slug("JOSÉ", "c") == "jose"
    assert slug("2ND COP", "character") == "character_2nd_cop"
    assert slug("李", "character") == "character"
    assert len(slug("A" * 100, "c")) == 64
