"""Parity tests of the causal DiT.

(a) bidirectional mode == diffusers' WanTransformer3DModel with the same weights;
(b) chunk-by-chunk generation with the KV cache == one block-causal masked pass;
(c) sink + rolling window cache == one masked pass with the sink + window mask.
"""

from __future__ import annotations

import pytest
import torch

from longtake.model import CausalWanDiT, KVCache, ModelError, get_preset

ATOL = 1e-5


def tiny_model(**changes) -> CausalWanDiT:
    torch.manual_seed(0)
    return CausalWanDiT(get_preset("tiny").replace(**changes)).eval()


# --------------------------------------------------------------------------- (a) diffusers
diffusers = pytest.importorskip("diffusers")


@pytest.fixture(scope="module")
def wan_pair():
    from diffusers import WanTransformer3DModel

    torch.manual_seed(0)
    ref = WanTransformer3DModel(
        patch_size=(1, 2, 2),
        num_attention_heads=2,
        attention_head_dim=16,
        in_channels=4,
        out_channels=4,
        text_dim=32,
        freq_dim=256,
        ffn_dim=64,
        num_layers=2,
        cross_attn_norm=True,
        qk_norm="rms_norm_across_heads",
        eps=1e-6,
        rope_max_seq_len=64,
    ).eval()
    # Perturb the norms so that parity also covers their weights (they start at 1 / 0).
    with torch.no_grad():
        for name, p in ref.named_parameters():
            if "norm" in name:
                p.add_(0.1 * torch.randn_like(p))
    ours = CausalWanDiT(get_preset("tiny")).eval()
    result = ours.load_state_dict(ref.state_dict(), strict=True)
    assert not result.missing_keys and not result.unexpected_keys
    return ref, ours


def test_parameter_names_equal_diffusers(wan_pair):
    ref, ours = wan_pair
    theirs = {k: tuple(v.shape) for k, v in ref.state_dict().items()}
    mine = {k: tuple(v.shape) for k, v in ours.state_dict().items()}
    assert mine == theirs


def test_bidirectional_equals_diffusers(wan_pair):
    ref, ours = wan_pair
    torch.manual_seed(1)
    x = torch.randn(2, 4, 5, 8, 6)  # (B, C, F, H, W): 4x3 tokens per frame
    text = torch.randn(2, 7, 32)
    t = torch.tensor([500.0, 250.0])
    with torch.no_grad():
        expected = ref(x, t, text, return_dict=False)[0]
        got = ours(x, t / 1000, text, mode="bidirectional")
    assert got.shape == expected.shape
    torch.testing.assert_close(got, expected, atol=ATOL, rtol=0)


def test_per_frame_timesteps_equal_diffusers_per_token(wan_pair):
    """Our (B, F) sigmas == diffusers' per-token timesteps (Wan2.2 path) repeated per frame."""
    ref, ours = wan_pair
    torch.manual_seed(2)
    x = torch.randn(2, 4, 4, 4, 4)  # 2x2 = 4 tokens per frame
    text = torch.randn(2, 5, 32)
    t = torch.tensor([[125.0, 250.0, 500.0, 875.0], [0.0, 0.0, 750.0, 1000.0]])  # (B, F)
    with torch.no_grad():
        expected = ref(x, t.repeat_interleave(4, dim=1), text, return_dict=False)[0]
        got = ours(x, t / 1000, text, mode="bidirectional")
    torch.testing.assert_close(got, expected, atol=ATOL, rtol=0)


