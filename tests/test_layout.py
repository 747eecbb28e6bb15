"""Entity layout (model/layout.py): boxes from slot maps, the prior, the DiT's layout input,
the latents' slot maps, and a generator that places the prompt's characters."""

from __future__ import annotations

import pytest
import torch

from longtake.model.config import get_preset
from longtake.model.dit import CausalWanDiT
from longtake.model.errors import ModelError
from longtake.model.layout import (
    FigurePainter,
    LayoutPrior,
    box_coordinates,
    boxes_from_slots,
    estimate_prior,
    frame_boxes,
    introduced,
    name_embeddings,
    slot_names,
)
from longtake.model.tokenizer import Tokenizer

PROMPT = "Ann (a woman with red hair) talks to Bob (a man in a blue shirt). Setting: office."


def test_introduced_names_their_token_and_description():
    tok = Tokenizer.build([PROMPT])
    found = introduced(PROMPT, tok.tokens, 64)
    assert [(n, d) for n, _, d in found] == [("Ann", "a woman with red hair"), ("Bob", "a man in a blue shirt")]
    tokens = tok.tokens(PROMPT)
    assert [tokens[p] for _, p, _ in found] == [tok.tokens("Ann")[0], tok.tokens("Bob")[0]]
    assert [p for _, p, _ in introduced(PROMPT, tok.tokens, 3)] == [0, -1]  # Bob is cut off
    assert slot_names(PROMPT) == ["Ann", "Bob"]
    emb = torch.randn(1, 64, 8)
    names = name_embeddings(emb, [PROMPT], tok.tokens, 3, num_slots=3)  # (1, E, D)
    torch.testing.assert_close(names[0, 0], emb[0, 0])
    assert names[0, 1:].abs().sum() == 0  # cut off, and no third character


def test_boxes_from_slots_are_each_slots_bounding_box_per_frame():
    slots = torch.zeros(1, 2, 8, 8, dtype=torch.long)
    slots[0, 0, 2:5, 1] = 1
    slots[0, 0, 3, 3] = 1  # box rows 2..4, cols 1..3
    slots[0, 0, 6, 6] = 2
    slots[0, 1, 0, 0] = 2  # slot 1 absent in frame 1
    box = boxes_from_slots(slots, 3, dilate=0)  # (1, E, F, H, W)
    assert box.shape == (1, 3, 2, 8, 8)
    want = torch.zeros(8, 8)
    want[2:5, 1:4] = 1
    torch.testing.assert_close(box[0, 0, 0], want)
    assert box[0, 0, 1].sum() == 0 and box[0, 2].sum() == 0
    grown = boxes_from_slots(slots, 3, dilate=1)
    assert grown[0, 1, 1].sum() == 4  # a corner pixel grows to 2x2 inside the frame
    coords, present = frame_boxes(box[0])  # (E, F, 4), (E, F)
    assert present.tolist() == [[True, False], [True, True], [False, False]]
    assert coords[0, 0].tolist() == [2 / 8, 1 / 8, 5 / 8, 4 / 8]


def test_prior_is_the_median_box_and_round_trips():
    prior = estimate_prior({1: [[(0.5, 0.4, 0.9, 0.6), (0.5, 0.2, 0.8, 0.4), (0.4, 0.4, 1.0, 0.6)]],
                            2: [[(0.5, 0.1, 0.9, 0.3)], []]})
    assert prior.boxes[1] == ((0.5, 0.4, 0.9, 0.6),)
    assert prior.boxes[2][1] == prior.boxes[2][0]  # a slot never seen takes the one before
    again = LayoutPrior.from_dict(prior.to_dict())
    assert again == prior
    m = again.masks(1, 2, 3, 10, 10)  # (E, F, H, W)
    assert m.shape == (2, 3, 10, 10) and m[0, :, 5:9, 4:6].min() == 1 and m[0].sum() == 3 * 8 and m[1].sum() == 0
    assert again.masks(5, 2, 1, 10, 10)[1].sum() > 0  # more characters than learnt: the largest n
    assert again.masks(0, 2, 1, 10, 10).sum() == 0


def _layout_dit(**changes) -> CausalWanDiT:
    torch.manual_seed(0)
    return CausalWanDiT(get_preset("tiny").replace(prediction="sample", layout_channels=3, local_window_frames=None, **changes)).eval()


def _layout_inputs(fpc: int):
    """Latents of three chunks, a prompt embedding, slot 0 boxed in every frame, four names."""
    boxes = torch.zeros(1, 4, 3 * fpc, 4, 4)
    boxes[:, 0, :, 1:3, 0:2] = 1
    return torch.randn(1, 4, 3 * fpc, 4, 4), torch.randn(1, 5, 32), boxes, torch.randn(1, 4, 32)


