"""VAE interface, the built-in VAE and the Wan VAE wrapper (tiny random configs, CPU)."""

from __future__ import annotations

import dataclasses

import pytest
import torch

from longtake.errors import LongtakeError
from longtake.model.vae import VAEError
from longtake.model.vae_builtin import VAE_PRESETS, BuiltinVAE, BuiltinVAEConfig

TINY = BuiltinVAEConfig(latent_channels=4, channels=(8, 8, 16, 16), dec_res_blocks=(1, 1, 0, 0), norm_groups=4)


def _video(b: int, f: int, h: int = 32, w: int = 32, seed: int = 0) -> torch.Tensor:
    g = torch.Generator().manual_seed(seed)
    return torch.rand(b, 3, f, h, w, generator=g) * 2 - 1  # (B, 3, F, H, W)


# ---------------------------------------------------------------- built-in VAE
@pytest.mark.parametrize("t", [1, 4])
def test_builtin_shapes_and_finite(t: int) -> None:
    torch.manual_seed(0)
    vae = BuiltinVAE(dataclasses.replace(TINY, temporal_factor=t)).eval()
    frames = 9
    z = vae.encode(_video(2, frames))
    assert z.shape == (2, 4, vae.latents_for_frames(frames), 4, 4)
    assert z.shape[2] == (1 + (frames - 1) // 4 if t == 4 else frames)
    out = vae.decode(z)
    assert out.shape == (2, 3, frames, 32, 32)
    assert torch.isfinite(out).all() and out.abs().max() <= 1.0


@pytest.mark.parametrize("t,split", [(1, [1, 3, 2]), (4, [1, 2, 3]), (4, [2, 1, 1, 2])])
def test_builtin_streaming_equals_full(t: int, split: list[int]) -> None:
    torch.manual_seed(1)
    vae = BuiltinVAE(dataclasses.replace(TINY, temporal_factor=t, temporal_kernel=3)).eval()
    z = torch.randn(1, 4, sum(split), 4, 4)
    with torch.inference_mode():
        full = vae.decode(z)
        state, parts = vae.decoder_state(), []
        for chunk in z.split(split, dim=2):
            frames, state = vae.decode_chunk(chunk, state)
            parts.append(frames)
    assert parts[0].shape[2] == vae.frames_for_latents(split[0])
    assert all(p.shape[2] == t * n for p, n in zip(parts[1:], split[1:]))
    torch.testing.assert_close(torch.cat(parts, dim=2), full, rtol=1e-5, atol=1e-5)


def test_builtin_state_not_mutated() -> None:
    vae = BuiltinVAE(TINY).eval()
    z = torch.randn(1, 4, 3, 4, 4)
    with torch.inference_mode():
        _, s1 = vae.decode_chunk(z[:, :, :1], vae.decoder_state())
        a, _ = vae.decode_chunk(z[:, :, 1:], s1)
        b, _ = vae.decode_chunk(z[:, :, 1:], s1)  # resuming twice from one state
    torch.testing.assert_close(a, b)


def test_builtin_save_load_roundtrip(tmp_path) -> None:
    torch.manual_seed(2)
    vae = BuiltinVAE(dataclasses.replace(TINY, latent_scale=0.5)).eval()
    path = tmp_path / "vae.safetensors"
    vae.save_safetensors(path)
    back = BuiltinVAE.from_safetensors(path).eval()
    assert back.config == vae.config
    assert list(back.state_dict()) == list(vae.state_dict())
    x = _video(1, 5)
    with torch.inference_mode():
        torch.testing.assert_close(back.decode(back.encode(x)), vae.decode(vae.encode(x)))


def test_builtin_loss_backward() -> None:
    torch.manual_seed(3)
    vae = BuiltinVAE(TINY)
    loss, metrics = vae.loss(_video(1, 5))
    loss.backward()
    assert torch.isfinite(loss) and metrics["l1"] > 0
    assert all(p.grad is not None and torch.isfinite(p.grad).all() for p in vae.parameters())


def test_builtin_errors(tmp_path) -> None:
    vae = BuiltinVAE(TINY)
    with pytest.raises(VAEError, match="1 \\+ 4"):
        vae.encode(_video(1, 6))
    with pytest.raises(VAEError, match="multiples of 8"):
        vae.encode(_video(1, 5, 30, 32))
    with pytest.raises(VAEError, match="latent must be"):
        vae.decode(torch.zeros(1, 3, 2, 4, 4))
    with pytest.raises(VAEError, match="not found"):
        BuiltinVAE.from_safetensors(tmp_path / "missing.safetensors")
    with pytest.raises(LongtakeError, match="temporal_factor"):
        BuiltinVAEConfig(temporal_factor=2)


def test_builtin_presets_geometry() -> None:
    cfg = VAE_PRESETS["builtin"]
    assert cfg.spatial_factor == 4 and cfg.temporal_factor == 4
    vae = BuiltinVAE(cfg)
    assert vae.frames_for_latents(5) == 17 and vae.latents_for_frames(17) == 5
    assert vae.frames_for_latents(0) == 0


# ---------------------------------------------------------------- Wan VAE
def _tiny_wan():
    diffusers = pytest.importorskip("diffusers")
    torch.manual_seed(0)
    return diffusers.AutoencoderKLWan(
        base_dim=8,
        z_dim=4,
        dim_mult=[1, 2, 2, 2],
        num_res_blocks=1,
        temperal_downsample=[False, True, True],
        latents_mean=[0.1, -0.2, 0.3, 0.0],
        latents_std=[1.5, 0.5, 2.0, 1.0],
    )


def test_wan_encode_decode_shapes() -> None:
    from longtake.model.vae_wan import WanVAE

    vae = WanVAE(_tiny_wan())
    assert (vae.latent_channels, vae.spatial_factor, vae.temporal_factor) == (4, 8, 4)
    z = vae.encode(_video(1, 9, 16, 16))
    assert z.shape == (1, 4, 1 + (9 - 1) // 4, 2, 2)
    out = vae.decode(z)
    assert out.shape == (1, 3, 9, 16, 16) and torch.isfinite(out).all()
    with pytest.raises(VAEError):
        vae.encode(_video(1, 8, 16, 16))


def test_wan_streaming_equals_full_decode() -> None:
    from longtake.model.vae_wan import WanVAE

    model = _tiny_wan()
    vae = WanVAE(model)
    z = torch.randn(1, 4, 5, 2, 2)
    full = vae.decode(z)
    # Same as diffusers' own decode of the de-normalised latent.
    raw = z * vae._std.view(1, 4, 1, 1, 1) + vae._mean.view(1, 4, 1, 1, 1)
    with torch.no_grad():
        torch.testing.assert_close(full, model.decode(raw).sample, rtol=1e-5, atol=1e-5)
    state, parts = vae.decoder_state(), []
    for chunk in z.split([2, 1, 2], dim=2):
        frames, state = vae.decode_chunk(chunk, state)
        parts.append(frames)
    assert [p.shape[2] for p in parts] == [5, 4, 8]
    torch.testing.assert_close(torch.cat(parts, dim=2), full, rtol=1e-5, atol=1e-5)
    # Resuming twice from one saved state gives the same frames (the state is not mutated).
    _, mid = vae.decode_chunk(z[:, :, :2], vae.decoder_state())
    again = [vae.decode_chunk(z[:, :, 2:], mid)[0] for _ in range(2)]
    torch.testing.assert_close(again[0], again[1], rtol=0, atol=0)
    torch.testing.assert_close(again[0], full[:, :, 5:], rtol=1e-5, atol=1e-5)


def test_wan_missing_path(tmp_path) -> None:
    from longtake.model.vae_wan import WanVAE

    with pytest.raises(VAEError, match="never downloads"):
        WanVAE.from_pretrained(tmp_path / "nope")


def test_wan_from_pretrained_local(tmp_path) -> None:
    from longtake.model.vae_wan import WanVAE

    model = _tiny_wan()
    model.save_pretrained(tmp_path / "vae")
    vae = WanVAE.from_pretrained(tmp_path, subfolder="vae")
    z = torch.randn(1, 4, 2, 2, 2)
    torch.testing.assert_close(vae.decode(z), WanVAE(model).decode(z))


def test_builtin_state_dict_keys_stable() -> None:
    """Saved weights load by name: renaming a module breaks every shipped checkpoint."""
    keys = set(BuiltinVAE(TINY).state_dict())
    assert {k.split(".")[0] for k in keys} == {
        "enc_in", "enc_blocks", "enc_down", "enc_mid", "enc_norm", "enc_out",
        "dec_in", "dec_blocks", "dec_up", "dec_norm", "dec_out",
    }
    for key in ("enc_blocks.0.0.conv1.weight", "enc_down.2.bias", "enc_mid.0.norm2.weight",
                "dec_in.weight", "dec_blocks.1.0.conv2.weight", "dec_up.2.weight", "dec_out.bias"):
        assert key in keys


def test_builtin_loss_weights_character_pixels() -> None:
    """weight=None and an all-ones weight give the same loss; a weight on some pixels makes
    the loss the weighted mean of the error there and elsewhere, and ``l1`` stays the plain mean."""
    torch.manual_seed(4)
    vae = BuiltinVAE(TINY)
    x = _video(1, 5)
    plain, m0 = vae.loss(x)
    ones, m1 = vae.loss(x, weight=torch.ones(1, 1, 5, 32, 32))
    torch.testing.assert_close(plain, ones)
    mask = torch.zeros(1, 1, 5, 32, 32)
    mask[..., 8:20, 10:16] = 1.0
    weighted, m2 = vae.loss(x, weight=1.0 + 7.0 * mask)
    with torch.no_grad():
        err = (vae(x)[0] - x).abs()
    w = 1.0 + 7.0 * mask
    assert m2["weighted_l1"] == pytest.approx(float((err * w).mean() / w.mean()), rel=1e-5)
    assert m2["l1"] == pytest.approx(m0["l1"], rel=1e-6)
    assert not torch.isclose(weighted, plain)


def test_frame_windows_keep_masks_aligned_and_centre_crops_on_characters() -> None:
    """Masks follow their frames through window, crop and flip; char_crops=1 puts a character
    in every crop; asking for masks from shards without them is a clear error."""
    import numpy as np

    from longtake.train.config import TrainError
    from longtake.train.data import FrameWindows

    rng = np.random.default_rng(0)
    fw = FrameWindows.__new__(FrameWindows)
    fw.clips, fw.masks = [], []
    for _ in range(3):
        m = np.zeros((9, 64, 64), dtype=bool)
        for f in range(9):  # a small figure at a random place in each frame
            y, x = rng.integers(0, 56, size=2)
            m[f, y : y + 6, x : x + 3] = True
        fw.clips.append(np.where(m[..., None], 255, 0).astype(np.uint8).repeat(3, axis=3))
        fw.masks.append(m)
    video, masks = fw.batch(np.random.default_rng(1), 8, 5, crop=16, masks=True)
    assert video.shape == (8, 3, 5, 16, 16) and masks.shape == (8, 1, 5, 16, 16)
    assert torch.equal(video > 0, (masks > 0).expand_as(video))
    _, centred = fw.batch(np.random.default_rng(2), 16, 5, crop=16, masks=True, char_crops=1.0)
    _, uniform = fw.batch(np.random.default_rng(2), 16, 5, crop=16, masks=True)
    assert all(c.sum() > 0 for c in centred)
    assert centred.mean() > 2 * uniform.mean()
    fw.masks = None
    with pytest.raises(TrainError, match="label masks"):
        fw.batch(np.random.default_rng(1), 2, 5, crop=16, masks=True)