# --------------------------------------------------------------------------- (b) + (c) cache
def _stream_vs_full(model: CausalWanDiT, num_chunks: int, *, full_mode: str, check_bound: bool = False, atol: float = ATOL):
    cfg = model.config
    fpc = cfg.frames_per_chunk
    torch.manual_seed(3)
    frames = num_chunks * fpc
    x0 = torch.randn(1, cfg.in_channels, frames, 4, 4)  # clean latents, 4 tokens per frame
    noise = torch.randn_like(x0)
    text = torch.randn(1, 6, cfg.text_dim)
    sigma = 0.7
    noisy = (1 - sigma) * x0 + sigma * noise

    cache = model.new_cache()
    cache.set_prompt(model.encode_prompt(text))
    with torch.no_grad():
        full_clean = model(x0, 0.0, text, mode=full_mode)
        for c in range(num_chunks):
            sl = slice(c * fpc, (c + 1) * fpc)
            before = (cache.num_tokens, cache.next_frame)
            # Denoising step: reads the cache, writes nothing.
            v_noisy = model(noisy[:, :, sl], sigma, cache=cache)
            assert (cache.num_tokens, cache.next_frame) == before
            # Same chunk in one pass: clean context at sigma=0, this chunk at sigma (per frame).
            ctx = torch.cat([x0[:, :, : c * fpc], noisy[:, :, sl]], dim=2)
            per_frame = torch.tensor([[0.0] * (c * fpc) + [sigma] * fpc])  # (B, F)
            v_full = model(ctx, per_frame, text, mode=full_mode)[:, :, sl]
            torch.testing.assert_close(v_noisy, v_full, atol=atol, rtol=0)
            # Cache write with the clean chunk == that chunk of the clean full pass.
            v_clean = model(x0[:, :, sl], 0.0, cache=cache, write_cache=True)
            torch.testing.assert_close(v_clean, full_clean[:, :, sl], atol=atol, rtol=0)
            if check_bound:
                assert cache.num_frames <= cfg.cache_frames
    return cache


def test_chunked_cache_equals_block_causal_pass():
    model = tiny_model(local_window_frames=None)
    cache = _stream_vs_full(model, num_chunks=4, full_mode="causal")
    assert cache.num_frames == 8 and cache.next_frame == 8


def test_causal_mode_differs_from_bidirectional():
    model = tiny_model(num_layers=1)  # one layer: the last chunk's inputs are the same in both modes
    x = torch.randn(1, 4, 6, 4, 4)
    text = torch.randn(1, 3, 32)
    with torch.no_grad():
        causal = model(x, 0.5, text, mode="causal")
        bidir = model(x, 0.5, text, mode="bidirectional")
    fpc = model.config.frames_per_chunk
    # The last chunk sees everything either way; the first does not.
    torch.testing.assert_close(causal[:, :, -fpc:], bidir[:, :, -fpc:], atol=ATOL, rtol=0)
    assert (causal[:, :, :fpc] - bidir[:, :, :fpc]).abs().max() > 1e-3


@pytest.mark.parametrize("sink_frames", [2, 3, 0])
def test_sink_and_rolling_window_equal_masked_pass(sink_frames):
    # chunk 2 frames, window 4 (this chunk + 2 cached), sink 2 or 3 (not chunk-aligned) or none.
    model = tiny_model(frames_per_chunk=2, local_window_frames=4, sink_frames=sink_frames)
    cache = _stream_vs_full(model, num_chunks=7, full_mode="causal_window", check_bound=True)
    assert cache.frame_indices == list(range(sink_frames)) + [12, 13]
    # Eviction happened: the window mask really differs from plain block-causal here.
    torch.manual_seed(4)
    x = torch.randn(1, 4, 14, 4, 4)
    text = torch.randn(1, 3, 32)
    with torch.no_grad():
        a = model(x, 0.0, text, mode="causal")
        b = model(x, 0.0, text, mode="causal_window")
    assert (a[:, :, -2:] - b[:, :, -2:]).abs().max() > 1e-3


def test_longlive_window_numbers():
    cfg = get_preset("wan2.1-1.3b")
    assert (cfg.sink_frames, cfg.local_window_frames, cfg.frames_per_chunk) == (3, 9, 3)
    assert cfg.sink_frames + cfg.local_window_frames == 12  # LongLive: 12 latent frames attended
    cache = KVCache.from_config(cfg)
    assert cache.sink_frames + cache.window_frames + cfg.frames_per_chunk == 12


def test_wan_preset_state_dict_matches_diffusers_wan21_1_3b():
    """Full-size names and shapes, on the meta device (no memory): Wan2.1-1.3B loads by name."""
    from diffusers import WanTransformer3DModel

    with torch.device("meta"):
        ref = WanTransformer3DModel(
            patch_size=(1, 2, 2), num_attention_heads=12, attention_head_dim=128, in_channels=16,
            out_channels=16, text_dim=4096, freq_dim=256, ffn_dim=8960, num_layers=30,
            cross_attn_norm=True, eps=1e-6, rope_max_seq_len=1024,
        )
        ours = CausalWanDiT(get_preset("wan2.1-1.3b"))
    theirs = {k: tuple(v.shape) for k, v in ref.state_dict().items()}
    assert {k: tuple(v.shape) for k, v in ours.state_dict().items()} == theirs
    assert 1.2e9 < sum(p.numel() for p in ours.parameters()) < 1.5e9


