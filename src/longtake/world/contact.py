"""A contact sheet of StoryWorld: every location, several characters and action frames.

``python -m longtake.world.contact docs/images/storyworld_contact.png`` writes the sheet
shown in ``docs/storyworld.md``.
"""

from __future__ import annotations

import sys
from pathlib import Path

import numpy as np

from longtake.plan.planner import plan
from longtake.script.schema import Story
from longtake.world.renderer import WorldRenderer
from longtake.world.vocab import LOCATIONS

CAST = [
    ("mia", "Mia", "a woman with short black hair, a red striped shirt and blue trousers"),
    ("leo", "Leo", "a man with curly brown hair, a green checked jacket, black trousers and glasses"),
    ("ana", "Ana", "a girl with blond hair in a ponytail, a pink dotted dress and a cap"),
    ("bob", "Bob", "a bald man with a grey coat, brown trousers and a hat"),
    ("zoe", "Zoe", "a woman with long red hair, a purple sweater and white trousers"),
    ("tim", "Tim", "a boy with short brown hair, a yellow striped shirt and a beanie"),
]
LOCATION_SHOTS = [("Mia and Leo talk", ["mia", "leo"]), ("Ana jumps", ["ana"]), ("Zoe waves", ["zoe", "tim"])]
ACTION_SHOTS = [("Mia walks in from the left", "static", 0.45), ("Mia sits down", "static", 0.8), ("Mia jumps", "static", 0.4),
                ("Mia waves", "static", 0.5), ("Mia drinks coffee", "static", 0.5), ("Mia talks", "zoom_in", 0.9),
                ("Mia walks out to the right", "pan_right", 0.5), ("Mia stands", "handheld", 0.5), ("Mia waits", "fade", 0.1)]


def contact_sheet(size: int = 128, seed: int = 3) -> np.ndarray:
    """(rows*size, 9*size, 3) uint8: locations, characters, actions (one row each)."""
    scenes = [{"location": k, "shots": [{"prompt": p, "characters": c, "duration": 2}]} for i, k in enumerate(LOCATIONS) for p, c in [LOCATION_SHOTS[i % 3]]]
    scenes += [{"location": "park", "shots": [{"prompt": f"{name} waits", "characters": [cid], "duration": 2}]} for cid, name, _ in CAST]
    scenes += [{"location": "office", "shots": [{"prompt": p, "characters": ["mia"], "duration": 2, "camera": "static" if cam == "fade" else cam,
                                                 "transition": "fade" if cam == "fade" else "cut"}]} for p, cam, _ in ACTION_SHOTS]
    story = Story.model_validate({"title": "contact", "seed": seed, "size": {"width": size, "height": size},
                                  "characters": [{"id": c, "name": n, "description": d} for c, n, d in CAST],
                                  "locations": [{"id": k} for k in LOCATIONS], "scenes": scenes})
    tl = plan(story, frames_per_chunk=1)
    r = WorldRenderer(story)
    at = [0.6] * (len(LOCATIONS) + len(CAST)) + [a for *_, a in ACTION_SHOTS]
    tiles = []
    for span, u in zip(tl.shots, at):
        chunk = tl.chunks[span.first_chunk + min(span.num_chunks - 1, int(u * span.num_chunks))]
        tiles.append(r.render_chunk(chunk, masks=False)[0][0])
    cols = 9
    while len(tiles) % cols:
        tiles.append(np.full_like(tiles[0], 255))
    rows = [np.concatenate(tiles[i:i + cols], 1) for i in range(0, len(tiles), cols)]
    return np.concatenate(rows, 0)


def main(path: str = "docs/images/storyworld_contact.png") -> None:
    import matplotlib.pyplot as plt

    Path(path).parent.mkdir(parents=True, exist_ok=True)
    plt.imsave(path, contact_sheet())


if __name__ == "__main__":
    main(*sys.argv[1:])
