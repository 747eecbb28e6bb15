"""Generator state on disk without pickle: one safetensors file, the structure as JSON inside.

A generator's :meth:`~longtake.generate.protocol.Generator.state_dict` is plain data:
tensors, numbers, strings, booleans, None, lists, tuples and dicts with string keys (the
causal generator's holds the KV cache, the VAE decoder state, the prompt and the chunk
index). :func:`save_state` stores every tensor under a generated name in a safetensors file
and the structure, with ``{"__tensor__": name}`` in place of each tensor, as JSON in the
file's metadata. Loading never runs code from the file (safetensors and JSON only), unlike
``torch.load(weights_only=False)``.

Tensors are saved on the CPU, contiguous and unshared (a cache's K/V are often views of one
buffer, which safetensors refuses); :func:`load_state` returns them on ``device``.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import torch

from longtake.atomic import atomic_output
from longtake.generate.causal import GenerateError

STATE_FORMAT = "longtake-generator-state"
STATE_FORMAT_VERSION = 1
_TENSOR = "__tensor__"
_TUPLE = "__tuple__"


def _pack(obj: Any, tensors: dict[str, torch.Tensor], where: str) -> Any:
    if isinstance(obj, torch.Tensor):
        name = f"t{len(tensors)}"
        tensors[name] = obj.detach().to("cpu").contiguous().clone()
        return {_TENSOR: name}
    if obj is None or isinstance(obj, (bool, int, float, str)):
        return obj
    if isinstance(obj, tuple):
        return {_TUPLE: [_pack(v, tensors, f"{where}[{i}]") for i, v in enumerate(obj)]}
    if isinstance(obj, list):
        return [_pack(v, tensors, f"{where}[{i}]") for i, v in enumerate(obj)]
    if isinstance(obj, dict):
        out = {}
        for k, v in obj.items():
            if not isinstance(k, str) or k.startswith("__"):
                raise GenerateError(f"cannot save generator state: key {k!r} at {where} must be a string not starting with '__'")
            out[k] = _pack(v, tensors, f"{where}.{k}")
        return out
    raise GenerateError(f"cannot save generator state: {where} is a {type(obj).__name__}; only tensors, numbers, strings, None, lists and dicts are saved")


def _unpack(obj: Any, tensors: dict[str, torch.Tensor]) -> Any:
    if isinstance(obj, list):
        return [_unpack(v, tensors) for v in obj]
    if isinstance(obj, dict):
        if _TENSOR in obj:
            return tensors[obj[_TENSOR]]
        if _TUPLE in obj:
            return tuple(_unpack(v, tensors) for v in obj[_TUPLE])
        return {k: _unpack(v, tensors) for k, v in obj.items()}
    return obj


def save_state(state: dict[str, Any], path: str | Path) -> Path:
    """Write a generator state (see the module docstring) to ``path`` atomically."""
    from safetensors.torch import save_file

    if not isinstance(state, dict):
        raise GenerateError(f"generator state must be a dict, got {type(state).__name__}")
    path = Path(path)
    tensors: dict[str, torch.Tensor] = {}
    tree = _pack(state, tensors, "state")
    meta = {"format": STATE_FORMAT, "version": str(STATE_FORMAT_VERSION), "state": json.dumps(tree, allow_nan=True)}
    with atomic_output(path) as tmp:
        save_file(tensors, str(tmp), metadata=meta)
    return path


def load_state(path: str | Path, *, device: str | torch.device = "cpu") -> dict[str, Any]:
    """Read a state written by :func:`save_state`; tensors land on ``device``."""
    from safetensors import SafetensorError, safe_open

    path = Path(path)
    if not path.is_file():
        raise GenerateError(f"generator state not found: {path}")
    try:
        with safe_open(str(path), framework="pt", device="cpu") as fh:
            meta = fh.metadata() or {}
            tensors = {k: fh.get_tensor(k).to(device) for k in fh.keys()}
    except SafetensorError as err:
        raise GenerateError(f"{path} is not a generator state file ({err})") from None
    if meta.get("format") != STATE_FORMAT or meta.get("version") != str(STATE_FORMAT_VERSION):
        raise GenerateError(f"{path} is not a generator state of format {STATE_FORMAT} v{STATE_FORMAT_VERSION} (metadata {sorted(meta)})")
    try:
        tree = json.loads(meta["state"])
    except (KeyError, json.JSONDecodeError) as err:
        raise GenerateError(f"{path}: generator state metadata is damaged ({err})") from None
    return _unpack(tree, tensors)