def _streams_like(model: CausalWanDiT, x, text, layout, full) -> None:
    """Two clean chunks written to the cache with their layout, then the third at sigma 0.6
    reading it == the third chunk of the full block-causal pass ``full``."""
    fpc = model.config.frames_per_chunk
    cache = model.new_cache()
    cache.set_prompt(model.encode_prompt(text))
    for c in range(2):
        sl = slice(c * fpc, (c + 1) * fpc)
        model(x[:, :, sl], 0.0, cache=cache, write_cache=True, layout=layout[:, :, sl])
    last = model(x[:, :, 2 * fpc :], 0.6, cache=cache, layout=layout[:, :, 2 * fpc :])
    torch.testing.assert_close(last, full[:, :, 2 * fpc :], atol=1e-4, rtol=0)


def test_layout_input_starts_as_a_no_op_then_places_characters_and_streams_exactly():
    model = _layout_dit()
    fpc = model.config.frames_per_chunk
    x, text, boxes, names = _layout_inputs(fpc)
    with torch.no_grad():
        layout = model.layout_map(boxes, names)  # (B, Cl, F, H, W)
        assert layout.shape == (1, 3, 3 * fpc, 4, 4) and layout[:, :, :, 0, 3].abs().sum() == 0
        torch.testing.assert_close(model(x, 0.6, text, layout=layout), model(x, 0.6, text))  # zero-initialised
        for p in model.layout_embedding.parameters():
            p.add_(torch.randn_like(p) * 0.3)
        full = model(x, torch.tensor([[0.0] * (2 * fpc) + [0.6] * fpc]), text, layout=layout)
        assert (full - model(x, torch.tensor([[0.0] * (2 * fpc) + [0.6] * fpc]), text)).abs().max() > 1e-3
        _streams_like(model, x, text, layout, full)
        # per-frame name embeddings (clips whose chunks have other prompts)
        per_frame = model.layout_map(boxes, names[:, None].expand(1, 3 * fpc, 4, 32))
        torch.testing.assert_close(per_frame, layout)
    with pytest.raises(ModelError, match="layout"):
        model(x, 0.6, text, layout=layout[:, :2])
    with pytest.raises(ModelError, match="no layout input"):
        CausalWanDiT(get_preset("tiny"))(x, 0.6, text, layout=layout)


def test_box_coordinates_run_from_the_boxs_top_left_to_its_bottom_right():
    boxes = torch.zeros(2, 8, 8)
    boxes[0, 2:6, 1:3] = 1  # rows 2-5, columns 1-2
    coords = box_coordinates(boxes)  # (2, 2, 8, 8)
    torch.testing.assert_close(coords[0, 0, 2:6, 1], torch.tensor([0.125, 0.375, 0.625, 0.875]))
    torch.testing.assert_close(coords[0, 1, 2, 1:3], torch.tensor([0.25, 0.75]))
    assert coords[0][:, boxes[0] == 0].abs().sum() == 0 and coords[1].abs().sum() == 0  # outside and empty boxes


@pytest.mark.parametrize("rank", [0, 4])
def test_figure_painter_paints_inside_boxes_only_and_learns_a_figure_per_name(rank):
    """The painter fits per-name, per-row latents from its loss alone (train.dit_stage.paint_error),
    with and without the name x place product term."""
    from longtake.train.dit_stage import paint_error

    torch.manual_seed(0)
    painter = FigurePainter(text_dim=8, hidden=32, channels=2, rank=rank)
    slots = torch.zeros(2, 1, 8, 8)
    slots[0, 0, 1:7, 2:4] = 1  # slot 1 of clip 0
    slots[1, 0, 2:8, 4:6] = 1
    boxes = boxes_from_slots(slots, 1, dilate=0)  # (2, 1, 1, 8, 8)
    names = torch.randn(2, 1, 8)
    # target: colour by name (clip 0 bright, clip 1 dark), top half and bottom half differ
    x0 = torch.zeros(2, 2, 1, 8, 8)
    x0[0, :, 0, 1:4, 2:4], x0[0, :, 0, 4:7, 2:4] = 1.0, -1.0
    x0[1, :, 0, 2:5, 4:6], x0[1, :, 0, 5:8, 4:6] = -0.5, 0.5
    logits, lat = painter(boxes, names)
    assert lat.shape == (2, 1, 2, 1, 8, 8) and (lat[:, 0] * (boxes[:, 0] == 0)[:, None]).abs().sum() == 0
    first, n = paint_error(boxes, slots, logits, lat, x0)
    assert n == 1
    opt = torch.optim.Adam(painter.parameters(), lr=1e-2)
    for _ in range(300):
        opt.zero_grad()
        loss, _ = paint_error(boxes, slots, *painter(boxes, names), x0)
        loss.backward()
        opt.step()
    assert float(loss) < 0.1 * float(first)
    _, lat = painter(boxes, names)
    assert float(lat[0, 0, 0, 0, 2, 2]) > 0.5 and float(lat[0, 0, 0, 0, 6, 2]) < -0.5  # top vs bottom of clip 0's figure
    assert float(lat[1, 0, 0, 0, 3, 4]) < -0.2  # clip 1's figure: its own colours


