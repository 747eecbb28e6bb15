"""Does a relevance score pick the memory frames a chunk needs? NAM and SMA scores against the planner's tags.

Renders storyworld-bench stories in the ``nam`` memory mode and, at every chunk that has
memory frames installed, scores each of them three ways:

  nam   MemFlow's narrative relevance: the current prompt's cross-attention keys against the
        frame's self-attention keys, mean of dot products (``memory.entry.nam_scores``; what
        NAM keeps and evicts by);
  prev  the previous chunk's pooled self-attention queries (its cache-write pass) against the
        frame's pooled keys (what SMA per chunk installs by);
  cur   this chunk's own pooled queries at its first denoising pass against the frame's pooled
        keys (what SMA per head selects by at that pass);
  prompt  the prompt the frame was written under against the chunk's prompt, cosine of mean
        token embeddings of the model's text encoder (``memory.entry.prompt_similarity``; what
        NAM keeps, evicts and gates by since session 17).

The bank is run as MemFlow keeps it (MemFlow's score, no gate), so every score is judged on
the same frames.

Each score is judged by the planner's tags of the frame (shows the chunk's location; shows a
character on screen in the chunk) as a ranking: the AUC (probability that a frame with the tag
outranks one without; 0.5 = no better than chance, below 0.5 = the score prefers the wrong
frames), over all chunks with memory, over shot starts (``cut``: memory is all the context a
memory mode keeps there) and over cuts to another place. It measures retrieval, not the video.

    python bench/bench_memory_relevance.py --first 10 --stories 10 [--json cases.json]

``--json`` writes every scored frame (tags and the four scores), e.g. to set a gate.
"""

from __future__ import annotations

import argparse
import sys
from collections.abc import Callable
from typing import Any

import numpy as np
import torch


def auc(scores: list[float], labels: list[bool]) -> float | None:
    """P(score of a positive > score of a negative), ties counting half; None without both kinds."""
    s, y = np.asarray(scores, np.float64), np.asarray(labels, bool)
    pos, neg = s[y], s[~y]
    if not len(pos) or not len(neg):
        return None
    return float((pos[:, None] > neg[None]).mean() + 0.5 * (pos[:, None] == neg[None]).mean())


class QueryRecorder:
    """A memory selector that keeps every frame and records, per layer, the pooled queries of
    the first pass of a chunk and of its last pass (the cache write)."""

    def __init__(self) -> None:
        self.first: dict[int, torch.Tensor] = {}
        self.last: dict[int, torch.Tensor] = {}

    def __call__(self, layer: int, q: torch.Tensor, frames: int) -> None:
        qm = q.float().mean(dim=2)[0]  # (Nh, Dh)
        self.first.setdefault(layer, qm)
        self.last[layer] = qm
        return None


def _relevance(entries: list[Any], queries: dict[int, torch.Tensor]) -> list[float]:
    layers = sorted(queries)
    q = torch.stack([queries[i] for i in layers])  # (l, Nh, Dh)
    pooled = torch.stack([e.pooled_keys()[layers].to(q.device) for e in entries])  # (E, l, Nh, Dh)
    return (pooled * q[None]).sum(-1).mean(dim=(1, 2)).tolist()


