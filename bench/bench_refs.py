"""Reference images set a character's look: how much of it the built-in model carries.

For every character of storyworld-bench stories (held-out looks: never in any training), the
ground-truth renderer's frame where she stands largest (whole, inside the frame, overlapping
no one, no fade) gives her **reference image**: her box grown by 0.15 of her height on every
side, as a user would cut one. Then:

  read      the look reader's reading of the crop (model/look_reader.py) against the truth
            StoryWorld drew her with, per part: the hidden details (skin, shoes, badge shape,
            colour and side, bag and its colour, watch; a colour only where the item exists)
            and the attributes her description leaves open (what a look must supply);
  drawn     the figure the layer draws for her with that look (pose "talk", the frame's kind
            of place), pasted where she stood in that frame after her own pixels are filled
            in from around them, read by the StoryWorld probes (docs/probes.md; trained on
            ground truth only, never used by the reader): share of the probes' hidden-detail
            readings equal to their readings of her in the ground-truth frame (an item's
            colour or side only where both readings see the item, as the memory bench);
  seeded    the same with the look the layer draws without a reference (the seed of the
            render's first chunk): what a reference adds;
  truth     the probes' agreement with themselves: the ground-truth frame against itself
            re-rendered one frame later (same look), the ceiling the probes allow.

    python bench/bench_refs.py --first 10 --stories 20
"""

from __future__ import annotations

import argparse
import sys
import time

import cv2
import numpy as np

MARGIN = 0.15  # a reference: her box grown by this share of her height on every side
PARTS = ("skin_tone", "shoe_colour", "badge_shape", "badge_colour", "badge_side", "bag", "bag_colour", "watch")


def tally(count: list[int], right: bool) -> None:
    """[right, judged] += [right, 1]."""
    count[0] += int(right)
    count[1] += 1


def exists(part: str, hid) -> bool:
    if part in ("badge_colour", "badge_side"):
        return hid.badge_shape != "none"
    if part == "bag_colour":
        return hid.bag != "none"
    return True


def best_views(story, timeline, renderer):
    """Per character: (area, frame, its truth, the frame's truth, the next frame, its truth) of her largest whole view."""
    best: dict = {}
    for chunk in timeline.chunks:
        frames, truths = renderer.render_chunk(chunk, masks=True)
        for i, tr in enumerate(truths[:-1]):
            if tr.fade < 1.0 or truths[i + 1].fade < 1.0:
                continue
            boxes = [c.bbox for c in tr.characters if c.visible and c.bbox]
            for c in tr.characters:
                if not (c.visible and c.bbox):
                    continue
                x0, y0, x1, y1 = c.bbox
                if x0 <= 1 or y0 <= 1 or x1 >= frames.shape[2] - 1 or y1 >= frames.shape[1] - 1 or y1 - y0 < 24:
                    continue
                if any(o != c.bbox and not (o[2] <= x0 or o[0] >= x1 or o[3] <= y0 or o[1] >= y1) for o in boxes):
                    continue
                area = (x1 - x0) * (y1 - y0)
                if c.id not in best or area > best[c.id][0]:
                    best[c.id] = (area, frames[i].copy(), c, tr, frames[i + 1].copy(), truths[i + 1])
    return best


def crop(img: np.ndarray, box, margin: float = MARGIN) -> np.ndarray:
    """Her box grown by ``margin`` of her height on every side (edges repeated past the frame)."""
    x0, y0, x1, y1 = box
    m = int(round((y1 - y0) * margin))
    pad = np.pad(img, ((m, m), (m, m), (0, 0)), mode="edge")
    return pad[y0 : y1 + 2 * m, x0 : x1 + 2 * m].copy()


