"""Shared pieces of the memory tests: tiny random parts, stories with a cast, stream helpers."""

from __future__ import annotations

import numpy as np
import torch

from longtake.generate.memory import MemoryGenerator
from longtake.model import CausalWanDiT, get_preset
from longtake.model.text_builtin import BuiltinTextConfig, BuiltinTextEncoder
from longtake.model.tokenizer import Tokenizer
from longtake.model.vae_builtin import BuiltinVAE, BuiltinVAEConfig
from longtake.plan import plan
from longtake.script import Story

SIZE = 32  # VAE spatial factor 8 -> 4x4 latents; DiT patch 2x2 -> 4 tokens per latent frame
TPF = 4
WORDS = ["mia walks in", "tom sits down", "mia comes back", "room", "park", "Mia", "Tom", "setting", "with"]

# Mia in the room (chunks 0-3), Tom in the room (4-7), Mia back in the park (8-11): she left the
# window at chunk 4 and returns after a shot cut; every shot starts with a cut and a switch.
SCENES = [
    {"location": "room", "shots": [{"prompt": "Mia walks in", "characters": ["mia"], "duration": 2.0},
                                   {"prompt": "Tom sits down", "characters": ["tom"], "duration": 2.0}]},
    {"location": "park", "shots": [{"prompt": "Mia comes back", "characters": ["mia"], "duration": 2.0}]},
]


def tiny_parts():
    torch.manual_seed(0)
    dit = CausalWanDiT(get_preset("tiny")).eval()  # 2 layers, 2 heads of 16, sink 2, window 4 (2 cached)
    vae = BuiltinVAE(BuiltinVAEConfig(latent_channels=4, channels=(8, 8, 8, 8), enc_res_blocks=0, dec_res_blocks=(0, 0, 0, 0), norm_groups=4)).eval()
    tok = Tokenizer.build(WORDS)
    text = BuiltinTextEncoder(BuiltinTextConfig(vocab_size=len(tok), dim=32, num_layers=1, num_heads=2, max_tokens=16), tok).eval()
    return dit, vae, text


def make_story(scenes=None, *, title: str = "memory", repeat: int = 1, characters=None, locations=None, context=None) -> Story:
    data = {
        "title": title, "fps": 16, "seed": 3, "size": {"width": SIZE, "height": SIZE},
        "characters": characters or [{"id": "mia", "name": "Mia"}, {"id": "tom", "name": "Tom"}],
        "locations": locations or [{"id": "room"}, {"id": "park"}],
        "scenes": list(scenes or SCENES) * repeat,
    }
    return Story.model_validate(data, context=context)


def make_gen(parts, memory="nam", **kw) -> MemoryGenerator:
    return MemoryGenerator(*parts, memory=memory, **kw)


def plan_for(gen, story: Story):
    return plan(story, frames_per_chunk=gen.frames_per_chunk, first_chunk_frames=gen.first_chunk_frames)


def frames_of(gen, timeline, seed: int = 1, **kw) -> list[np.ndarray]:
    return [fc.frames for fc in gen.stream(timeline, seed=seed, **kw)]


def ref_image(seed: int = 0, h: int = 40, w: int = 48) -> np.ndarray:
    return np.random.default_rng(seed).integers(0, 256, size=(h, w, 3), dtype=np.uint8)
