"""3D RoPE: Wan's frequencies, offsets, and the relative-position property the cache relies on."""

from __future__ import annotations

import pytest
import torch

from longtake.model import CausalWanDiT, get_preset
from longtake.model.rope import apply_rope, rope_axis_dims, rope_cos_sin


def test_axis_split_matches_wan():
    assert rope_axis_dims(128) == (44, 42, 42)
    t, h, w = rope_axis_dims(16)
    assert (t, h, w) == (8, 4, 4)


def test_offset_positions_start_at_offset():
    full_cos, full_sin = rope_cos_sin(16, 9, 2, 3)  # frames 0..8
    cos, sin = rope_cos_sin(16, 4, 2, 3, frame_offset=5)  # frames 5..8
    torch.testing.assert_close(cos, full_cos[5 * 6 :], rtol=0, atol=0)
    torch.testing.assert_close(sin, full_sin[5 * 6 :], rtol=0, atol=0)
    # Frame angle of the first token is offset * inv_freq(0) = offset (inv_freq(0) = 1).
    assert torch.isclose(torch.atan2(sin[0, 0], cos[0, 0]), torch.tensor(5.0 - 2 * torch.pi), atol=1e-5)


def test_matches_diffusers_table():
    pytest.importorskip("diffusers")
    from diffusers.models.transformers.transformer_wan import WanRotaryPosEmbed

    ref = WanRotaryPosEmbed(16, (1, 2, 2), 64)
    ref_cos, ref_sin = ref(torch.zeros(1, 4, 3, 8, 6))  # (1, L, 1, Dh), pairs repeated
    cos, sin = rope_cos_sin(16, 3, 4, 3)
    torch.testing.assert_close(cos, ref_cos[0, :, 0, 0::2], rtol=0, atol=0)
    torch.testing.assert_close(sin, ref_sin[0, :, 0, 1::2], rtol=0, atol=0)


def test_rotation_is_relative():
    torch.manual_seed(0)
    q = torch.randn(1, 1, 2 * 4, 16)
    k = torch.randn(1, 1, 2 * 4, 16)
    scores = []
    for off in (0, 37):
        cos, sin = rope_cos_sin(16, 2, 2, 2, frame_offset=off)
        scores.append(apply_rope(q, cos, sin) @ apply_rope(k, cos, sin).transpose(-1, -2))
    torch.testing.assert_close(scores[0], scores[1], atol=1e-4, rtol=1e-5)


def test_model_output_invariant_to_global_frame_offset():
    torch.manual_seed(0)
    model = CausalWanDiT(get_preset("tiny")).eval()
    x = torch.randn(1, 4, 4, 4, 4)
    text = torch.randn(1, 3, 32)
    with torch.no_grad():
        a = model(x, 0.5, text, frame_offset=0, mode="causal")
        b = model(x, 0.5, text, frame_offset=1000, mode="causal")  # beyond rope_max_seq_len too
    torch.testing.assert_close(a, b, atol=1e-4, rtol=1e-4)
