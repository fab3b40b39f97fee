"""Which batches run their inference on the event loop instead of in a thread.

A batch's inference runs in an executor so that the event loop keeps polling while
the model works. For a small model at steady traffic (one-row jobs arriving one by
one) the hop costs more than the work: handing a 10 µs inference to a thread and
its answer back wakes two threads and the event loop's self-pipe, and the two
threads take turns at the GIL, for every batch. :class:`InlineRule` learns, per
batcher, the largest batch whose inference took less than ``limit_ms`` (timed
whichever way it ran, the hop included), and lets batches up to that size run on
the loop: a batch that then takes longer than ``limit_ms`` sends batches of its
size and larger back to the executor. The loop is thus never held longer than
about ``limit_ms`` by a model that keeps its pace; ``limit_ms`` 0 turns it off.
"""

from __future__ import annotations

__all__ = ["InlineRule"]


class InlineRule:
    """Learns which batch sizes infer in under ``limit_ms``: :meth:`inline` asks,
    :meth:`took` tells how long a batch took. The first batch always goes to the
    executor (a model's first call is often its slowest)."""

    __slots__ = ("_fast_rows", "_limit_s")

    def __init__(self, limit_ms: float) -> None:
        self._limit_s = limit_ms / 1000
        self._fast_rows = 0  # batches of up to this many rows were fast

    def inline(self, rows: int) -> bool:
        """Whether a batch of ``rows`` rows runs on the event loop."""
        return rows <= self._fast_rows

    def took(self, rows: int, seconds: float) -> None:
        """A batch of ``rows`` rows took ``seconds`` (in a thread: with the hop)."""
        if seconds < self._limit_s:
            self._fast_rows = max(self._fast_rows, rows)
        else:  # as slow or slower for as many rows or more
            self._fast_rows = min(self._fast_rows, rows - 1)
