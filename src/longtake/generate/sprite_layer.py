"""The built-in model's figure layer at render time (model/sprites.py): figures drawn from each
character's own description and a *look*, pasted into a chunk's decoded frames where the
layout prior stands the characters.

A look is what the text leaves open about a character: the attributes its description does
not say and its hidden details (shoes, badge, bag, skin, watch, shades, height), drawn as
StoryWorld draws them from a seed (model/sprites.py ``resolve_look``). A character gets a
new look, from the seed of the chunk it enters in, whenever nothing shows her any more: not
the sink, not the local window (the planner's tags say who is on which frame), not a frame
the memory holds. NAM and entity memory keep a look while they hold any frame of her, also
in a chunk where their gates (or SMA) keep those frames out of attention: NAM while its bank
holds one, entity memory while her record does. So with the sink only, a character who
leaves the window (or whose place is cut away) comes back with another look. A character
with a reference image in the script gets the look read off it (model/look_reader.py) for
the whole render. This is an explicit rule, not something the DiT learnt (the layer is
outside the DiT): it lets the layer carry what the memory holds, no more (docs/memory.md,
"Looks")."""

from __future__ import annotations

from collections import OrderedDict
from collections.abc import Iterable
from typing import Any

import cv2
import numpy as np
import torch

from longtake.model.config import DiTConfig
from longtake.model.layout import LayoutPrior, introduced, name_embeddings
from longtake.model.sprites import FigureSprites, FittedLook, Look, anchors, look_from_data, look_to_data, paste_sprites
from longtake.model.text_encoder import TextEncoder
from longtake.plan.timeline import Chunk, Timeline
from longtake.world.parse import parse_location
from longtake.world.vocab import stable_seed

#: figures kept, one per (cast-sheet prompt, kind of place, look)
KEEP = 64
#: latent pixels the cleared region reaches beyond the layout boxes. 0: the boxes as the DiT is
#: given them (already one latent pixel wider than a figure). 1 read the hidden details no more
#: consistently and cost the place on 2 of 20 held-out stories (session 21, docs/memory.md)
CLEAR_MARGIN = 0
#: the cleared region is filled at 1/FILL_SCALE resolution (OpenCV's Telea inpainting), then scaled up
FILL_SCALE = 2
#: inpainting radius, pixels at the fill's resolution
FILL_RADIUS = 3