def swap_figure(frame: np.ndarray, mask: np.ndarray, box, rgb: np.ndarray, alpha: np.ndarray) -> np.ndarray:
    """``frame`` with the figure under ``mask`` filled in from around it and (rgb, alpha) standing at its feet."""
    from longtake.model.sprites import paste_sprites

    hole = cv2.dilate(mask.astype(np.uint8), np.ones((3, 3), np.uint8))
    clean = cv2.inpaint(frame, hole, 3, cv2.INPAINT_TELEA)
    rows, cols = np.nonzero(mask[box[1] + int(0.4 * (box[3] - box[1])) : box[3]])
    cx = int(round(cols.mean())) if cols.size else (box[0] + box[2]) // 2
    return paste_sprites(clean[None], rgb, alpha, [(box[3], cx)])[0]


def reading(probes, frame: np.ndarray, box) -> dict | None:
    """The probes' hidden-detail readings of the instance overlapping ``box`` most (IoU >= 0.3)."""
    best, score = None, 0.3
    for inst in probes.instances(frame[None])[0]:
        a, b = inst.box, box
        iw, ih = max(0, min(a[2], b[2]) - max(a[0], b[0])), max(0, min(a[3], b[3]) - max(a[1], b[1]))
        inter = iw * ih
        iou = inter / max(1, (a[2] - a[0]) * (a[3] - a[1]) + (b[2] - b[0]) * (b[3] - b[1]) - inter)
        if iou >= score:
            best, score = inst.hidden, iou
    return best


def story_args(doc: str, argv: list[str] | None, *, threads: int, long: bool = False) -> argparse.Namespace:
    """--first, --stories (storyworld-bench stories), --threads (set here), --weights; ``long``:
    also --long (storyworld-bench-long's stories instead)."""
    ap = argparse.ArgumentParser(description=doc.split("\n")[0])
    if long:
        ap.add_argument("--long", action="store_true", help="storyworld-bench-long (180 s stories, returns after >= 65 s)")
    ap.add_argument("--first", type=int, default=10)
    ap.add_argument("--stories", type=int, default=20)
    ap.add_argument("--threads", type=int, default=threads)
    ap.add_argument("--weights", default=None, help="a built-in model folder (default: the shipped one)")
    args = ap.parse_args(argv)
    import torch

    torch.set_num_threads(args.threads)
    return args


