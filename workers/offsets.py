"""Which offsets are safe to commit: the end of the fully answered prefix per partition.

Records of a partition finish out of order (batches, priorities, retries). A
partition's commit point only moves past an offset once that record and every
record before it has its answer acknowledged by the broker, so a crash can cause
duplicates but never a lost job.
"""

from __future__ import annotations

from collections import deque
from collections.abc import Iterable
from dataclasses import dataclass, field
from typing import Generic, TypeVar

TP = TypeVar("TP")


@dataclass
class _Partition:
    pending: deque[int] = field(default_factory=deque)  # received, in offset order
    done: set[int] = field(default_factory=set)
    commit_point: int | None = None  # next offset to read after a restart
    committed: int | None = None  # last commit point handed out


class OffsetTracker(Generic[TP]):
    """Tracks received and answered offsets per partition (``TP`` is the partition key)."""

    def __init__(self) -> None:
        self._partitions: dict[TP, _Partition] = {}

    def track(self, tp: TP, offset: int) -> None:
        """A record was received; it is in flight until :meth:`done`."""
        part = self._partitions.setdefault(tp, _Partition())
        if part.pending and offset <= part.pending[-1]:
            raise ValueError(f"offset {offset} of {tp} arrived after {part.pending[-1]}")
        part.pending.append(offset)

    def done(self, tp: TP, offset: int) -> None:
        """The record's answer is acknowledged (or it needs none)."""
        part = self._partitions.get(tp)
        if part is None:
            return  # the partition was revoked and forgotten meanwhile
        part.done.add(offset)
        while part.pending and part.pending[0] in part.done:
            first = part.pending.popleft()
            part.done.discard(first)
            part.commit_point = first + 1

    def in_flight(self, tps: Iterable[TP] | None = None) -> int:
        """Records received but not answered, for the given partitions (default: all)."""
        if tps is None:
            return sum(len(p.pending) for p in self._partitions.values())
        wanted = set(tps)
        return sum(len(p.pending) for tp, p in self._partitions.items() if tp in wanted)

    def commit_points(self, tps: Iterable[TP] | None = None) -> dict[TP, int]:
        """New commit points since the last call (next offset to consume, Kafka style)."""
        wanted = None if tps is None else set(tps)
        points: dict[TP, int] = {}
        for tp, part in self._partitions.items():
            if wanted is not None and tp not in wanted:
                continue
            if part.commit_point is not None and part.commit_point != part.committed:
                points[tp] = part.commit_point
        return points

    def mark_committed(self, points: dict[TP, int]) -> None:
        for tp, offset in points.items():
            part = self._partitions.get(tp)
            if part is not None:
                part.committed = offset

    def forget(self, tps: Iterable[TP]) -> None:
        """Drop partitions that were revoked: their unanswered records belong to another owner."""
        for tp in set(tps):
            self._partitions.pop(tp, None)
