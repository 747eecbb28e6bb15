"""`longtake bench memory`: the command end to end on a tiny random model, and the scoring on
StoryWorld ground truth where the answer is known (a return that is the same character, and
the same return with other hidden details or swapped colours)."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest
import torch
from typer.testing import CliRunner

from longtake.cli import app
from longtake.eval.memory_bench import background_mask, background_similarity, plan_story, score_story, summarise
from longtake.memory.config import NAM_LOOKAHEAD_S, PROMPT_GATE
from longtake.plan import plan
from longtake.script import Story

runner = CliRunner()
MODES = ("none", "sink", "nam", "nam+sma", "entity")
MIA = {"id": "mia", "name": "Mia", "description": "a woman with short black hair, a red striped shirt and blue trousers"}
LEO = {"id": "leo", "name": "Leo", "description": "a man with curly brown hair, a green checked jacket and glasses"}


def story_with_return(size: int = 128, seconds: float = 2.0) -> Story:
    """Mia in the office, Leo in the park, Mia back in the office: one return (Mia, gap =
    ``seconds``), one revisit (the office)."""
    shot = lambda who, prompt: {"prompt": prompt, "characters": [who], "duration": seconds}  # noqa: E731
    return Story.model_validate({
        "title": "return", "fps": 16, "seed": 5, "size": {"width": size, "height": size},
        "characters": [MIA, LEO], "locations": [{"id": "office"}, {"id": "park"}],
        "scenes": [{"location": "office", "shots": [shot("mia", "Mia stands.")]},
                   {"location": "park", "shots": [shot("leo", "Leo waves.")]},
                   {"location": "office", "shots": [shot("mia", "Mia waves.")]}],
    })


@pytest.fixture(scope="module")
def probes():
    from longtake.eval.errors import EvalError
    from longtake.eval.probes import StoryWorldProbes

    try:
        return StoryWorldProbes.load()
    except EvalError as exc:
        pytest.skip(f"StoryWorld probes not installed: {exc}")


# ----------------------------------------------------------------------------- the command


@pytest.fixture(scope="module")
def tiny_folder(tmp_path_factory) -> Path:
    from longtake.model import CausalWanDiT, get_preset
    from longtake.model.builtin import save_builtin
    from longtake.model.text_builtin import BuiltinTextConfig, BuiltinTextEncoder
    from longtake.model.tokenizer import Tokenizer
    from longtake.model.vae_builtin import BuiltinVAE, BuiltinVAEConfig
    from longtake.sample.schedules import self_forcing_sigmas

    torch.manual_seed(0)
    dit = CausalWanDiT(get_preset("tiny")).eval()
    vae = BuiltinVAE(BuiltinVAEConfig(latent_channels=4, channels=(8, 8, 8, 8), enc_res_blocks=0, dec_res_blocks=(0, 0, 0, 0), norm_groups=4)).eval()
    tok = Tokenizer.build(["mia stands", "leo waves", "mia waves", "office", "park", "setting"])
    text = BuiltinTextEncoder(BuiltinTextConfig(vocab_size=len(tok), dim=32, num_layers=1, num_heads=2, max_tokens=16), tok).eval()
    out = tmp_path_factory.mktemp("models") / "tiny"
    save_builtin(out, dit, vae, text, sigmas=self_forcing_sigmas(2), extra={"note": "random weights for tests"})
    return out


def test_bench_memory_end_to_end_on_a_tiny_model(tiny_folder, probes, tmp_path, monkeypatch):
    from longtake.cli_common import out as console

    monkeypatch.setattr(console, "_width", 400)  # the whole table on one line per row
    path = tmp_path / "story.json"
    path.write_text(story_with_return(size=64, seconds=1.0).model_dump_json())
    out = tmp_path / "out"
    r = runner.invoke(app, ["bench", "memory", "--memory", "none", "sink", "nam", "nam+sma", "entity", "--weights", str(tiny_folder),
                            "--story", str(path), "--min-return-gap", "0.5", "--seed", "3", "--out", str(out)], terminal_width=400)
    assert r.exit_code == 0, r.output
    for label in (*MODES, "ground truth (StoryWorld renderer; ceiling)", "1 story"):
        assert label in r.output
    assert sorted(p.name for p in out.iterdir()) == ["memory_bench.json", "memory_bench.md", "memory_bench.png"]
    res = json.loads((out / "memory_bench.json").read_text())
    assert res["modes"] == list(MODES) and set(res["rows"]) == {*MODES, "ground truth"}
    truth = res["rows"]["ground truth"]
    assert truth["returns"] == 1 and truth["revisits"] == 1 and len(truth["alignment_segments"]) == 3
    assert truth["returns_found"] == 1 and truth["identity"] > 0.8  # the same character, drawn by the renderer
    for m in MODES:
        row = res["rows"][m]
        assert row["frames"] == res["stories"][0]["num_frames"] and row["fps"] > 0
        assert row["returns"] == 1 and row["revisits"] == 1
    assert res["rows"]["sink"]["slowdown_vs_sink_pct"] == 0.0
    assert res["rows"]["sink"]["retrieval"]["frames"] == 0 and res["rows"]["none"]["retrieval"]["shares"]["same_place"] is None
    ent = res["rows"]["entity"]["retrieval"]  # entity memory retrieves by the planner's ids: the place's own frames
    assert ent["frames"] > 0 and 0.0 < ent["shares"]["same_place"] <= 1.0
    md = (out / "memory_bench.md").read_text()
    assert all(f"| {m} |" in md for m in MODES) and "1 story" in md
    assert (out / "memory_bench.png").read_bytes()[:4] == b"\x89PNG"
    assert not [p for p in out.iterdir() if p.name.startswith(".")]  # no temporary files left
    assert "looks_kept" not in res["rows"]["entity"] and "Looks kept" not in md  # a DiT without a figure layer has no looks


def test_no_shot_sink_keeps_the_cache_at_cuts_in_memory_modes(tiny_folder, tmp_path):
    path = tmp_path / "story.json"
    path.write_text(story_with_return(size=64, seconds=1.0).model_dump_json())
    runs = {}
    for flag in ([], ["--no-shot-sink"]):
        out = tmp_path / f"out{len(flag)}"
        r = runner.invoke(app, ["bench", "memory", "--memory", "sink", "nam", "--weights", str(tiny_folder), "--story", str(path),
                                "--min-return-gap", "0.5", "--out", str(out), *flag], terminal_width=400)
        assert r.exit_code == 0, r.output
        runs[bool(flag)] = json.loads((out / "memory_bench.json").read_text())
    shot = {k: v["generators"]["nam"]["settings"]["memory"]["shot_sink"] for k, v in runs.items()}
    assert shot == {False: True, True: False} and runs[True]["settings"]["shot_sink"] is False
    assert runs[True]["generators"]["sink"] == runs[False]["generators"]["sink"]  # sink-only has no shot sink either way
    nam = runs[False]["generators"]["nam"]["settings"]["memory"]
    assert (nam["nam_score"], nam["nam_gate"]) == ("prompt", PROMPT_GATE) and runs[False]["settings"]["nam"] == {"score": "prompt", "gate": PROMPT_GATE, "lookahead_s": NAM_LOOKAHEAD_S}
    assert nam["nam_lookahead"] == NAM_LOOKAHEAD_S


def test_nam_score_option_reaches_the_nam_bank(tiny_folder, tmp_path):
    path = tmp_path / "story.json"
    path.write_text(story_with_return(size=64, seconds=1.0).model_dump_json())
    out = tmp_path / "out"
    r = runner.invoke(app, ["bench", "memory", "--memory", "nam", "--weights", str(tiny_folder), "--story", str(path),
                            "--min-return-gap", "0.5", "--out", str(out), "--nam-score", "memflow"], terminal_width=400)
    assert r.exit_code == 0, r.output
    res = json.loads((out / "memory_bench.json").read_text())
    nam = res["generators"]["nam"]["settings"]["memory"]
    assert (nam["nam_score"], nam["nam_gate"]) == ("memflow", None) and res["settings"]["nam"] == {"score": "memflow", "gate": None, "lookahead_s": 0.0}
    assert res["settings"]["entity_gate"] == PROMPT_GATE and res["generators"]["nam"]["settings"]["memory"]["entity_gate"] == PROMPT_GATE


@pytest.mark.parametrize("args, message", [
    (["--memory", "sink", "ram"], "unknown memory mode 'ram'"),
    (["--memory", "sink,bogus"], "unknown memory mode 'bogus'"),
    (["--stories", "0"], "--stories 0: expected at least 1"),
    (["--weights", "/no/such/folder"], "no such folder"),
    (["--memory", "sink", "--entity-figures"], "--entity-figures changes the entity mode"),
    (["--nam-score", "clip"], "--nam-score 'clip': expected prompt or memflow"),
    (["--nam-score", "memflow", "--nam-gate", "0.5"], "--nam-gate 0.5: expected a cosine similarity"),
    (["--nam-gate", "2"], "--nam-gate 2.0: expected a cosine similarity"),
    (["--entity-gate", "3"], "--entity-gate 3.0: expected a cosine similarity"),
    (["--long-returns", "--first", "10", "--stories", "10"], "storyworld-bench-long has 16 stories"),
    (["--long-returns", "--story", "x.yaml"], "--long-returns runs storyworld-bench-long; --story runs your own scripts"),
])
def test_bad_input_is_one_line_and_exit_2(args, message):
    r = runner.invoke(app, ["bench", "memory", *args])
    assert r.exit_code == 2
    lines = [ln for ln in r.output.splitlines() if ln.strip()]
    assert len(lines) == 1 and message in lines[0] and lines[0].startswith("error:")


def test_looks_kept_compares_the_layers_look_at_first_appearance_and_return():
    from longtake.bench_memory import looks_kept
    from longtake.eval.memory_bench import ReturnCase

    story = story_with_return(size=64, seconds=1.0)
    tl = plan(story)
    per = tl.chunks[0].num_frames
    case = lambda who, first, back: ReturnCase(who, who, first, back, 2.0, 1.0, True)  # noqa: E731
    plan_ = type("P", (), {"returns": [case("mia", (1,), (2 * per + 1,)), case("leo", (per,), (2 * per,)), case("mia", (), (2 * per,))]})()
    looks = [{"mia": 5, "leo": 3}, {"mia": 5, "leo": 3}, {"mia": 5, "leo": 9}] + [{}] * (len(tl.chunks) - 3)
    # mia keeps seed 5; leo's look was drawn again (3 -> 9); a side with no frame judged is not kept
    assert looks_kept(plan_, tl, looks) == [True, False, False]
    assert looks_kept(plan_, tl, [{}] * len(tl.chunks)) is None  # no figure layer: nothing to say


def test_bench_counts_the_looks_entity_memory_keeps_with_the_shipped_model(probes, tmp_path):
    path = tmp_path / "story.json"
    path.write_text(story_with_return(size=128, seconds=1.0).model_dump_json())
    out = tmp_path / "out"
    r = runner.invoke(app, ["bench", "memory", "--memory", "sink", "entity", "--story", str(path), "--min-return-gap", "0.5",
                            "--out", str(out)], terminal_width=400)
    assert r.exit_code == 0, r.output
    res = json.loads((out / "memory_bench.json").read_text())
    assert res["rows"]["entity"]["looks_kept"] == [1, 1]  # entity memory keeps Mia's record, so her look
    assert res["stories"][0]["scores"]["entity"]["looks_kept"] == [True]
    assert "looks_kept" not in res["rows"]["ground truth"] and len(res["rows"]["sink"]["looks_kept"]) == 2
    assert "Looks kept at returns" in r.output and "entity 1/1" in (out / "memory_bench.md").read_text()


def test_long_returns_runs_the_long_set_judged_from_65_s(tiny_folder, monkeypatch):
    import longtake.bench_memory as bm
    from longtake.world.bench_set import make_long_bench

    seen = {}

    def fake_run(stories, generators, probes, **kw):  # record what the command asks for, render nothing
        seen.update(stories=stories, modes=list(generators), **kw)
        raise SystemExit(0)

    monkeypatch.setattr(bm, "run_memory_bench", fake_run)
    r = runner.invoke(app, ["bench", "memory", "--long-returns", "--memory", "sink", "entity", "--first", "2", "--stories", "3",
                            "--weights", str(tiny_folder), "--seed", "7"])
    assert r.exit_code == 0, r.output
    expect = [it.story.content_hash() for it in make_long_bench(5)[2:]]
    assert [s.content_hash() for s in seen["stories"]] == expect and all(s.duration == 180.0 for s in seen["stories"])
    assert (seen["name"], seen["min_return_gap"], seen["seed"], seen["modes"]) == ("storyworld-bench-long", 65.0, 9, ["sink", "entity"])
    assert seen["settings"]["stories_from"] == "storyworld-bench-long" and seen["settings"]["first"] == 2


# ----------------------------------------------------------------------------- scoring


def _render(story: Story, *, swap: str | None = None, mode: str = "hidden", after: int = 0):
    """Ground truth of ``story``; with ``swap``, that character looks different from frame
    ``after`` on: ``mode="hidden"`` another seed's hidden details (shoes, badge, skin...; the
    caption is the same), ``mode="colours"`` her pixels' red and blue channels exchanged."""
    from longtake.world.characters import figure_height
    from longtake.world.renderer import WorldRenderer
    from longtake.world.vocab import draw_hidden

    tl = plan(story)
    truth, other = WorldRenderer(story), WorldRenderer(story)
    if swap and mode == "hidden":
        other.hidden[swap] = draw_hidden(991, swap)
        other.fig_h[swap] = figure_height(other.height, other.appearance[swap], other.hidden[swap])
    frames, truths = [], []
    for chunk in tl.chunks:
        f, tr = truth.render_chunk(chunk, masks=True)
        if swap and chunk.start_frame >= after:
            if mode == "hidden":
                f = other.render_chunk(chunk, masks=False)[0]
            else:
                f = f.copy()
                for k, t in enumerate(tr):
                    m = t.mask == truth.labels[swap]
                    f[k][m] = f[k][m][:, ::-1]
        frames.append(f)
        truths += tr
    return story, tl, truths, np.concatenate(frames)


