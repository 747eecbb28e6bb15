"""WorldRenderer: a Story in StoryWorld's vocabulary -> frames and exact ground truth.

Rendering is stateless per chunk: everything a frame depends on (the shot's actions, who is
seated when the shot begins, the camera, the hidden details) is computed from the story, the
seed and the chunk, so any chunk renders on its own and the same seed gives the same bytes.

Per frame: the camera gives a view rectangle of the location's world canvas (cached per
location); the canvas region under the view is copied, the characters' cached sprites are
pasted with their masks (writing their labels into a label image), and the region is
resampled to the frame with nearest-neighbour index arrays, pixels and labels alike, so the
mask is exact by construction.
"""

from __future__ import annotations

import logging
from collections.abc import Iterator

import numpy as np

from longtake.plan.timeline import Chunk, Timeline
from longtake.script.schema import Story
from longtake.world.actions import ActorState, actor_state, seated_after
from longtake.world.camera import View, camera_view
from longtake.world.characters import Pose, Sprite, draw_figure, figure_height
from longtake.world.errors import WorldError
from longtake.world.locations import GROUND, WORLD_W, Background, build_background
from longtake.world.parse import check_story, location_kind, parse_appearance, shot_actions
from longtake.world.truth import CharacterTruth, FrameTruth
from longtake.world.vocab import draw_hidden, resolve_appearance, stable_seed

log = logging.getLogger(__name__)

FADE_SECONDS = 0.5


