"""Which offsets are safe to commit: the end of the fully answered prefix per partition.

Records of a partition finish out of order (batches, priorities, retries). A
partition's commit point only moves past an offset once that record and every
record before it has its answer acknowledged by the broker, so a crash can cause
duplicates but never a lost job.

A record that failed with a retriable error is *held*: it stays unanswered, so the
commit point stops before it, until it is read again (the consumer seeks back to
:meth:`OffsetTracker.held`) and answered; :meth:`OffsetTracker.hold` counts its
attempts so that the caller can give up and answer it after a bound.
"""

from __future__ import annotations

import math
from collections import deque
from collections.abc import Iterable
from dataclasses import dataclass, field
from typing import Generic, TypeVar

TP = TypeVar("TP")


@dataclass(slots=True)
class _Partition:
    pending: deque[int] = field(default_factory=deque)  # received, in offset order
    done: set[int] = field(default_factory=set)
    held: set[int] = field(default_factory=set)  # pending, waiting to be read again
    holds: dict[int, int] = field(default_factory=dict)  # times held, per offset
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

    def awaits(self, tp: TP, offset: int) -> bool:
        """Whether ``offset`` of ``tp`` is in flight: received and not yet answered
        (False once its partition is forgotten, or its answer counted)."""
        part = self._partitions.get(tp)
        return (
            part is not None
            and bool(part.pending)
            and part.pending[0] <= offset <= part.pending[-1]
            and offset not in part.done
        )

    def seen(self, tp: TP, offset: int) -> bool:
        """Whether ``offset`` is at or before the last record tracked in flight: read
        again after a seek, so it goes through :meth:`reread` rather than :meth:`track`."""
        part = self._partitions.get(tp)
        return part is not None and bool(part.pending) and offset <= part.pending[-1]

    def reread(self, tp: TP, offset: int) -> bool:
        """A record read again after a seek, or read on past it: True when it is to be
        answered (held, or new: then tracked); False when it is answered or in flight."""
        part = self._partitions.setdefault(tp, _Partition())
        if not part.pending or offset > part.pending[-1]:
            part.pending.append(offset)
            return True
        if offset in part.held:
            part.held.discard(offset)
            return True
        return False

    def hold(self, tp: TP, offset: int, limit: int) -> int | None:
        """Hold a record in flight back, unanswered, to be read again: returns how many
        times it has been held (1 the first time); None, holding nothing, when that was
        ``limit`` times already and the record is to be answered now."""
        part = self._partitions.get(tp)
        if part is None:
            return 1  # revoked meanwhile: left unanswered, for the next owner to read
        if part.pending:  # forget the holds of records answered since
            first = part.pending[0]
            part.holds = {o: n for o, n in part.holds.items() if o >= first}
        times = part.holds.get(offset, 0) + 1
        if times > limit:
            return None
        part.holds[offset] = times
        part.held.add(offset)
        return times

    def held(self, tp: TP) -> int | None:
        """The first offset of ``tp`` held back to be read again (where to seek), if any."""
        part = self._partitions.get(tp)
        if part is None or not part.held:
            return None
        # A held record answered after all (dead-lettered after a failure) is not read again.
        first = part.pending[0] if part.pending else math.inf
        part.held = {o for o in part.held if o >= first and o not in part.done}
        return min(part.held, default=None)

    def resume_at(self, tp: TP) -> int | None:
        """Where reading ``tp`` goes on: its first record held back to be read again,
        else the one after the last received; None when nothing was received."""
        held = self.held(tp)
        if held is not None:
            return held
        part = self._partitions.get(tp)
        if part is None:
            return None
        return part.pending[-1] + 1 if part.pending else part.commit_point

    def in_flight(self, tps: Iterable[TP] | None = None) -> int:
        """Records received and not answered, for the given partitions (default: all),
        not counting those held back to be read again."""
        if tps is None:
            return sum(len(p.pending) - len(p.held) for p in self._partitions.values())
        wanted = set(tps)
        return sum(
            len(p.pending) - len(p.held) for tp, p in self._partitions.items() if tp in wanted
        )

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