def _score(probes, story, tl, truths, frames):
    p = plan_story(story, tl, truths, min_return_gap=1.0)
    return p, score_story(probes, p, {f: frames[f] for f in p.frames})


def test_plan_finds_the_return_and_the_revisit():
    story, tl, truths, _ = _render(story_with_return())
    p = plan_story(story, tl, truths, min_return_gap=1.0)
    assert [(c.character, c.same_location) for c in p.returns] == [("mia", True)]
    shots = tl.shots
    assert p.returns[0].gap_s >= 1.0 and p.returns[0].back_at_s == shots[2].start_frame / tl.fps
    assert max(p.returns[0].first) < shots[1].start_frame <= shots[2].start_frame <= min(p.returns[0].back)
    assert [c.location for c in p.revisits] == ["office"] and [s.prompts[0][0] for s in p.segments] == [c.prompt for c in tl.chunks if c.cut or c.index == 0]
    assert not plan_story(story, tl, truths, min_return_gap=5.0).returns  # a 2 s absence is not a 5 s one


def test_ground_truth_return_matches_and_swapped_hidden_details_do_not(probes):
    story = story_with_return()
    _, tl, truths, gt = _render(story)
    _, base = _score(probes, story, tl, truths, gt)
    ret = base["returns"][0]
    assert ret["found"] and ret["similarity"] > 0.85 and ret["passes"] and ret["attributes_equal"] >= 0.75
    back = min(c.start_frame for c in tl.chunks if c.shot == 2)
    _, _, _, hid = _render(story, swap="mia", mode="hidden", after=back)
    _, swapped = _score(probes, story, tl, truths, hid)
    s = swapped["returns"][0]
    assert s["found"] and s["similarity"] < ret["similarity"] - 0.15  # same caption, other hidden details
    assert s["hidden_equal"] < ret["hidden_equal"]


