"""longtake.model: the causal video DiT, its attention, RoPE, KV cache and presets."""

from longtake.model.config import PRESETS, DiTConfig, get_preset
from longtake.model.dit import CausalWanDiT
from longtake.model.errors import ModelError
from longtake.model.kv_cache import KVCache, PromptKV

__all__ = ["PRESETS", "CausalWanDiT", "DiTConfig", "KVCache", "ModelError", "PromptKV", "get_preset"]
