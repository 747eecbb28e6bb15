"""Fine-tuning (``TrainConfig.init_from``): a DiT stage that starts from a built-in model folder.

The runner copies the model's VAE into the run (:func:`copy_init_vae`); the DiT stage
(``dit_stage.train_dit``) takes the model's vocabulary and, before its first step, its DiT and
text weights (:func:`init_model`, :func:`start_from`). Why: a lent GPU gets the working tree and 64 MB of carried files, not a 160 MB
checkpoint; the shipped folder (27 MB) is in the tree (docs/training.md).
"""

from __future__ import annotations

import dataclasses
import shutil
from pathlib import Path

from longtake.model.dit import CausalWanDiT
from longtake.model.text_builtin import BuiltinTextEncoder
from longtake.train.config import TrainError


def init_model(folder: Path):
    """The model a fine-tuning run starts from (``cfg.init_from``), or a one-line TrainError."""
    from longtake.model.builtin import load_builtin
    from longtake.model.errors import ModelError

    try:
        return load_builtin(folder)
    except ModelError as err:
        raise TrainError(f"init_from: {err}") from None


def start_from(dit: CausalWanDiT, text: BuiltinTextEncoder, init, where: str) -> None:
    """Copy the weights of ``init`` (a loaded built-in model) into the run's fresh models; the
    run's DiT and text settings must be the model's."""
    want, got = dataclasses.asdict(init.dit.config), dataclasses.asdict(dit.config)
    diff = sorted(k for k in want if want[k] != got.get(k))
    if diff:
        raise TrainError(f"init_from {where}: the run's DiT differs from the model's in {', '.join(diff)} "
                         f"(model: {', '.join(f'{k}={want[k]!r}' for k in diff)}); set dit_preset/dit_changes to match")
    twant, tgot = init.text_encoder.state_dict(), text.state_dict()
    bad = sorted(k for k in twant if k not in tgot or tgot[k].shape != twant[k].shape) + sorted(k for k in tgot if k not in twant)
    if bad:
        raise TrainError(f"init_from {where}: the run's text encoder differs from the model's ({bad[0]}); set text_changes to match")
    dit.load_state_dict(init.dit.state_dict())
    text.load_state_dict(twant)


def copy_init_vae(run: Path, init: Path) -> None:
    """A fine-tuning run (``init_from``) takes the model's VAE as its own, once."""
    from longtake.model.builtin import require_folder
    from longtake.model.errors import ModelError

    try:
        require_folder(init)
    except ModelError as err:
        raise TrainError(f"init_from: {err}") from None
    target = run / "vae" / "vae.safetensors"
    if not target.is_file():
        target.parent.mkdir(parents=True, exist_ok=True)
        tmp = target.with_name(target.name + ".tmp")
        shutil.copyfile(init / "vae.safetensors", tmp)
        tmp.replace(target)