def main(argv: list[str] | None = None) -> int:
    args = story_args(__doc__, argv, threads=1)
    from longtake.eval.probe_data import ATTRIBUTES, attribute_labels, comparable_hidden
    from longtake.eval.probes import StoryWorldProbes
    from longtake.generate import builtin_generator
    from longtake.generate.sprite_layer import look_seed
    from longtake.model.look_reader import normal_window, read_look, read_window
    from longtake.model.sprites import resolve_look
    from longtake.pipeline import plan_for
    from longtake.world.bench_set import make_bench
    from longtake.world.parse import parse_appearance
    from longtake.world.renderer import WorldRenderer

    gen = builtin_generator(args.weights, memory="sink")
    layer, reader = gen._sprite_layer, gen.look_reader
    if layer is None or reader is None:
        print("the built-in model has no figure layer or no look reader (longtake train-look-reader --install)", file=sys.stderr)
        return 2
    probes = StoryWorldProbes.load()
    items = make_bench(args.first + args.stories)[args.first :]
    read = {p: [0, 0] for p in PARTS}
    read_true_box = {p: [0, 0] for p in PARTS}
    seeded_read = {p: [0, 0] for p in PARTS}
    open_right = [0, 0]
    open_seeded = [0, 0]
    agree = {"drawn": [0, 0], "seeded": [0, 0], "truth": [0, 0]}
    missed = {"drawn": 0, "seeded": 0, "truth": 0}
    seconds = []
    n_chars = 0
    for item in items:
        story = item.story
        timeline = plan_for(story, gen)
        renderer = WorldRenderer(story)
        views = best_views(story, timeline, renderer)
        chars = {c.id: c for c in story.characters}
        for cid, (area, frame, truth, ftruth, nxt, ntruth) in sorted(views.items()):
            n_chars += 1
            c = chars[cid]
            ref = crop(frame, truth.bbox)
            t0 = time.perf_counter()
            look = read_look(reader, [ref], cid)
            seconds.append(time.perf_counter() - t0)
            m = int(round((truth.bbox[3] - truth.bbox[1]) * MARGIN))  # her box inside the crop
            true_box = (m, m, m + truth.bbox[2] - truth.bbox[0], m + truth.bbox[3] - truth.bbox[1])
            look_tb = read_window(reader, normal_window(ref, true_box))
            seed_look = look_seed(item.seed, 0)
            names = layer.name_embedding(c.name, c.description)
            said = layer.sprites.attributes(names).cpu()[0]
            s_labels, s_hidden = resolve_look(said, seed_look, cid)
            hid = truth.hidden
            for p in (p for p in PARTS if exists(p, hid)):
                for table, got in ((read, look.hidden), (read_true_box, look_tb.hidden), (seeded_read, s_hidden)):
                    tally(table[p], getattr(got, p) == getattr(hid, p))
            described = attribute_labels(parse_appearance(c.description))
            drawn_attrs = attribute_labels(truth.appearance)
            for a in range(len(ATTRIBUTES)):
                if described[a] < 0 and drawn_attrs[a] >= 0:
                    tally(open_right, int(look.labels(said)[a]) == drawn_attrs[a])
                    tally(open_seeded, int(s_labels[a]) == drawn_attrs[a])
            want = reading(probes, frame, truth.bbox)
            mask = ftruth.mask == truth.label
            kind = ftruth.location_kind
            for key, lk in (("drawn", look), ("seeded", (seed_look, cid))):
                rgb, alpha = layer.sprites.draw(names, kind, looks=[lk])
                got = reading(probes, swap_figure(frame, mask, truth.bbox, rgb, alpha), truth.bbox)
                if want is None or got is None:
                    missed[key] += 1
                    continue
                for p in comparable_hidden(want, got):
                    tally(agree[key], want.get(p, "absent") == got.get(p, "absent"))
            ntr = next((o for o in ntruth.characters if o.id == cid and o.visible and o.bbox), None)
            again = reading(probes, nxt, ntr.bbox) if ntr is not None else None
            if want is None or again is None:
                missed["truth"] += 1
            else:
                for p in comparable_hidden(want, again):
                    tally(agree["truth"], want.get(p, "absent") == again.get(p, "absent"))
        print(f"story {item.index}: {len(views)} characters", file=sys.stderr, flush=True)

    pct = lambda a: f"{100 * a[0] / max(1, a[1]):.1f}% ({a[0]}/{a[1]})"
    print(f"\n{n_chars} characters of storyworld-bench stories {args.first}-{args.first + args.stories - 1}; "
          f"reading a reference: median {1000 * float(np.median(seconds)):.0f} ms")
    print("\n| part | look reader right | the same on her true box | seeded look right |\n|---|---|---|---|")
    for p in PARTS:
        print(f"| {p} | {pct(read[p])} | {pct(read_true_box[p])} | {pct(seeded_read[p])} |")
    total = lambda d: [sum(d[p][0] for p in PARTS), sum(d[p][1] for p in PARTS)]
    print(f"| all hidden details | {pct(total(read))} | {pct(total(read_true_box))} | {pct(total(seeded_read))} |")
    if open_right[1]:
        print(f"| attributes the description leaves open | {pct(open_right)} | - | {pct(open_seeded)} |")
    print("\n| figure judged by the probes | hidden readings equal to the reference's | not found |\n|---|---|---|")
    print(f"| drawn with the look read off the reference | {pct(agree['drawn'])} | {missed['drawn']} |")
    print(f"| drawn with a seeded look (no reference) | {pct(agree['seeded'])} | {missed['seeded']} |")
    print(f"| ground truth, the next frame | {pct(agree['truth'])} | {missed['truth']} |")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