class WorldRenderer:
    """Render ``story`` (checked against the vocabulary first; :class:`WorldError` otherwise).

    ``width``/``height`` default to the story's size; ``seed`` to the story's seed. The seed
    fixes hidden details, unspecified attributes, prop placement and handheld shake.
    """

    def __init__(self, story: Story, *, width: int | None = None, height: int | None = None, seed: int | None = None) -> None:
        check_story(story)
        self.story = story
        self.width = int(width or story.size.width)
        self.height = int(height or story.size.height)
        if self.width < 16 or self.height < 16:
            raise WorldError(f"frame size {self.width}x{self.height} is too small; StoryWorld needs at least 16x16")
        self.seed = int(story.seed if seed is None else seed)
        self.fps = story.fps
        self.cast = [c.id for c in story.characters]
        self.labels = {cid: i + 1 for i, cid in enumerate(self.cast)}
        self.described = {c.id: parse_appearance(c.description) for c in story.characters}
        self.appearance = {cid: resolve_appearance(a, self.seed, cid) for cid, a in self.described.items()}
        self.hidden = {cid: draw_hidden(self.seed, cid) for cid in self.cast}
        self.fig_h = {cid: figure_height(self.height, self.appearance[cid], self.hidden[cid]) for cid in self.cast}
        self.kinds = {loc.id: location_kind(loc) for loc in story.locations}
        self._actions: dict[tuple[int, int], dict[str, list[str]]] = {}
        self._start_seated: dict[tuple[int, int], dict[str, bool]] = {}
        for si, scene in enumerate(story.scenes):
            seated: dict[str, bool] = {}
            for hi, shot in enumerate(scene.shots):
                acts = shot_actions(story, si, hi)[0]
                self._actions[si, hi] = acts
                self._start_seated[si, hi] = {cid: seated.get(cid, False) for cid in shot.characters}
                seated = {cid: seated_after(acts[cid], seated.get(cid, False)) for cid in shot.characters}
        self._backgrounds: dict[str, Background] = {}
        self._sprites: dict[tuple[str, Pose, str], Sprite] = {}

    # -- caches ------------------------------------------------------------------------
    def background(self, location: str) -> Background:
        if location not in self._backgrounds:
            rng = np.random.default_rng(stable_seed("storyworld-location", self.seed, location))
            self._backgrounds[location] = build_background(self.kinds[location], self.width, self.height, rng)
        return self._backgrounds[location]

    def sprite(self, cid: str, pose: Pose, location: str) -> Sprite:
        key = (cid, pose, location)
        if key not in self._sprites:
            light = self.background(location).light
            self._sprites[key] = draw_figure(self.appearance[cid], self.hidden[cid], pose, self.fig_h[cid], light)
        return self._sprites[key]

    # -- rendering ---------------------------------------------------------------------
    def render(self, timeline: Timeline, *, masks: bool = True) -> Iterator[tuple[Chunk, np.ndarray, list[FrameTruth]]]:
        """Every chunk of ``timeline``, in order."""
        for chunk in timeline.chunks:
            frames, truths = self.render_chunk(chunk, masks=masks)
            yield chunk, frames, truths

    def render_chunk(self, chunk: Chunk, *, masks: bool = True, only: list[str] | None = None) -> tuple[np.ndarray, list[FrameTruth]]:
        """Frames (N, H, W, 3) uint8 RGB and N FrameTruth of ``chunk``.

        ``masks=False`` leaves ``FrameTruth.mask`` None (boxes are still exact). ``only``
        draws just those characters (an empty list: the bare location), for checks.
        """
        W, H, N = self.width, self.height, chunk.num_frames
        si, hi = chunk.scene, chunk.shot_in_scene
        acts = self._actions[si, hi]
        start_seated = self._start_seated[si, hi]
        cast = [c for c in chunk.characters if only is None or c in only]
        bg = self.background(chunk.location)
        s0, s1 = chunk.shot_span
        shot_frames = max(1, round(N / max(s1 - s0, 1e-9)))
        shot_seconds = shot_frames / self.fps
        n_on = len(chunk.characters)
        spacing = min(0.3 * W, 0.75 * W / max(n_on - 1, 1))
        slots = {cid: WORLD_W * W / 2 + (i - (n_on - 1) / 2) * spacing for i, cid in enumerate(chunk.characters)}
        shake = tuple(np.random.default_rng(stable_seed("storyworld-shake", self.seed, chunk.shot)).uniform(0, 2 * np.pi, 4))
        ground = GROUND * H
        out = np.empty((N, H, W, 3), np.uint8)
        truths: list[FrameTruth] = []
        cols = np.arange(W, dtype=np.float64) + 0.5
        rows = np.arange(H, dtype=np.float64) + 0.5
        canvas_h, canvas_w = bg.image.shape[:2]
        for f in range(N):
            u = s0 + (s1 - s0) * f / N
            t_abs = (chunk.start_frame + f) / self.fps
            t_shot = u * shot_seconds
            view = camera_view(chunk.camera, u, t_abs, W, H, shake)  # type: ignore[arg-type]
            ix = np.clip((view.x0 + cols * view.vw / W).astype(np.int64), 0, canvas_w - 1)
            iy = np.clip((view.y0 + rows * view.vh / H).astype(np.int64), 0, canvas_h - 1)
            rx0, rx1, ry0, ry1 = int(ix[0]), int(ix[-1]) + 1, int(iy[0]), int(iy[-1]) + 1
            region = bg.image[ry0:ry1, rx0:rx1].copy()
            if bg.waves is not None:
                wy0, wy1 = max(bg.waves[0], ry0), min(bg.waves[1], ry1)
                if wy1 > wy0:
                    shift = int(t_abs * 0.08 * W)
                    src_cols = (np.arange(rx0, rx1) - shift) % canvas_w
                    region[wy0 - ry0 : wy1 - ry0] = bg.image[wy0:wy1][:, src_cols]
            label = np.zeros(region.shape[:2], np.uint8)
            states: dict[str, ActorState] = {}
            for cid in cast:
                margin = 0.5 * self.fig_h[cid] + 2
                st = actor_state(acts[cid], start_seated.get(cid, False), u, shot_seconds, t_abs, slots[cid],
                                 view.x0 - margin, view.x0 + view.vw + margin, self.fig_h[cid], W)
                states[cid] = st
                spr = self.sprite(cid, st.pose, chunk.location)
                _paste(region, label, spr, int(round(st.x)) - spr.ax - rx0, int(round(ground - st.lift)) - spr.ay - ry0, self.labels[cid])
            frame = region[(iy - ry0)[:, None], (ix - rx0)[None, :]]
            lab = label[(iy - ry0)[:, None], (ix - rx0)[None, :]]
            fade = 1.0
            if chunk.transition == "fade" and t_shot < FADE_SECONDS:
                fade = t_shot / FADE_SECONDS
                frame = (frame.astype(np.float32) * fade).astype(np.uint8)
            out[f] = frame
            truths.append(self._truth(chunk, f, view, fade, states, lab, masks))
        return out, truths

    def _truth(self, chunk: Chunk, f: int, view: View, fade: float, states: dict[str, ActorState], lab: np.ndarray, masks: bool) -> FrameTruth:
        chars = []
        for cid, st in states.items():
            k = self.labels[cid]
            m = lab == k
            r = np.flatnonzero(m.any(1))
            c = np.flatnonzero(m.any(0))
            bbox = (int(c[0]), int(r[0]), int(c[-1]) + 1, int(r[-1]) + 1) if r.size else None
            chars.append(CharacterTruth(cid, k, bbox, bbox is not None, st.action, st.phase, self.appearance[cid], self.hidden[cid], self.described[cid]))
        return FrameTruth(
            frame=chunk.start_frame + f, chunk=chunk.index, scene=chunk.scene, shot=chunk.shot, location=chunk.location,
            location_kind=self.kinds[chunk.location] or "", camera={"move": chunk.camera, "dx": view.dx, "dy": view.dy, "zoom": view.zoom},
            fade=round(fade, 4), characters=chars, mask=lab if masks else None,
        )

    def meta(self) -> dict:
        """What a truth file records about this render."""
        return {"title": self.story.title, "width": self.width, "height": self.height, "fps": self.fps, "seed": self.seed,
                "story_hash": self.story.content_hash(), "cast": self.cast, "locations": self.kinds}


def _paste(region: np.ndarray, label: np.ndarray, spr: Sprite, left: int, top: int, k: int) -> None:
    """Paste ``spr`` with its top-left corner at (left, top) of ``region``, clipped."""
    h, w = spr.alpha.shape
    rh, rw = label.shape
    x0, y0, x1, y1 = max(left, 0), max(top, 0), min(left + w, rw), min(top + h, rh)
    if x0 >= x1 or y0 >= y1:
        return
    sl = (slice(y0 - top, y1 - top), slice(x0 - left, x1 - left))
    a = spr.alpha[sl]
    sub = region[y0:y1, x0:x1]
    sub[a] = spr.rgb[sl][a]
    lab = label[y0:y1, x0:x1]
    lab[a] = 0
    lab[spr.own[sl]] = k
