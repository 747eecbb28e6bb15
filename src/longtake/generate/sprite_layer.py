"""The built-in model's figure layer at render time (model/sprites.py): figures drawn from each
character's own description and pasted into a chunk's decoded frames where the layout prior
stands the characters."""

from __future__ import annotations

from collections import OrderedDict

import numpy as np

from longtake.model.config import DiTConfig
from longtake.model.layout import LayoutPrior, introduced, name_embeddings
from longtake.model.sprites import FigureSprites, anchors, paste_sprites
from longtake.model.text_encoder import TextEncoder
from longtake.plan.timeline import Chunk
from longtake.world.parse import parse_location

#: figures kept, one per (cast-sheet prompt, kind of place)
KEEP = 64


class SpriteLayer:
    """Draws and pastes the figures of one stream (``CausalGenerator(sprites=...)``).

    Each character ``chunk.prompt`` introduces is drawn for the kind of place the chunk is in
    (its location id, else its prompt; unknown when neither names a StoryWorld place) and
    pasted where the layout prior stands it. A character's figure is read from its own
    description, the prompt ``Name (description).`` (the cast sheet's wording, as entity
    memory's references use), not from the shot's prompt: the text encoder reads a name in the
    context of the whole prompt, and a figure that followed each shot's wording would change
    clothes between shots (session 19: the example's Leo read red trousers in one shot and
    black in the next). A figure is a function of (description, place), so a resumed render
    draws what an uninterrupted one draws; the last :data:`KEEP` are kept."""

    def __init__(self, sprites: FigureSprites, text_encoder: TextEncoder, config: DiTConfig, spatial: int) -> None:
        if not config.layout_channels:
            from longtake.generate.causal import GenerateError  # defined there; imported late (causal imports this module)

            raise GenerateError("sprites stand where the layout prior places characters; this DiT has no layout input")
        self.sprites = sprites
        self.text = text_encoder
        self.slots = config.layout_slots
        self.spatial = spatial
        self._figures: OrderedDict[tuple[str, str | None], tuple[np.ndarray, np.ndarray]] = OrderedDict()

    def figure(self, name: str, description: str, kind: str | None) -> tuple[np.ndarray, np.ndarray]:
        """RGB (1, h, w, 3) uint8 and alpha (1, h, w) bool of one character."""
        key = (f"{name} ({description}).", kind)
        if key not in self._figures:
            tokens, limit = self.text.tokenizer.tokens, self.text.max_tokens  # type: ignore[attr-defined]
            emb = self.text.encode([key[0]])[0]
            names = name_embeddings(emb, [key[0]], tokens, limit, 1)[0]  # (1, text_dim)
            self._figures[key] = self.sprites.draw(names.to(self.sprites.cast.weight.device), kind)
            while len(self._figures) > KEEP:
                self._figures.popitem(last=False)
        self._figures.move_to_end(key)
        return self._figures[key]

    def __call__(self, chunk: Chunk, frames: np.ndarray, latent_hw: tuple[int, int], prior: LayoutPrior | None) -> np.ndarray:
        """The chunk's frames (N, H, W, 3) uint8 with its characters' figures pasted (a new
        array; ``frames`` itself without a prior)."""
        if prior is None:
            return frames
        kind = parse_location(chunk.location) or parse_location(chunk.prompt)
        intro = introduced(chunk.prompt, self.text.tokenizer.tokens, self.text.max_tokens)  # type: ignore[attr-defined]
        drawn = [self.figure(name, description, kind) for name, _, description in intro[: self.slots]]
        if not drawn:
            return frames
        boxes = prior.masks(len(intro), self.slots, 1, *latent_hw)[:, 0]  # (E, H, W)
        where = anchors(boxes, self.spatial)[: len(drawn)]
        return paste_sprites(frames, np.concatenate([d[0] for d in drawn]), np.concatenate([d[1] for d in drawn]), where)