# --------------------------------------------------------------------------- compact RoPE
def _compact_stream(model: CausalWanDiT, x0, noisy, text, num_chunks):
    """Stream chunk by chunk; per chunk the held frame indices and the velocity at sigma 0.7."""
    fpc = model.config.frames_per_chunk
    cache = model.new_cache()
    cache.set_prompt(model.encode_prompt(text))
    out = []
    with torch.no_grad():
        for c in range(num_chunks):
            sl = slice(c * fpc, (c + 1) * fpc)
            held = cache.frame_indices
            out.append((held, model(noisy[:, :, sl], 0.7, cache=cache)))
            model(x0[:, :, sl], 0.0, cache=cache, write_cache=True)
    return out


def test_compact_positions_stream_equals_short_pass_over_attended_frames():
    """With compact positions a chunk deep in the video computes what a fresh short pass over
    exactly the frames it attends to [sink | window | chunk] computes (one layer, where cached
    K/V depend on their own frame only): any chunk sees the layout of a short training clip."""
    torch.manual_seed(5)
    x0 = torch.randn(1, 4, 16, 4, 4)
    noisy = 0.3 * x0 + 0.7 * torch.randn_like(x0)
    text = torch.randn(1, 5, 32)
    model = tiny_model(num_layers=1, frames_per_chunk=2, local_window_frames=4, sink_frames=2, rope_positions="compact")
    stream = _compact_stream(model, x0, noisy, text, 8)
    with torch.no_grad():
        for c, (held, v_stream) in enumerate(stream):
            short = torch.cat([x0[:, :, held], noisy[:, :, 2 * c:2 * c + 2]], dim=2)
            sig = torch.tensor([[0.0] * len(held) + [0.7] * 2])
            v_short = model(short, sig, text, mode="causal_window")[:, :, -2:]
            torch.testing.assert_close(v_stream, v_short, atol=ATOL, rtol=0)
    assert stream[-1][0] == [0, 1, 12, 13]
    # Absolute positions: the same before any eviction, different deep in the video.
    absolute = tiny_model(num_layers=1, frames_per_chunk=2, local_window_frames=4, sink_frames=2)
    stream_a = _compact_stream(absolute, x0, noisy, text, 8)
    torch.testing.assert_close(stream_a[1][1], stream[1][1], atol=ATOL, rtol=0)
    assert (stream_a[-1][1] - stream[-1][1]).abs().max() > 1e-3


def test_compact_equals_absolute_before_the_window_fills():
    torch.manual_seed(6)
    x0 = torch.randn(1, 4, 8, 4, 4)
    noisy = 0.3 * x0 + 0.7 * torch.randn_like(x0)
    text = torch.randn(1, 5, 32)
    kw = dict(frames_per_chunk=2, local_window_frames=6, sink_frames=2)
    compact = _compact_stream(tiny_model(rope_positions="compact", **kw), x0, noisy, text, 4)
    absolute = _compact_stream(tiny_model(**kw), x0, noisy, text, 4)
    for (h1, v1), (h2, v2) in zip(compact, absolute):
        assert h1 == h2
    # chunks 0..3 attend to frames 0..7 at the same positions (no eviction yet)
    for (_, v1), (_, v2) in zip(compact[:4], absolute[:4]):
        torch.testing.assert_close(v1, v2, atol=ATOL, rtol=0)


def test_compact_full_window_pass_is_bounded():

    model = tiny_model(frames_per_chunk=2, local_window_frames=4, sink_frames=2, rope_positions="compact")
    with pytest.raises(ModelError, match="compact RoPE"):
        model(torch.randn(1, 4, 8, 4, 4), 0.5, torch.randn(1, 3, 32), mode="causal_window")


