"""Exactly-once serving: answers and the offsets they answer, in one Kafka transaction.

A worker started with ``--exactly-once`` produces with a transactional id of its own,
stable per worker slot (:func:`transactional_id`), so that a restarted worker fences
the one it replaces: the broker aborts the open transaction of the dead one before
the new one reads the group's offsets. Its answers are not sent when made but held
(:class:`ExactlyOnce`) until a transaction carries them. Each cycle begins a
transaction, sends the answers to every partition's contiguous answered prefix (dead
letters too), adds the offsets after those prefixes for the workers' consumer group
(``send_offsets_to_transaction``) and commits. An answer to a record beyond its
partition's prefix waits for a later cycle: a transaction that carried it without
its offset would, after a crash, have the record answered again, and a
``read_committed`` reader would see both answers.

A cycle starts as soon as answers are waiting and the previous cycle is over, so
transactions are as large as the time one takes lets them be. A failed transaction
is aborted and its answers go in a later one; after five failures in a row the
worker stops (its jobs are read again by the next owner of their partitions).
A worker fenced by another one with its transactional id stops at once.
"""

from __future__ import annotations

import asyncio
import socket
from collections.abc import Iterable, Sequence

import structlog
from aiokafka import TopicPartition
from aiokafka.errors import ProducerFenced

from producer.contract.messages import ErrorCode
from workers.kafka.publisher import Outgoing, Publisher, Record, source_of
from workers.serving.delivery import Replies, failure_reason
from workers.serving.offsets import OffsetTracker

log = structlog.get_logger(__name__)

_BACKOFF_S = 0.5  # after a failed transaction; doubles for each failure in a row
_MAX_BACKOFF_S = 5.0
_MAX_FAILURES = 5  # transactions failed in a row before the worker stops


def transactional_id(prefix: str, group: str, worker_id: str, slot: int) -> str:
    """The transactional id of slot ``slot`` of worker ``worker_id`` (default: this
    host's name) serving ``group`` under the topic prefix ``prefix``: the same after a
    restart, so that the new process fences the old; different for every slot of a
    pool, every worker and every deployment sharing a cluster."""
    return f"{prefix}{group}.{worker_id or socket.gethostname()}.{slot}"


