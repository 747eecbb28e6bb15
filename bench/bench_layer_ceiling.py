"""How alike the probes read the figure layer's figure at a return: the ceiling of `bench memory`'s hidden = for the built-in model.

`longtake bench memory` compares the probes' hidden-detail readings of a returning
character with those of her first appearance; its ground-truth row says how alike the
probes read StoryWorld's own figure in those frames. The built-in model draws its
characters with the figure layer instead (docs/models.md), which the probes were not
trained on. This script takes the same returns and sample frames of storyworld-bench's
ground truth and, in every sample frame, fills her own pixels in from around them and
pastes the layer's figure of her, always with the same look (the seed of the render's first
chunk), where she stood, drawn for that frame's kind of place. The figure is the same on both
sides, so every difference is the probes reading it in another frame: a memory that keeps
her look perfectly scores this, not the ground truth's row.

Readings, votes and counts are the memory bench's (first 3 views the probes find per side,
`hidden_majority`, `hidden_readings`); the ground-truth row is computed the same way
here and equals the bench's.

A figure that draws no badge, bag or watch reads alike everywhere, so the table also says
how much of the look each figure shows: "look read back" is the share of the hidden details
the figure should show (StoryWorld's for her, the look's for the layer; an item's colour and
side only where she has the item; the hat's colour left out) that the probes read off the
views above, one count per view and detail.

    python bench/bench_layer_ceiling.py --first 10 --stories 20
    python bench/bench_layer_ceiling.py --long --first 0 --stories 16   # storyworld-bench-long, returns after >= 65 s
"""

from __future__ import annotations

import sys

import numpy as np

from bench_refs import reading, story_args, swap_figure

def main(argv: list[str] | None = None) -> int:
    args = story_args(__doc__, argv, threads=2, long=True)
    from longtake.eval.memory_bench import hidden_readings, plan_story
    from longtake.eval.metrics_probes import REF_SAMPLES
    from longtake.eval.probe_data import HIDDEN, hidden_labels, hidden_majority
    from longtake.eval.probes import StoryWorldProbes
    from longtake.generate import builtin_generator
    from longtake.generate.sprite_layer import look_seed
    from longtake.pipeline import plan_for
    from longtake.world import bench_set
    from longtake.world.renderer import WorldRenderer
    from longtake.world.vocab import draw_hidden

    def shown(hid, app) -> dict[str, str]:  # the hidden details a figure with ``hid`` shows, in the probes' words
        return {k: HIDDEN[k][i] for k, i in zip(HIDDEN, hidden_labels(hid, app)) if i >= 0 and k != "hat_colour"}

    gen = builtin_generator(args.weights, memory="sink")
    layer = gen._sprite_layer
    if layer is None:
        print("the built-in model has no figure layer", file=sys.stderr)
        return 2
    probes = StoryWorldProbes.load()
    rows = ("ground truth (StoryWorld's figure)", "the layer's figure, one look")
    judged: dict[str, list[dict]] = {r: [] for r in rows}  # per row, the returns as the bench's scoring records them
    back: dict[str, list[int]] = {r: [0, 0] for r in rows}  # per row, [details read as drawn, details]
    spec = bench_set.bench_spec(args.long)
    gap = spec.min_return_gap
    for item in spec.make(args.first + args.stories)[args.first :]:
        story = item.story
        timeline = plan_for(story, gen)
        renderer = WorldRenderer(story)
        chunks = [renderer.render_chunk(ch, masks=True) for ch in timeline.chunks]
        frames = np.concatenate([f for f, _ in chunks])
        truths = [t for _, ts in chunks for t in ts]
        plan = plan_story(story, timeline, truths, min_return_gap=gap)
        chars = {c.id: c for c in story.characters}
        for case in plan.returns:
            c = chars[case.character]
            look = (look_seed(item.seed, 0), c.id)
            app = renderer.appearance[c.id]
            wanted = dict(zip(rows, (shown(renderer.hidden[c.id], app), shown(draw_hidden(*look), app))))
            sides: dict[str, tuple[list, list]] = {r: ([], []) for r in rows}
            for side, candidates in enumerate((case.first, case.back)):
                for f in candidates:
                    if all(len(sides[row][side]) == REF_SAMPLES for row in rows):
                        break
                    tr = truths[f]
                    me = next(o for o in tr.characters if o.id == c.id)
                    rgb, alpha = layer.figure(c.name, c.description, tr.location_kind, look)
                    pasted = swap_figure(frames[f], tr.mask == me.label, me.bbox, rgb, alpha)
                    for row, image in zip(rows, (frames[f], pasted)):
                        got = reading(probes, image, me.bbox)
                        if got is not None and len(sides[row][side]) < REF_SAMPLES:
                            sides[row][side].append(got)
                            back[row][0] += sum(got.get(k) == v for k, v in wanted[row].items())
                            back[row][1] += len(wanted[row])
            for row, (a, b) in sides.items():
                judged[row].append({"found": bool(a and b), "hidden_first": hidden_majority(a), "hidden_back": hidden_majority(b)})
        print(f"story {item.index}: {len(plan.returns)} returns", file=sys.stderr, flush=True)

    print(f"\n{len(judged[rows[0]])} returns (absence >= {gap:g} s) of {spec.name} stories {args.first}-{args.first + args.stories - 1}\n")
    print("| figure in the ground-truth frames | hidden readings equal (first appearance vs return) | misses | look read back |\n|---|---|---|---|")
    for row in rows:
        h = hidden_readings(judged[row])
        e, t = h["hidden_readings_equal"], h["hidden_readings"]
        detail = ", ".join(f"{k} {v}" for k, v in h["hidden_misses"].items())
        r, n = back[row]
        print(f"| {row} | {100 * e / max(1, t):.1f}% ({e}/{t}) | {detail} | {100 * r / max(1, n):.1f}% ({r}/{n}) |")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