def test_per_chunk_prompts_equal_separate_prompts():
    """A (B, K, T, D) text gives chunk k the k-th prompt: in causal mode each chunk's output
    equals a pass where that prompt is used for every frame."""
    model = tiny_model()
    torch.manual_seed(7)
    x = torch.randn(1, 4, 4, 4, 4)  # 2 chunks of 2 frames
    texts = torch.randn(1, 2, 3, 32)
    with torch.no_grad():
        both = model(x, 0.4, texts, mode="causal")
        first = model(x, 0.4, texts[:, 0], mode="causal")
    torch.testing.assert_close(both[:, :, :2], first[:, :, :2], atol=ATOL, rtol=0)
    assert (both[:, :, 2:] - first[:, :, 2:]).abs().max() > 1e-4


# --------------------------------------------------------------------------- absolute positions
def test_absolute_token_positions_keep_cache_parity_and_change_the_output():
    """The builtin's learned per-token position (``abs_pos_tokens``) enters before the blocks,
    so chunk-by-chunk streaming still equals the block-causal full pass; it really changes
    what the model computes; and a frame of another size is refused."""
    model = tiny_model(local_window_frames=None, abs_pos_tokens=(2, 2))
    assert model.pos_embed.shape == (2, 2, model.config.dim)
    _stream_vs_full(model, num_chunks=3, full_mode="causal")
    torch.manual_seed(7)
    x = torch.randn(1, 4, 2, 4, 4)
    text = torch.randn(1, 3, 32)
    with torch.no_grad():
        a = model(x, 0.5, text)
        model.pos_embed.zero_()
        b = model(x, 0.5, text)
        assert (a - b).abs().max() > 1e-3
        with pytest.raises(ModelError, match="absolute positions for 2x2 tokens"):
            model(torch.randn(1, 4, 2, 8, 8), 0.5, text)


def test_refine_head_starts_as_a_no_op_and_keeps_cache_parity():
    """The builtin's convolutional refine head (``refine_channels``) starts at zero, so a
    trained model gains it without changing; once trained it changes the output, still
    per frame, so streaming equals the full pass; and it needs an x0 head."""
    torch.manual_seed(3)
    plain = tiny_model(local_window_frames=None, prediction="sample")
    torch.manual_seed(3)
    model = tiny_model(local_window_frames=None, prediction="sample", refine_channels=8)
    missing = model.load_state_dict(plain.state_dict(), strict=False).missing_keys
    assert sorted(missing) == sorted(k for k in model.state_dict() if k.startswith("refine."))
    x = torch.randn(1, 4, 4, 4, 4)
    text = torch.randn(1, 3, 32)
    with torch.no_grad():
        torch.testing.assert_close(model(x, 0.5, text), plain(x, 0.5, text))
        for p in model.refine.parameters():
            p.add_(torch.randn_like(p) * 0.05)
        a = model(x, 0.5, text)
        assert (a - plain(x, 0.5, text)).abs().max() > 1e-3
    # x0 heads return (x - x0) / 0.05 at sigma 0, which scales float noise 20x; convolutions
    # over a different number of frames round differently.
    _stream_vs_full(model, num_chunks=3, full_mode="causal", atol=1e-4)
    with pytest.raises(ModelError, match="refine_channels"):
        get_preset("tiny").replace(refine_channels=8)