class ExactlyOnce:
    """Exactly-once delivery: answers held until a transaction carries them with the
    offsets of their records (see the module's description). ``stop`` is set when the
    worker must stop: fenced, or its transactions keep failing."""

    def __init__(
        self,
        publisher: Publisher,
        tracker: OffsetTracker[TopicPartition],
        group: str,
        stop: asyncio.Event,
    ) -> None:
        self._publisher, self._tracker, self._group, self._stop = publisher, tracker, group, stop
        self._held: dict[TopicPartition, dict[int, Outgoing]] = {}
        self._waiting = asyncio.Event()  # answers are held: a cycle has work
        self._cycle = asyncio.Lock()  # one transaction at a time
        self._failures = 0  # transactions failed in a row
        self._halted = False  # the producer can no longer transact

    async def deliver(self, tp: TopicPartition, replies: Replies) -> None:
        for record, reply in replies:
            self._hold(tp, record.offset, reply)
        self._waiting.set()

    async def fail(self, tp: TopicPartition, records: Sequence[Record], exc: Exception) -> None:
        reason = failure_reason(exc)
        for record in records:
            letter = self._publisher.dead_letter_of(
                source_of(record), code=ErrorCode.INTERNAL, reason=reason
            )
            self._hold(tp, record.offset, letter)
        self._waiting.set()

    def _hold(self, tp: TopicPartition, offset: int, reply: Outgoing | None) -> None:
        """Hold ``reply`` (None: nothing to send) as the answer to ``offset``, unless
        the record is no longer this worker's to answer (its partition was revoked)."""
        if not self._tracker.awaits(tp, offset):
            return
        if reply is not None:
            self._held.setdefault(tp, {})[offset] = reply
        self._tracker.done(tp, offset)

    async def run(self) -> None:
        """Run a cycle whenever answers wait; a transaction is never left open by
        cancelling this: the cycle under way ends first."""
        while True:
            await self._waiting.wait()
            self._waiting.clear()
            cycle = asyncio.ensure_future(self.commit())
            try:
                await asyncio.shield(cycle)
            except asyncio.CancelledError:
                await cycle
                raise
            if self._failures:
                await asyncio.sleep(min(_BACKOFF_S * 2 ** (self._failures - 1), _MAX_BACKOFF_S))
                self._waiting.set()

    async def commit(self, tps: Iterable[TopicPartition] | None = None) -> None:
        """One transaction with the answered prefixes (of ``tps``; default: all)."""
        async with self._cycle:
            if self._halted:
                return
            points = self._tracker.commit_points(tps)
            if not points:
                return
            if await self._transact(self._due(points), points):
                self._failures = 0
                self._tracker.mark_committed(points)
                self._drop(points)
            elif not self._halted:
                self._failures += 1
                if self._failures >= _MAX_FAILURES:
                    self._halt(f"{self._failures} transactions in a row failed")

    async def release(self, tps: set[TopicPartition]) -> None:
        await self.commit()
        self._tracker.forget(tps)
        for tp in tps:  # answers beyond the prefix: the next owner answers them again
            self._held.pop(tp, None)

    def _due(self, points: dict[TopicPartition, int]) -> list[Outgoing]:
        """The held answers to the records before ``points``, in offset order."""
        due: list[Outgoing] = []
        for tp, point in points.items():
            held = self._held.get(tp, {})
            due.extend(held[offset] for offset in sorted(held) if offset < point)
        return due

    def _drop(self, points: dict[TopicPartition, int]) -> None:
        for tp, point in points.items():
            held = self._held.get(tp)
            if held:
                self._held[tp] = {o: reply for o, reply in held.items() if o >= point}

    async def _transact(self, messages: list[Outgoing], points: dict[TopicPartition, int]) -> bool:
        """Send ``messages`` and commit ``points`` in one transaction; False, after
        aborting it, when that failed."""
        producer = self._publisher.producer
        try:
            await producer.begin_transaction()
            # The offsets join the transaction while the answers are being sent; the
            # commit, which makes both visible, waits for every answer's ack.
            errors, _ = await asyncio.gather(
                self._publisher.send_many(messages),
                producer.send_offsets_to_transaction(points, self._group),
            )
            failed = [error for error in errors if error]
            if failed:
                raise failed[0]
            await producer.commit_transaction()
        except Exception as exc:  # aiokafka raises more than KafkaError here (IllegalOperation)
            if _fenced(exc):
                self._fenced()
                return False
            log.warning(
                "transaction failed; aborting it, its answers go in the next one",
                error=f"{type(exc).__name__}: {exc}",
            )
            await self._abort()
            return False
        return True

    async def _abort(self) -> None:
        try:
            await self._publisher.producer.abort_transaction()
        except ProducerFenced:
            self._fenced()
        except Exception as exc:
            self._halt(f"the transaction could not be aborted ({type(exc).__name__}: {exc})")

    def _fenced(self) -> None:
        self._halted = True
        log.error(
            "fenced: another worker started with this worker's transactional id and "
            "serves its partitions from now on; stopping"
        )
        self._stop.set()

    def _halt(self, why: str) -> None:
        self._halted = True
        log.error(
            "exactly-once delivery failed; stopping: the jobs not committed are read "
            "again by the next owner of their partitions",
            why=why,
        )
        self._stop.set()


def _fenced(exc: BaseException) -> bool:
    """Whether ``exc`` says another producer took this one's transactional id (a send
    that failed so is a :class:`~workers.kafka.publisher.PublishFailed` caused by it)."""
    return isinstance(exc, ProducerFenced) or isinstance(exc.__cause__, ProducerFenced)