def test_swapped_colours_lower_identity_and_attributes(probes):
    story = story_with_return()
    _, tl, truths, gt = _render(story)
    _, base = _score(probes, story, tl, truths, gt)
    back = min(c.start_frame for c in tl.chunks if c.shot == 2)
    _, _, _, col = _render(story, swap="mia", mode="colours", after=back)
    p, swapped = _score(probes, story, tl, truths, col)
    a, s = base["returns"][0], swapped["returns"][0]
    # red shirt -> blue, blue trousers -> red: the probes may no longer accept her as Mia at all
    assert not s["found"] or (s["similarity"] < a["similarity"] - 0.15 and s["attributes_equal"] < a["attributes_equal"])
    assert summarise([swapped])["identity_pass"] < summarise([base])["identity_pass"] or s["similarity"] < a["similarity"]
    # the revisit's background is untouched by her colours: outside the boxes it is the same
    assert swapped["revisits"][0]["background"] == pytest.approx(base["revisits"][0]["background"], abs=0.02)


def test_background_similarity_ignores_the_boxes_and_sees_another_place():
    story = story_with_return()
    _, tl, truths, gt = _render(story)
    i, j, k = (s.start_frame + 10 for s in tl.shots)  # office, park, office again (static camera)
    a, b = gt[i], gt[k]
    ma = background_mask(a.shape[:2], [c.bbox for c in truths[i].characters if c.bbox])
    mb = background_mask(b.shape[:2], [c.bbox for c in truths[k].characters if c.bbox])
    same = background_similarity(a, b, ma, mb)
    assert same > 0.9
    scribbled = a.copy()
    scribbled[~ma] = 255 - scribbled[~ma]  # only inside the boxes: not looked at
    assert background_similarity(scribbled, a, ma, ma) == pytest.approx(1.0)
    park = gt[j]
    mp = background_mask(park.shape[:2], [c.bbox for c in truths[j].characters if c.bbox])
    assert background_similarity(a, park, ma, mp) < same - 0.2