def test_memory_clip_full_pass_equals_stream_with_a_memory_segment():
    """A training clip [sink | memory frames | chunks] in one causal_window pass with
    ``sink_frames`` = sink + memory computes what a render computes with those memory frames
    in the cache's memory segment (compact positions): memory training (issue 5, item 6)
    trains exactly the layout the memory modes render with."""
    model = tiny_model(frames_per_chunk=2, local_window_frames=6, sink_frames=2, rope_positions="compact")
    torch.manual_seed(11)
    fpc, mem, chunks = 2, 2, 3
    frames = 2 + mem + chunks * fpc
    x0 = torch.randn(1, 4, frames, 4, 4)
    noisy = 0.4 * x0 + 0.6 * torch.randn_like(x0)
    text = torch.randn(1, 3, 32)
    with torch.no_grad():
        # the memory frames' K/V: written after the sink, as a render records a prototype
        scratch = model.new_cache()
        scratch.set_prompt(model.encode_prompt(text))
        model(x0[:, :, :2], 0.0, cache=scratch, write_cache=True)
        model(x0[:, :, 2:4], 0.0, cache=scratch, write_cache=True)
        cache = model.new_cache()
        cache.set_prompt(model.encode_prompt(text))
        model(x0[:, :, :2], 0.0, cache=cache, write_cache=True)
        for layer in range(model.config.num_layers):
            kv = [scratch.frame_kv(layer, f) for f in (2, 3)]
            cache.set_memory(layer, torch.cat([k for k, _ in kv], 2), torch.cat([v for _, v in kv], 2), positions=[2, 3])
        cache.seek(4)
        for c in range(chunks):
            s = 4 + c * fpc
            v_stream = model(noisy[:, :, s : s + fpc], 0.6, cache=cache)
            clip = torch.cat([x0[:, :, :s], noisy[:, :, s : s + fpc]], 2)
            sig = torch.tensor([[0.0] * s + [0.6] * fpc])
            v_full = model(clip, sig, text, mode="causal_window", sink_frames=2 + mem)[:, :, s:]
            torch.testing.assert_close(v_stream, v_full, atol=ATOL, rtol=0)
            model(x0[:, :, s : s + fpc], 0.0, cache=cache, write_cache=True)
    assert cache.view_frames == 2 + mem + 4  # sink | memory | window (two chunks)


def test_cut_clip_full_pass_equals_the_first_chunk_after_a_cut():
    """A training clip [memory frames | chunk] (LatentClips.cut_clip) in one causal_window pass
    with ``sink_frames`` = memory computes what a memory mode computes for the first chunk
    after a cut: the cache has forgotten sink and window (``restart_sink``) and holds only the
    memory segment, at compact positions 0.. before the chunk."""
    model = tiny_model(frames_per_chunk=2, local_window_frames=6, sink_frames=2, rope_positions="compact")
    torch.manual_seed(12)
    fpc, mem = 2, 2
    x0 = torch.randn(1, 4, 3 * fpc + mem, 4, 4)
    noisy = 0.4 * x0 + 0.6 * torch.randn_like(x0)
    text = torch.randn(1, 3, 32)
    with torch.no_grad():
        cache = model.new_cache()
        cache.set_prompt(model.encode_prompt(text))
        for c in range(3):  # a shot of three chunks, then a cut
            model(x0[:, :, c * fpc : (c + 1) * fpc], 0.0, cache=cache, write_cache=True)
        layers = model.config.num_layers
        kv = [[cache.frame_kv(layer, f) for f in (0, 2)] for layer in range(layers)]  # two prototypes as memory
        cache.restart_sink()
        for layer in range(layers):
            cache.set_memory(layer, torch.cat([k for k, _ in kv[layer]], 2), torch.cat([v for _, v in kv[layer]], 2), positions=[0, 2])
        assert cache.view_frames == mem
        s = 3 * fpc
        v_stream = model(noisy[:, :, s : s + fpc], 0.6, cache=cache)
        # the memory frames' K/V were written in their own context; the clip rewrites them in
        # its own, so compare with K/V written the same way: prototypes 0 and 2 alone, in order
        clip = torch.cat([x0[:, :, 0:1], x0[:, :, 2:3], noisy[:, :, s : s + fpc]], 2)
        sig = torch.tensor([[0.0] * mem + [0.6] * fpc])
        v_full = model(clip, sig, text, mode="causal_window", sink_frames=mem)[:, :, mem:]
        scratch = model.new_cache()
        scratch.set_prompt(model.encode_prompt(text))
        model(clip[:, :, :mem], 0.0, cache=scratch, write_cache=True)
        cut = model.new_cache()
        cut.set_prompt(model.encode_prompt(text))
        cut.restart_sink()
        for layer in range(layers):
            k, v = zip(*(scratch.frame_kv(layer, f) for f in range(mem)))
            cut.set_memory(layer, torch.cat(k, 2), torch.cat(v, 2), positions=[0, 1])
        v_cut = model(noisy[:, :, s : s + fpc], 0.6, cache=cut)
        torch.testing.assert_close(v_cut, v_full, atol=ATOL, rtol=0)
        assert not torch.allclose(v_stream, v_full, atol=ATOL)  # K/V written in another context differ
