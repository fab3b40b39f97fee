"""How the serving loop's answers reach the broker and its offsets are committed.

The loop answers a partition's records and hands the answers to a :class:`Delivery`,
which marks each record done in the loop's :class:`~workers.serving.offsets.OffsetTracker`
once it may be committed, and commits the answered prefix of each partition:

- :class:`AtLeastOnce` (at-least-once, the default): answers are published at once
  and a record is done when its answer is acknowledged; the consumer commits the
  answered prefixes every ``interval_s``. A crash between the two answers some jobs
  twice.
- :class:`~workers.serving.transactions.ExactlyOnce` (exactly-once): answers wait in the
  worker until a Kafka transaction carries them together with the offsets of the
  records they answer.
"""

from __future__ import annotations

import asyncio
from collections.abc import Iterable, Sequence
from typing import Protocol

from aiokafka import AIOKafkaConsumer, TopicPartition

from workers.kafka.clients import commit, dead_letter_unanswered
from workers.kafka.publisher import Outgoing, Publisher, Record
from workers.serving.offsets import OffsetTracker

# Each record a poll brought, with what answers it (None: another pool's job).
Replies = Sequence[tuple[Record, Outgoing | None]]


def failure_reason(exc: BaseException) -> str:
    """The dead letter's reason for records that an unexpected ``exc`` left unanswered."""
    return f"unexpected failure while answering the record: {type(exc).__name__}"


class Delivery(Protocol):
    """Publishes answers and commits the offsets of the records they answer."""

    async def deliver(self, tp: TopicPartition, replies: Replies) -> None:
        """Publish (or hold for publishing) the answers to some of ``tp``'s records."""

    async def fail(self, tp: TopicPartition, records: Sequence[Record], exc: Exception) -> None:
        """Dead-letter ``records``, which could not be answered because of ``exc``."""

    async def commit(self, tps: Iterable[TopicPartition] | None = None) -> None:
        """Commit what is answered (of ``tps``; default: every partition)."""

    async def run(self) -> None:
        """Commit in the background until cancelled."""

    async def release(self, tps: set[TopicPartition]) -> None:
        """Commit what is answered of ``tps`` and forget them: they are revoked."""


class AtLeastOnce:
    """At-least-once: a record is done once its answer (or its dead letter) is
    acknowledged; the consumer commits the answered prefixes every ``interval_s``."""

    def __init__(
        self,
        consumer: AIOKafkaConsumer,
        publisher: Publisher,
        tracker: OffsetTracker[TopicPartition],
        interval_s: float,
    ) -> None:
        self._consumer, self._publisher, self._tracker = consumer, publisher, tracker
        self._interval_s = interval_s

    async def deliver(self, tp: TopicPartition, replies: Replies) -> None:
        sent = [reply for _, reply in replies if reply is not None]
        errors = iter(await self._publisher.send_many(sent))
        for record, reply in replies:
            error = None if reply is None else next(errors)
            if error is None or await dead_letter_unanswered(self._publisher, record, error):
                self._tracker.done(tp, record.offset)
            # else not answered: left uncommitted, redelivered after a restart

    async def fail(self, tp: TopicPartition, records: Sequence[Record], exc: Exception) -> None:
        reason = failure_reason(exc)
        for record in records:
            if await dead_letter_unanswered(self._publisher, record, exc, reason=reason):
                self._tracker.done(tp, record.offset)

    async def commit(self, tps: Iterable[TopicPartition] | None = None) -> None:
        points = self._tracker.commit_points(tps)
        if points and await commit(self._consumer, points):
            self._tracker.mark_committed(points)

    async def run(self) -> None:
        while True:
            await asyncio.sleep(self._interval_s)
            await self.commit()

    async def release(self, tps: set[TopicPartition]) -> None:
        await self.commit(tps)
        self._tracker.forget(tps)
