"""A generator wrapper that stops a render part-way, as a killed process would (shared by tests)."""

from __future__ import annotations


class Interrupted(Exception):
    pass


class StopAfter:
    """Wraps a generator and raises :class:`Interrupted` after ``n`` chunks."""

    def __init__(self, gen, n: int):
        self.gen, self.n = gen, n

    def info(self):
        return self.gen.info()

    def state_dict(self):
        return self.gen.state_dict()

    def stream(self, timeline, **kw):
        for i, fc in enumerate(self.gen.stream(timeline, **kw)):
            if i == self.n:
                raise Interrupted
            yield fc