def clear_boxes(frames: np.ndarray, boxes: torch.Tensor, spatial: int, margin: int = CLEAR_MARGIN) -> np.ndarray:
    """Frames (N, H, W, 3) uint8 with the pixels of the layout boxes (E, h, w) at latent
    resolution (grown by ``margin`` latent pixels) filled in from the pixels around them
    (OpenCV's Telea inpainting at half resolution, the result scaled up). The DiT draws its
    own rough figure in those boxes, in the colours of no particular look; the layer's figures
    replace it, and what the figures do not cover would otherwise show the DiT's figure beside
    them (session 21: the probes read hidden details off those pixels). A new array."""
    region = boxes.bool().any(0).numpy().astype(np.uint8)
    if margin > 0:
        region = cv2.dilate(region, np.ones((2 * margin + 1, 2 * margin + 1), np.uint8))
    if not region.any() or region.all():
        return frames
    h, w = frames.shape[1:3]
    small = (max(1, w // FILL_SCALE), max(1, h // FILL_SCALE))
    cleared = cv2.resize(region, (w, h), interpolation=cv2.INTER_NEAREST).astype(bool)
    mask = cv2.resize(region, small, interpolation=cv2.INTER_NEAREST)
    out = frames.copy()
    for i, frame in enumerate(frames):
        low = cv2.inpaint(cv2.resize(frame, small, interpolation=cv2.INTER_AREA), mask, FILL_RADIUS, cv2.INPAINT_TELEA)
        out[i][cleared] = cv2.resize(low, (w, h), interpolation=cv2.INTER_LINEAR)[cleared]
    return out


def look_seed(seed: int, chunk_index: int) -> int:
    """The seed of the looks first drawn in chunk ``chunk_index`` of a render with ``seed``."""
    return stable_seed("longtake-look", int(seed), int(chunk_index)) % 2**31


class SpriteLayer:
    """Draws and pastes the figures of one stream (``CausalGenerator(sprites=...)``).

    Each character ``chunk.prompt`` introduces is drawn for the kind of place the chunk is in
    (its location id, else its prompt; unknown when neither names a StoryWorld place) and
    pasted where the layout prior stands it. A character's figure is read from its own
    description, the prompt ``Name (description).`` (the cast sheet's wording, as entity
    memory's references use), not from the shot's prompt: the text encoder reads a name in the
    context of the whole prompt, and a figure that followed each shot's wording would change
    clothes between shots (session 19: the example's Leo read red trousers in one shot and
    black in the next). What the description leaves open comes from the character's look
    (module docstring); ``SpriteConfig.looks`` off draws it as the decoder's average instead,
    the same every time. Names the timeline does not map to one character id get no look.

    State (:meth:`state_dict`): the looks and which characters each held frame shows, so a
    resumed render draws what an uninterrupted one draws."""

    def __init__(self, sprites: FigureSprites, text_encoder: TextEncoder, config: DiTConfig, spatial: int) -> None:
        if not config.layout_channels:
            from longtake.generate.causal import GenerateError  # defined there; imported late (causal imports this module)

            raise GenerateError("sprites stand where the layout prior places characters; this DiT has no layout input")
        self.sprites = sprites
        self.text = text_encoder
        self.slots = config.layout_slots
        self.spatial = spatial
        self._figures: OrderedDict[tuple, tuple[np.ndarray, np.ndarray]] = OrderedDict()
        self._seed = 0
        self._ids: dict[str, str] = {}  # name as prompts introduce it -> character id
        self.looks: dict[str, int | FittedLook] = {}  # character id -> seed of its current look, or one read off a reference
        self.pinned: set[str] = set()  # characters whose look a reference image set: kept for the whole render
        self._shown: dict[int, tuple[str, ...]] = {}  # held latent frame -> characters on it
        self.new_looks = 0  # looks drawn in this stream (a character's first included)

    # ------------------------------------------------------------------ state
    def start(self, timeline: Timeline, seed: int, state: dict[str, Any] | None = None) -> None:
        """Begin a stream (``state``: the generator state it resumes from, else None)."""
        names = list(timeline.characters.values())
        self._ids = {name: cid for cid, name in timeline.characters.items() if names.count(name) == 1}
        self._seed = int(seed)
        saved = (state or {}).get("sprites") or {}
        self.looks = {str(k): look_from_data(v) for k, v in (saved.get("looks") or {}).items()}
        self.pinned = {str(e) for e in saved.get("pinned") or ()}
        self._shown = {int(f): tuple(str(e) for e in es) for f, es in (saved.get("shown") or {}).items()}
        self.new_looks = int(saved.get("new_looks", 0))

    def state_dict(self) -> dict[str, Any]:
        return {"looks": {e: look_to_data(v) for e, v in self.looks.items()}, "pinned": sorted(self.pinned),
                "shown": {str(f): list(es) for f, es in self._shown.items()}, "new_looks": self.new_looks}

    def pin_looks(self, looks: dict[str, FittedLook]) -> None:
        """Looks read off the characters' reference images (model/look_reader.py): each is
        hers from the first chunk to the last, whatever the memory holds (a reference is part
        of the script, not something to remember)."""
        self.looks.update(looks)
        self.pinned |= set(looks)

    # ------------------------------------------------------------------ drawing
    def name_embedding(self, name: str, description: str) -> torch.Tensor:
        """(1, text_dim): the text encoder's output at ``name`` in her cast-sheet prompt."""
        text = f"{name} ({description})."
        tokens, limit = self.text.tokenizer.tokens, self.text.max_tokens  # type: ignore[attr-defined]
        emb = self.text.encode([text])[0]
        return name_embeddings(emb, [text], tokens, limit, 1)[0].to(self.sprites.cast.weight.device)

    def figure(self, name: str, description: str, kind: str | None, look: Look | None = None) -> tuple[np.ndarray, np.ndarray]:
        """RGB (1, h, w, 3) uint8 and alpha (1, h, w) bool of one character."""
        key = (f"{name} ({description}).", kind, look)
        if key not in self._figures:
            self._figures[key] = self.sprites.draw(self.name_embedding(name, description), kind, looks=[look])
            while len(self._figures) > KEEP:
                self._figures.popitem(last=False)
        self._figures.move_to_end(key)
        return self._figures[key]

    def _look(self, entity: str | None, chunk: Chunk, seen: set[str]) -> Look | None:
        if entity is None or not self.sprites.config.looks:
            return None
        if entity not in self.pinned and (entity not in self.looks or entity not in seen):
            self.looks[entity] = look_seed(self._seed, chunk.index)
            self.new_looks += 1
        look = self.looks[entity]
        return look if isinstance(look, FittedLook) else (int(look), entity)

    def __call__(self, chunk: Chunk, frames: np.ndarray, latent_hw: tuple[int, int], prior: LayoutPrior | None,
                 attended: Iterable[int] = (), written: Iterable[int] = (),
                 memory_tags: Iterable[tuple[str, tuple[str, ...]]] = ()) -> np.ndarray:
        """The chunk's frames (N, H, W, 3) uint8 with its characters' figures pasted (a new
        array; ``frames`` itself without a prior). ``attended``: the cached latent frames the
        chunk read (sink and window); ``written``: the latent frames it wrote;
        ``memory_tags``: (location, entity ids) the memory holds for the chunk (``MemoryGenerator.look_tags``)."""
        attended, written = set(attended), list(written)
        seen = {e for f in attended for e in self._shown.get(f, ())} | {e for _, ents in memory_tags for e in ents}
        self._shown = {f: es for f, es in self._shown.items() if f in attended}  # a frame not read now is gone for good
        if prior is None:
            self._shown.update({f: tuple(chunk.characters) for f in written})
            return frames
        kind = parse_location(chunk.location) or parse_location(chunk.prompt)
        intro = introduced(chunk.prompt, self.text.tokenizer.tokens, self.text.max_tokens)  # type: ignore[attr-defined]
        on = dict.fromkeys([*chunk.characters, *(self._ids[n] for n, _, _ in intro[: self.slots] if n in self._ids)])
        self._shown.update({f: tuple(on) for f in written})  # the planner's on-screen ids and whoever is drawn
        drawn = [self.figure(name, description, kind, self._look(self._ids.get(name), chunk, seen)) for name, _, description in intro[: self.slots]]
        if not drawn:
            return frames
        boxes = prior.masks(len(intro), self.slots, 1, *latent_hw)[:, 0]  # (E, H, W)
        where = anchors(boxes, self.spatial)[: len(drawn)]
        if self.sprites.config.clear:
            frames = clear_boxes(frames, boxes[: len(drawn)], self.spatial)
        return paste_sprites(frames, np.concatenate([d[0] for d in drawn]), np.concatenate([d[1] for d in drawn]), where)