def test_summary_counts_a_character_not_found_as_a_miss():
    ret = lambda sim, found=True: {"found": found, "similarity": sim if found else None, "passes": found and sim >= 0.68,  # noqa: E731
                                   "attributes_equal": 1.0 if found else None, "hidden_equal": 0.5 if found else None, "same_location": True}
    story = {"returns": [ret(0.9), ret(0.5), ret(0.0, found=False)],
             "revisits": [{"consistent": True, "right": True, "background": 0.8}, {"consistent": False, "right": False, "background": 0.6}],
             "segments": [{"alignment": 0.5}, {"alignment": None}]}
    s = summarise([story, {"returns": [], "revisits": [], "segments": [{"alignment": 0.7}]}])
    assert s["returns"] == 3 and s["returns_found"] == 2
    assert s["identity"] == pytest.approx(0.7) and s["identity_pass"] == pytest.approx(1 / 3)
    assert s["location_consistent"] == 0.5 and s["background"] == pytest.approx(0.7)
    assert s["alignment_segments"] == [pytest.approx(0.6), None]


def test_an_items_colour_counts_only_where_both_sides_read_the_item():
    """The probe's badge, bag and hat colour heads are trained only on figures with the item
    (docs/probes.md); a reading of an absent item's colour is dropped, and a badge on one side
    only is one difference (its shape), not three."""
    from longtake.eval.memory_bench import hidden_equal
    from longtake.eval.probe_data import comparable_hidden, drawn_hidden, hidden_majority

    raw = {"skin_tone": "2", "badge_shape": "none", "badge_colour": "red", "badge_side": "left",
           "bag": "backpack", "bag_colour": "blue", "hat_colour": "grey", "watch": "no"}
    assert drawn_hidden(raw, {"hat": "none"}) == {"skin_tone": "2", "badge_shape": "none", "bag": "backpack", "bag_colour": "blue", "watch": "no"}
    assert drawn_hidden(raw, {"hat": "cap"})["hat_colour"] == "grey"
    assert "bag_colour" not in drawn_hidden({**raw, "bag": "none"}, {"hat": "none"})

    with_badge = {"skin_tone": "2", "badge_shape": "circle", "badge_colour": "red", "badge_side": "left", "watch": "no"}
    without = {"skin_tone": "2", "badge_shape": "none", "watch": "no"}
    assert comparable_hidden(with_badge, without) == ["badge_shape", "skin_tone", "watch"]
    assert hidden_equal(with_badge, without) == pytest.approx(2 / 3)
    assert hidden_equal(with_badge, {**with_badge, "badge_colour": "blue"}) == pytest.approx(4 / 5)
    # an item's colour is voted among the readings that see the item, and kept when at least half do
    assert hidden_majority([with_badge, without, {**with_badge, "badge_colour": "blue", "badge_side": "right"}]) == {
        "badge_colour": "red", "badge_shape": "circle", "badge_side": "left", "skin_tone": "2", "watch": "no"}
    assert "badge_colour" not in hidden_majority([with_badge, without, without])

    # the summary counts the compared readings and the misses per detail over the found returns
    found = lambda a, b: {"found": True, "similarity": 0.9, "passes": True, "attributes_equal": 1.0,  # noqa: E731
                          "hidden_equal": hidden_equal(a, b), "same_location": True, "hidden_first": a, "hidden_back": b}
    lost = {"found": False, "similarity": None, "passes": False, "attributes_equal": None, "hidden_equal": None, "same_location": True}
    s = summarise([{"returns": [found(with_badge, without), found(with_badge, {**with_badge, "badge_colour": "blue"}), lost],
                    "revisits": [], "segments": []}])
    assert (s["hidden_readings_equal"], s["hidden_readings"]) == (2 + 4, 3 + 5)
    assert s["hidden_misses"] == {"badge_shape": 1, "badge_colour": 1}


def test_probes_report_no_colour_for_an_item_they_do_not_see(probes):
    """Shipped probes on ground-truth frames: an instance without a hat, badge or bag reading
    has no hat, badge or bag colour; one with them has."""
    story = story_with_return()
    _, tl, truths, gt = _render(story)
    seen = set()
    for found in probes.instances(gt[:: max(1, len(gt) // 24)]):
        for inst in found:
            for key, item, absent, where in (("hat_colour", "hat", "none", inst.attributes), ("badge_colour", "badge_shape", "none", inst.hidden),
                                              ("bag_colour", "bag", "none", inst.hidden)):
                assert (key in inst.hidden) == (where[item] != absent), (key, inst.attributes, inst.hidden)
                seen.add((key, key in inst.hidden))
    assert len(seen) >= 2  # some item seen present or absent at least