def test_painter_product_term_starts_at_zero_and_is_a_product_of_name_and_place():
    torch.manual_seed(0)
    plain = FigurePainter(text_dim=8, hidden=16, channels=3)
    torch.manual_seed(0)
    product = FigurePainter(text_dim=8, hidden=16, channels=3, rank=2)
    slots = torch.zeros(2, 2, 6, 6)
    slots[:, :, 1:5, 2:4] = 1
    boxes = boxes_from_slots(slots, 1, dilate=0)
    names = torch.randn(2, 1, 8)
    with torch.no_grad():
        for a, b in zip(plain(boxes, names), product(boxes, names)):  # the template starts at zero
            torch.testing.assert_close(a, b, atol=0, rtol=0)
        product.template.weight.normal_()
        _, base = plain(boxes, names)
        _, lat = product(boxes, names)
        extra = lat - base  # (B, E, C, F, H, W): the product term alone
        # zero outside the boxes, and with a zero name embedding (bias zero) zero everywhere
        assert extra[..., :, 0].abs().sum() == 0
        _, zero_name = product(boxes, torch.zeros(2, 1, 8))
        _, base_zero = plain(boxes, torch.zeros(2, 1, 8))
        torch.testing.assert_close(zero_name, base_zero)
        # linear in the name embedding: doubling the name doubles the term
        assert extra.abs().max() > 1e-3
        twice = product(boxes, 2 * names)[1] - plain(boxes, 2 * names)[1]
        torch.testing.assert_close(twice, 2 * extra, atol=1e-5, rtol=1e-4)
    with pytest.raises(ModelError, match="paint_rank"):
        _layout_dit(paint_rank=4)


def test_painter_dit_starts_as_the_plain_layout_dit_and_streams_exactly():
    model = _layout_dit(paint_hidden=16, refine_channels=8)
    cfg = model.config
    assert cfg.layout_width == 3 + 4 + 1
    fpc = cfg.frames_per_chunk
    x, text, boxes, names = _layout_inputs(fpc)
    with torch.no_grad():
        layout = model.layout_map(boxes, names)
        assert layout.shape == (1, cfg.layout_width, 3 * fpc, 4, 4) and layout[:, 3:, :, 0, 3].abs().sum() == 0
        plain = layout.clone()
        plain[:, 3:] = 0
        torch.testing.assert_close(model(x, 0.6, text, layout=layout), model(x, 0.6, text, layout=plain))  # zero-initialised
        for p in [*model.paint_embedding.parameters(), *model.refine.paint_in.parameters()]:
            p.add_(torch.randn_like(p) * 0.3)
        sig = torch.tensor([[0.0] * (2 * fpc) + [0.6] * fpc])
        full = model(x, sig, text, layout=layout)
        assert (full - model(x, sig, text, layout=plain)).abs().max() > 1e-3
        _streams_like(model, x, text, layout, full)
    with pytest.raises(ModelError, match="paint_hidden"):
        get_preset("tiny").replace(paint_hidden=8)


def test_slot_map_follows_the_prompts_introduction_order():
    from longtake.train.data import slot_map

    who = torch.zeros(6, 4, 4, dtype=torch.uint8)
    who[:3, 0, 0] = 2  # label 2 = Bob, introduced second
    who[:3, 3, 3] = 1  # label 1 = Ann
    who[3:, 1, 1] = 1
    chunks = [{"prompt": PROMPT, "names": {"1": "Ann", "2": "Bob"}},
              {"prompt": "Ann (a woman with red hair) waits. Setting: office.", "names": {"1": "Ann"}}]
    s = slot_map(who, chunks, 3)
    assert s[0, 0, 0] == 2 and s[0, 3, 3] == 1 and s[4, 1, 1] == 1 and s.sum() == 3 * (2 + 1) + 3 * 1


def test_composite_paint_replaces_latents_where_the_coverage_exceeds_the_threshold():
    from longtake.model.layout import composite_paint

    x0 = torch.zeros(1, 2, 1, 2, 2)
    layout = torch.zeros(1, 3 + 2 + 1, 1, 2, 2)  # 3 layout channels, then 2 painted latents and the coverage
    layout[:, 3:5, 0, 0, 0] = torch.tensor([0.4, -0.8])  # coverage-weighted sum over slots
    layout[:, 5, 0, 0, 0] = 0.8  # covered: painted / coverage = (0.5, -1.0)
    layout[:, 3:5, 0, 1, 1] = 0.1
    layout[:, 5, 0, 1, 1] = 0.2  # below the threshold: x0 kept
    out = composite_paint(x0, layout, 0.3)
    torch.testing.assert_close(out[0, :, 0, 0, 0], torch.tensor([0.5, -1.0]))
    assert out[0, :, 0, 1, 1].abs().sum() == 0 and out[0, :, 0, 0, 1].abs().sum() == 0