def instrument(generator: Any, cases: list[dict[str, Any]]) -> dict[str, Any]:
    """Wrap ``generator``'s per-chunk steps (this instance only) to append one case per
    installed memory frame and chunk to ``cases``. Returns the wrapper's state (set
    ``state["prev"] = None`` before a new stream: the previous chunk's queries are per stream;
    like SMA per chunk they come from the last chunk that had memory in attention)."""
    from longtake.memory.entry import nam_scores, prompt_similarity

    before: Callable[..., Any] = generator._before_sample
    after: Callable[..., Any] = generator._after_write
    state: dict[str, Any] = {"prev": None}

    def before_sample(chunk: Any, cache: Any) -> None:
        before(chunk, cache)
        held = set(cache.frame_indices)
        entries = [e for e in (generator.memory.entries if generator.memory is not None else []) if e.frame not in held]
        state.update(chunk=chunk, entries=entries, rec=QueryRecorder(),
                     nam=nam_scores(cache.prompt, entries).tolist() if entries else [],
                     prompt=[prompt_similarity(generator.prompt_vector, chunk.prompt, e.prompt) for e in entries])
        cache.memory_selector = state["rec"]

    def after_write(chunk: Any, cache: Any, x0: torch.Tensor) -> None:
        entries, rec = state["entries"], state["rec"]
        if entries and rec.first:
            cur = _relevance(entries, rec.first)
            prev = _relevance(entries, state["prev"]) if state["prev"] else [None] * len(entries)
            for e, n, p, c, t in zip(entries, state["nam"], prev, cur, state["prompt"]):
                cases.append({"cut": chunk.cut, "new_place": chunk.new_place, "cast": bool(chunk.characters),
                              "place": e.location == chunk.location, "character": any(x in e.entities for x in chunk.characters),
                              "nam": n, "prev": p, "cur": c, "prompt": t})
        state["prev"] = dict(rec.last) if rec.last else state["prev"]
        cache.memory_selector = None
        after(chunk, cache, x0)

    generator._before_sample = before_sample
    generator._after_write = after_write
    return state


KEYS = ("nam", "prev", "cur", "prompt")


def table(cases: list[dict[str, Any]]) -> list[str]:
    out = ["| chunks | memory frames | share showing the place | AUC place: " + " / ".join(KEYS) + " | AUC character: " + " / ".join(KEYS) + " |",
           "|---|---|---|---|---|"]
    fmt = lambda v: "-" if v is None else f"{v:.2f}"  # noqa: E731
    for label, pick in (("all with memory", lambda c: True), ("shot starts (cut)", lambda c: c["cut"]),
                        ("cuts to another place", lambda c: c["new_place"])):
        cs = [c for c in cases if pick(c)]
        if not cs:
            continue
        withcast = [c for c in cs if c["cast"]]
        place = [fmt(auc([c[k] for c in cs if c[k] is not None], [c["place"] for c in cs if c[k] is not None])) for k in KEYS]
        char = [fmt(auc([c[k] for c in withcast if c[k] is not None], [c["character"] for c in withcast if c[k] is not None]))
                for k in KEYS]
        out.append(f"| {label} | {len(cs)} | {np.mean([c['place'] for c in cs]):.0%} | {' / '.join(place)} | {' / '.join(char)} |")
    return out


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--weights", default=None, help="built-in model folder (default: the shipped weights)")
    ap.add_argument("--first", type=int, default=0, help="first storyworld-bench story (0-49)")
    ap.add_argument("--stories", type=int, default=4)
    ap.add_argument("--threads", type=int, default=1)
    ap.add_argument("--json", default=None, help="also write every scored case to this file")
    args = ap.parse_args(argv)
    from longtake.generate.builtin import builtin_generator
    from longtake.memory.config import MemoryConfig
    from longtake.pipeline import plan_for, set_render_threads
    from longtake.world.bench_set import BENCH_SIZE, make_bench

    if args.first < 0 or args.stories < 1 or args.first + args.stories > BENCH_SIZE:
        ap.error(f"--first {args.first} --stories {args.stories}: expected 0 <= first, 1 <= stories, first + stories <= {BENCH_SIZE}")
    set_render_threads(args.threads)
    # MemFlow's score and no gate: the bank as MemFlow keeps it, every frame installed, so each
    # score is judged on the same frames (session 16's setting).
    gen = builtin_generator(args.weights, memory=MemoryConfig(mode="nam", nam_score="memflow"))
    cases: list[dict[str, Any]] = []
    state = instrument(gen, cases)
    for item in make_bench(args.first + args.stories)[args.first:]:
        state["prev"] = None
        for _ in gen.stream(plan_for(item.story, gen), seed=item.index):  # the seed longtake bench memory gives it
            pass
        print(f"story {item.index}: {len(cases)} memory frames scored so far", file=sys.stderr, flush=True)
    print(f"storyworld-bench stories {args.first}-{args.first + args.stories - 1}, mode nam, weights {args.weights or 'shipped'}")
    print("\n".join(table(cases)))
    if args.json:
        import json

        from longtake.atomic import write_text_atomic

        write_text_atomic(args.json, json.dumps(cases))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
