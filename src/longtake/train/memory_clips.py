"""Clips laid out as a memory mode renders (issue 5, item 6): the mixin of
:class:`~longtake.train.data.LatentClips` that draws them.

* memory clips ``[shot sink | memory frames | chunks]``: chunks inside a shot, after its first
  chunk, with first frames of earlier chunks that show the same entities as memory;
* cut clips ``[memory frames | a shot's first chunk]``: the first chunk after a cut, which a
  memory mode makes from memory alone (docs/memory.md, "Training with memory in the loop").
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

import numpy as np
import torch
from einops import rearrange

from longtake.train.config import TrainError

if TYPE_CHECKING:
    from longtake.train.data import LatentStory


class MemoryClips:
    """Needs ``self.stories`` (list of LatentStory) and ``self.latent_frames`` (frames per chunk)."""

    stories: list[Any]
    latent_frames: int

    def _story_with(self, rng: np.random.Generator, pick, what: str):
        """A random story and one of its options ``pick(meta)`` returns (a list), drawn at random."""
        for _ in range(1000):
            story = self.stories[int(rng.integers(len(self.stories)))]
            options = pick(story.chunks)
            if options:
                return story, options[int(rng.integers(len(options)))]
        raise TrainError(f"no story has {what}")

    def _memory_frames(self, rng: np.random.Generator, story: LatentStory, before: int, trained: range, memory_frames: int) -> list[int]:
        """First-frame chunks for the memory segment: ``memory_frames`` chunks before chunk
        ``before``, most entities (characters, location) shared with the ``trained`` chunks
        first, random ties, in time order."""
        meta = story.chunks

        def shows(c: int) -> set:
            return set(meta[c].get("entities", ())) | {meta[c].get("location")}

        wanted = set().union(*(shows(c) for c in trained))
        earlier = np.arange(before)
        overlap = np.array([len(wanted & shows(int(c))) for c in earlier], dtype=float)
        order = np.lexsort((rng.random(len(earlier)), -overlap))  # most overlap first, random ties
        return sorted(int(c) for c in earlier[order[:memory_frames]])

    def _memory_segment(self, story: LatentStory, mem: list[int]) -> tuple[list[torch.Tensor], list[str]]:
        """The first latent frame of each chunk in ``mem`` (F_i, C, H, W) and one prompt per group
        of F memory frames: its first frame's chunk's (as a render writes a prototype)."""
        f = self.latent_frames
        frames = [story.latents[c * f : c * f + 1].float() for c in mem]
        return frames, [story.chunks[mem[g * f]]["prompt"] for g in range(len(mem) // f)]

    def _check_memory_frames(self, memory_frames: int) -> None:
        if memory_frames % self.latent_frames:
            raise TrainError(f"memory_frames ({memory_frames}) must be a multiple of the chunk's {self.latent_frames} latent frames")

    def memory_clip(self, rng: np.random.Generator, chunks: int, memory_frames: int) -> tuple[torch.Tensor, list[str]]:
        """One clip laid out as a render with memory attends: [shot sink | memory frames |
        ``chunks`` consecutive chunks] -> latents (C, F + memory_frames + chunks * F, H, W)
        and one prompt per group of F frames (the memory group gets its first frame's).

        The consecutive chunks j.. lie inside one shot, after its first chunk s (the shot
        sink a memory mode starts at a cut). The memory frames are the first latent frames
        (the prototypes a render records) of ``memory_frames`` chunks before s, from earlier
        shots, preferring chunks that show the entities (characters, location) of chunks j..,
        so the model learns to copy what it cannot see in its window from memory.
        """
        f = self.latent_frames
        self._check_memory_frames(memory_frames)

        def pick(meta: list) -> list[tuple[int, int]]:
            # (shot start s, first trained chunk j): j > s, j + chunks within the shot, >= memory_frames chunks before s
            starts = [c for c in range(len(meta)) if c == 0 or meta[c].get("cut")]
            options = []
            for i, s in enumerate(starts):
                end = starts[i + 1] if i + 1 < len(starts) else len(meta)
                if s >= memory_frames:
                    options += [(s, j) for j in range(s + 1, end - chunks + 1)]
            return options

        story, (s, j) = self._story_with(rng, pick, "a shot long enough after enough earlier chunks for a memory clip")
        meta = story.chunks
        mem = self._memory_frames(rng, story, s, range(j, j + chunks), memory_frames)
        frames, mem_prompts = self._memory_segment(story, mem)
        lat = torch.cat([story.latents[s * f : (s + 1) * f].float(), *frames,
                         *(story.latents[c * f : (c + 1) * f].float() for c in range(j, j + chunks))])  # (F + M + chunks*F, C, H, W)
        prompts = [meta[s]["prompt"], *mem_prompts, *[meta[c]["prompt"] for c in range(j, j + chunks)]]
        return rearrange(lat, "f c h w -> c f h w"), prompts

    def cut_clip(self, rng: np.random.Generator, memory_frames: int) -> tuple[torch.Tensor, list[str]]:
        """One clip laid out as the first chunk after a cut attends in a memory mode: the
        cut forgets sink and window, so the chunk sees [memory frames | itself] ->
        latents (C, memory_frames + F, H, W) and one prompt per group of F frames.

        The chunk is a shot's first chunk s (a cut, s >= memory_frames); the memory frames
        are first latent frames of earlier chunks that show its entities, as in
        :meth:`memory_clip`. This is the chunk where a character back after a cut is drawn
        again for the first time, and the only place it can be copied from is memory (the
        chunks after it see it in their shot sink)."""
        f = self.latent_frames
        self._check_memory_frames(memory_frames)

        def pick(meta: list) -> list[int]:
            return [c for c in range(memory_frames, len(meta)) if meta[c].get("cut")]

        story, s = self._story_with(rng, pick, f"a cut after at least {memory_frames} chunks for a cut clip")
        mem = self._memory_frames(rng, story, s, range(s, s + 1), memory_frames)
        frames, mem_prompts = self._memory_segment(story, mem)
        lat = torch.cat([*frames, story.latents[s * f : (s + 1) * f].float()])  # (M + F, C, H, W)
        prompts = [*mem_prompts, story.chunks[s]["prompt"]]
        return rearrange(lat, "f c h w -> c f h w"), prompts

    def cut_batch(self, rng: np.random.Generator, batch: int, memory_frames: int) -> tuple[torch.Tensor, list[list[str]]]:
        """(B, C, M + F, H, W) and B lists of prompts (:meth:`cut_clip`)."""
        clips = [self.cut_clip(rng, memory_frames) for _ in range(batch)]
        return torch.stack([c[0] for c in clips]), [c[1] for c in clips]

    def memory_batch(self, rng: np.random.Generator, batch: int, chunks: int, memory_frames: int) -> tuple[torch.Tensor, list[list[str]]]:
        """(B, C, F + M + chunks * F, H, W) and B lists of prompts (:meth:`memory_clip`)."""
        clips = [self.memory_clip(rng, chunks, memory_frames) for _ in range(batch)]
        return torch.stack([c[0] for c in clips]), [c[1] for c in clips]

