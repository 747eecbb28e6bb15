"""DiTConfig presets, replace, validation and the preset registry's errors."""

from __future__ import annotations

import dataclasses

import pytest
import torch

from longtake.model import PRESETS, CausalWanDiT, DiTConfig, ModelError, get_preset


def test_wan_preset_matches_references():
    cfg = get_preset("wan2.1-1.3b")
    assert (cfg.dim, cfg.num_heads, cfg.head_dim, cfg.num_layers, cfg.ffn_dim) == (1536, 12, 128, 30, 8960)
    assert (cfg.in_channels, cfg.out_channels, cfg.text_dim, cfg.freq_dim, cfg.patch_size) == (16, 16, 4096, 256, (1, 2, 2))
    assert cfg.tokens_per_frame(60, 104) == 1560  # 832x480 video


def test_presets_are_frozen_and_replaceable():
    cfg = get_preset("builtin")
    with pytest.raises(dataclasses.FrozenInstanceError):
        cfg.num_layers = 3  # type: ignore[misc]
    smaller = dataclasses.replace(cfg, num_layers=2)
    assert smaller.num_layers == 2 and cfg.num_layers == PRESETS["builtin"].num_layers
    assert cfg.replace(frames_per_chunk=4).sink_frames == cfg.sink_frames  # already resolved
    assert DiTConfig(frames_per_chunk=4, local_window_frames=8).sink_frames == 4


def test_unknown_preset_lists_known():
    with pytest.raises(ModelError, match="builtin.*tiny.*wan2.1-1.3b"):
        get_preset("nope")


@pytest.mark.parametrize(
    "changes, match",
    [
        ({"patch_size": (2, 2, 2)}, "patch_size"),
        ({"qk_norm": "layer_norm"}, "qk_norm"),
        ({"local_window_frames": 1}, "local_window_frames"),
        ({"num_layers": 0}, "num_layers"),
    ],
)
def test_invalid_config(changes, match):
    with pytest.raises(ModelError, match=match):
        get_preset("tiny").replace(**changes)
    with pytest.raises(ModelError, match="unknown"):
        get_preset("tiny").replace(bogus=1)


def test_builtin_is_small():
    with torch.device("meta"):
        model = CausalWanDiT(get_preset("builtin"))
    params = sum(p.numel() for p in model.parameters())
    assert params < 20_000_000


def test_a_config_read_from_json_equals_the_preset_it_came_from():
    """model.json stores tuples as lists; the config read back equals the one written
    (train's init_from compares them field by field)."""
    import dataclasses

    cfg = get_preset("builtin").replace(abs_pos_tokens=(8, 8), layout_channels=4)
    data = {k: list(v) if isinstance(v, tuple) else v for k, v in dataclasses.asdict(cfg).items()}
    assert DiTConfig(**data) == cfg
