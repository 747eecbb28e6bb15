"""Memory files and reference images: the file side of long-range memory (entry level).

``longtake render --memory entity --memory-out ep1.memory`` saves the entity memory of a
finished render; ``--memory-from ep1.memory`` loads it into another render of the same cast,
so a series keeps its characters (issue 5). Writing and reading files belongs here, next to
:mod:`longtake.render_resume`, not in ``generate/`` or ``memory/``.

A memory file is a :mod:`longtake.render_state` container (safetensors + JSON structure, no
pickle) holding::

    {"format": "longtake-memory", "version": 1,
     "cast": {"characters": {id: name}, "locations": {id: name}},
     "model": {"name": ..., "weights": {file: sha256}, "layers": L, "heads": Nh, "head_dim": Dh},
     "size": [width, height], "tokens_per_frame": n,
     "entity": EntityMemory.state_dict()}

Loading refuses, in one line, a file of another cast (no character or location id in
common, or a shared id with another name), of other model weights (its K/V mean nothing to
another model) or of another video size (another number of tokens per frame). Entities the
story does not have are dropped.

:func:`cast_from_story` reads the script's reference images (``refs``) into
:class:`~longtake.memory.cast.CastMember` objects for the generator.
"""

from __future__ import annotations

import hashlib
from pathlib import Path
from typing import Any

import numpy as np

from longtake.pipeline import RenderError
from longtake.script.schema import Story

MEMORY_FORMAT = "longtake-memory"
MEMORY_VERSION = 1
MEMORY_SUFFIX = ".memory"


def read_image(path: str | Path) -> np.ndarray:
    """An image file -> (H, W, 3) uint8 RGB; RenderError when it cannot be read."""
    import cv2

    img = cv2.imread(str(path), cv2.IMREAD_COLOR)
    if img is None:
        raise RenderError(f"reference image {path} cannot be read as an image")
    return np.ascontiguousarray(img[:, :, ::-1])  # BGR -> RGB


def cast_from_story(story: Story, *, images: bool = True) -> list[Any]:
    """The story's characters and locations as CastMembers: a prompt that describes each one
    (name, description, the story's style) and its reference images (read when ``images``)."""
    from longtake.memory.cast import CastMember

    style = f" Style: {story.style.rstrip('. ')}." if story.style else ""
    members = []
    for c in story.characters:
        text = f"{c.name} ({c.description})" if c.description else c.name
        refs = tuple(read_image(p) for p in c.refs) if images else ()
        members.append(CastMember(c.id, "character", f"{text}.{style}", refs))
    for loc in story.locations:
        place = ", ".join(p for p in (loc.name, loc.description) if p) or loc.id
        refs = tuple(read_image(p) for p in loc.refs) if images else ()
        members.append(CastMember(loc.id, "location", f"Setting: {place}.{style}", refs))
    return members


def _cast(story: Story) -> dict[str, dict[str, str]]:
    return {"characters": {c.id: c.name for c in story.characters}, "locations": {loc.id: loc.name or loc.id for loc in story.locations}}


def _model(generator: Any) -> dict[str, Any]:
    info = generator.info()
    cfg = generator.dit.config
    return {"name": info.name, "weights": dict(sorted(info.weights.items())), "layers": cfg.num_layers, "heads": cfg.num_heads, "head_dim": cfg.head_dim}


def save_memory_file(generator: Any, story: Story, path: str | Path) -> Path:
    """Write the entity memory of ``generator``'s last render of ``story`` to ``path``."""
    from longtake.render_state import save_state

    export = getattr(generator, "export_memory", None)
    data = export() if export is not None else None
    if data is None:
        raise RenderError(f"{path}: this render has no entity memory to save (render with --memory entity; a resume that only re-encoded the frames has none)")
    tpf = data["entries"][0]["keys"][0].shape[2] if data["entries"] else 0
    tree = {
        "format": MEMORY_FORMAT, "version": MEMORY_VERSION, "cast": _cast(story), "model": _model(generator),
        "size": [story.size.width, story.size.height], "tokens_per_frame": int(tpf), "entity": data,
    }
    return save_state(tree, path)


def load_memory_file(path: str | Path, story: Story, generator: Any) -> tuple[dict[str, Any], str]:
    """Read and check a memory file for a render of ``story`` with ``generator``.

    Returns the entity memory (plain data) and the file's sha256 (recorded in the manifest).
    """
    from longtake.generate.causal import GenerateError
    from longtake.render_state import load_state

    path = Path(path)
    if not path.is_file():
        raise RenderError(f"memory file not found: {path}")
    try:
        tree = load_state(path)
    except GenerateError:
        tree = None
    if not isinstance(tree, dict) or tree.get("format") != MEMORY_FORMAT or tree.get("version") != MEMORY_VERSION:
        raise RenderError(f"{path} is not a longtake memory file (format {MEMORY_FORMAT} v{MEMORY_VERSION}); write one with --memory-out")
    check_memory_file(tree, story, generator, path)
    return tree["entity"], hashlib.sha256(path.read_bytes()).hexdigest()


def check_memory_file(tree: dict[str, Any], story: Story, generator: Any, path: str | Path = "memory file") -> None:
    """RenderError (one line) unless ``tree`` fits a render of ``story`` with ``generator``."""
    theirs, ours = tree["cast"], _cast(story)
    shared, renamed = [], []
    for group in ("characters", "locations"):
        for eid, name in theirs.get(group, {}).items():
            if eid in ours[group]:
                shared.append(eid)
                if ours[group][eid] != name:
                    renamed.append(f"{eid} is {name!r} there, {ours[group][eid]!r} here")
    if renamed:
        raise RenderError(f"{path} is from another cast: {'; '.join(renamed)}")
    if not shared:
        names = ", ".join(sorted(theirs.get("characters", {}))) or "none"
        raise RenderError(f"{path} is from another cast: none of its characters ({names}) or locations is in this story")
    model = _model(generator)
    if tree["model"] != model:
        raise RenderError(f"{path} was made with other model weights or another model ({tree['model']['name']}); its memory fits only that model")
    size = [story.size.width, story.size.height]
    if list(tree["size"]) != size:
        raise RenderError(f"{path} was made at {tree['size'][0]}x{tree['size'][1]}, this story is {size[0]}x{size[1]}; render at the same size")
