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
is aborted and its answers go in a later one:

- an answer the broker refused for good (a reply topic whose ``max.message.bytes``
  it exceeds, one the service may not write: :attr:`PublishFailed.retriable` is
  False) is replaced by the dead letter of its record, and the next transaction,
  at once, carries that with the others and the offsets: one record never stops
  the worker (a capture record of the answer is dropped with it: no answer, nothing
  captured). A dead letter refused so too goes again cut to
  ``BARE_DEAD_LETTER_BYTES``; refused again, the record is logged as neither
  answered nor dead-lettered and its offset moves on;
- a retriable failure (the broker away, a leader moving) is tried again after a
  backoff that doubles up to ``_MAX_BACKOFF_S``, for as long as it lasts;
- a failure that is neither (the broker refuses this producer's transactions) stops
  the worker after five in a row: its jobs are read again by the next owner of its
  partitions.

A worker fenced by another one with its transactional id stops at once.
"""

from __future__ import annotations

import asyncio
import enum
import socket
from collections.abc import Iterable, Sequence
from dataclasses import dataclass

import structlog
from aiokafka import TopicPartition
from aiokafka.errors import (
    IllegalOperation,
    InvalidProducerEpoch,
    KafkaError,
    ProducerFenced,
    TopicAuthorizationFailedError,
)

from producer.aiokafka_internals import renew_producer_id
from producer.contract.messages import ErrorCode
from workers.kafka.publisher import (
    BARE_DEAD_LETTER_BYTES,
    Outgoing,
    Publisher,
    PublishFailed,
    Record,
    Source,
    source_of,
)
from workers.serving.delivery import Replies, failure_reason
from workers.serving.offsets import OffsetTracker

log = structlog.get_logger(__name__)

_BACKOFF_S = 0.5  # after a failed transaction; doubles for each failure in a row
_MAX_BACKOFF_S = 5.0
_MAX_FAILURES = 5  # transactions failed in a row, not retriably, before the worker stops


class _Outcome(enum.Enum):
    """How a transaction ended."""

    COMMITTED = "committed"
    POISONED = "poisoned"  # aborted; answers refused for good replaced by dead letters
    RETRIABLE = "retriable"  # aborted; trying again later may work
    FAILED = "failed"  # aborted; the broker refuses this producer's transactions


_EXTRA = -1  # the stage of a record that goes with an answer (a capture record)


@dataclass(frozen=True, slots=True)
class _Held:
    """What answers a record, held for a transaction: its answer (``stage`` 0), or its
    dead letter (1), or a dead letter cut to ``BARE_DEAD_LETTER_BYTES`` (2); or a record
    sent beside the answer in its transaction (``_EXTRA``: a capture record)."""

    message: Outgoing
    source: Source | None
    stage: int = 0


# A held answer's place: its partition and offset.
_Due = list[tuple[TopicPartition, int, _Held]]


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
        self._held: dict[TopicPartition, dict[int, _Held]] = {}
        # Records that go with an answer in its transaction (capture records).
        self._extras: dict[TopicPartition, dict[int, list[Outgoing]]] = {}
        self._waiting = asyncio.Event()  # answers are held: a cycle has work
        self._cycle = asyncio.Lock()  # one transaction at a time
        self._failures = 0  # transactions failed in a row (the backoff)
        self._fatal = 0  # of them, those failed not retriably
        self._halted = False  # the producer can no longer transact

    async def deliver(self, tp: TopicPartition, replies: Replies) -> None:
        for record, reply in replies:
            self._hold(tp, record, reply)
        self._waiting.set()

    async def fail(self, tp: TopicPartition, records: Sequence[Record], exc: Exception) -> None:
        reason = failure_reason(exc)
        for record in records:
            letter = self._publisher.dead_letter_of(
                source_of(record), code=ErrorCode.INTERNAL, reason=reason
            )
            self._hold(tp, record, letter, stage=1)
        self._waiting.set()

    def attach(self, tp: TopicPartition, offset: int, message: Outgoing) -> None:
        """Send ``message`` in the transaction that carries the answer to ``offset``
        (call before :meth:`deliver` hands that answer over)."""
        if self._tracker.awaits(tp, offset):
            self._extras.setdefault(tp, {}).setdefault(offset, []).append(message)

    def _hold(
        self, tp: TopicPartition, record: Record, reply: Outgoing | None, *, stage: int = 0
    ) -> None:
        """Hold ``reply`` (None: nothing to send) as the answer to ``record``, unless
        it is no longer this worker's to answer (its partition was revoked)."""
        offset = record.offset
        if not self._tracker.awaits(tp, offset):
            return
        if reply is not None:
            self._held.setdefault(tp, {})[offset] = _Held(reply, source_of(record), stage)
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
            outcome = await self._transact(self._due(points), points)
            if outcome is _Outcome.COMMITTED:
                self._failures = self._fatal = 0
                self._tracker.mark_committed(points)
                self._drop(points)
            elif outcome is _Outcome.POISONED:  # progress: the next one goes at once
                self._failures = self._fatal = 0
                self._waiting.set()
            elif not self._halted:
                self._failures += 1
                self._fatal = self._fatal + 1 if outcome is _Outcome.FAILED else 0
                if self._fatal >= _MAX_FAILURES:
                    self._halt(f"{self._fatal} transactions in a row failed")

    async def release(self, tps: set[TopicPartition]) -> None:
        await self.commit()
        self._tracker.forget(tps)
        for tp in tps:  # answers beyond the prefix: the next owner answers them again
            self._held.pop(tp, None)
            self._extras.pop(tp, None)

    def _due(self, points: dict[TopicPartition, int]) -> _Due:
        """The held answers to the records before ``points``, in offset order."""
        due: _Due = []
        for tp, point in points.items():
            held = self._held.get(tp, {})
            due.extend((tp, offset, held[offset]) for offset in sorted(held) if offset < point)
            extras = self._extras.get(tp, {})
            for offset in sorted(extras):
                if offset < point:
                    due.extend((tp, offset, _Held(extra, None, _EXTRA)) for extra in extras[offset])
        return due

    def _drop(self, points: dict[TopicPartition, int]) -> None:
        for tp, point in points.items():
            held = self._held.get(tp)
            if held:
                self._held[tp] = {o: reply for o, reply in held.items() if o >= point}
            extras = self._extras.get(tp)
            if extras:
                self._extras[tp] = {o: more for o, more in extras.items() if o >= point}

    async def _transact(self, due: _Due, points: dict[TopicPartition, int]) -> _Outcome:
        """Send ``due`` and commit ``points`` in one transaction; aborted when that
        failed, with what failure says about the next try."""
        producer = self._publisher.producer
        try:
            await producer.begin_transaction()
            # The offsets join the transaction while the answers are being sent; the
            # commit, which makes both visible, waits for every answer's ack.
            errors, _ = await asyncio.gather(
                self._publisher.send_many([held.message for _, _, held in due]),
                producer.send_offsets_to_transaction(points, self._group),
            )
            if self._fall_back(due, errors):
                await self._abort()
                return _Outcome.POISONED
            failed = [error for error in errors if error]
            if failed:
                raise failed[0]
            await producer.commit_transaction()
        except Exception as exc:  # aiokafka raises more than KafkaError here (IllegalOperation)
            return await self._failed(due, exc)
        return _Outcome.COMMITTED

    async def _failed(self, due: _Due, exc: Exception) -> _Outcome:
        """Abort the transaction that ``exc`` ended; what it says about the next try."""
        if _fenced(exc):
            self._fenced()
            return _Outcome.FAILED
        log.warning(
            "transaction failed; aborting it, its answers go in the next one",
            error=f"{type(exc).__name__}: {exc}",
        )
        # A topic the service may not write is refused when it is added to the
        # transaction, which fails as a whole: its answers are the poison.
        refused = _refused_topics(exc)
        poisoned = bool(refused) and self._fall_back(
            due, [_refusal(exc) if held.message.topic in refused else None for _, _, held in due]
        )
        await self._abort()
        if poisoned:
            if not self._halted:  # aiokafka's sequence numbers are off now
                renew_producer_id(self._publisher.producer)
            return _Outcome.POISONED
        return _Outcome.RETRIABLE if _retriable(exc) else _Outcome.FAILED

    def _fall_back(self, due: _Due, errors: Sequence[PublishFailed | None]) -> bool:
        """Replace each held answer the broker refused for good by its dead letter (a
        dead letter by a bare one; a bare one by nothing): True when there was one."""
        poisoned = False
        for (tp, offset, held), error in zip(due, errors, strict=True):
            if error is None or error.retriable or _fenced(error) or _unsent(error):
                continue
            poisoned = True
            if held.stage == _EXTRA:  # a capture record refused: the answer goes without it
                log.warning("capture record refused by the broker; dropped", error=str(error))
                kept = self._extras.get(tp, {}).get(offset, [])
                self._extras.setdefault(tp, {})[offset] = [m for m in kept if m is not held.message]
                continue
            fallback = self._fallback(held, error)
            self._extras.get(tp, {}).pop(offset, None)  # no answer: nothing to capture
            if fallback is None:
                self._held[tp].pop(offset, None)
            else:
                self._held[tp][offset] = fallback
        return poisoned

    def _fallback(self, held: _Held, error: PublishFailed) -> _Held | None:
        """What answers ``held``'s record now that the broker refused ``held`` for good."""
        source = held.source
        assert source is not None  # answers and dead letters know their record
        if held.stage >= 2:
            log.error(
                "record neither answered nor dead-lettered; its offset moves on",
                topic=source.topic,
                partition=source.partition,
                offset=source.offset,
                error=str(error),
            )
            return None
        reason = f"answer not published: {error}"
        if held.stage == 0:
            log.warning("answer refused by the broker; dead-lettering its record", error=str(error))
            letter = self._publisher.dead_letter_of(source, code=ErrorCode.INTERNAL, reason=reason)
            return _Held(letter, source, 1)
        bare = self._publisher.dead_letter_of(
            source, code=ErrorCode.INTERNAL, reason=reason, max_bytes=BARE_DEAD_LETTER_BYTES
        )
        return _Held(bare, source, 2)

    async def _abort(self) -> None:
        try:
            await self._publisher.producer.abort_transaction()
        except Exception as exc:
            if _fenced(exc):
                self._fenced()
                return
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


def _retriable(exc: BaseException) -> bool:
    """Whether a transaction that failed with ``exc`` may work when tried again."""
    if isinstance(exc, PublishFailed):
        return exc.retriable
    return isinstance(exc, KafkaError) and bool(exc.retriable)


def _unsent(error: PublishFailed) -> bool:
    """Whether ``error`` says the record was not sent because its transaction had
    already failed (aiokafka's IllegalOperation): the broker refused nothing of it."""
    return isinstance(error.__cause__, IllegalOperation)


def _refused_topics(exc: BaseException) -> set[str]:
    """The topics that a transaction failed with ``exc`` was refused access to: those
    the producer may not write, named by a TopicAuthorizationFailed (none otherwise)."""
    if not isinstance(exc, TopicAuthorizationFailedError) or not exc.args:
        return set()
    topics = exc.args[0]
    return {topics} if isinstance(topics, str) else {str(topic) for topic in topics}


def _refusal(exc: BaseException) -> PublishFailed:
    """The error of an answer whose topic ``exc`` refused for good."""
    return PublishFailed(f"{type(exc).__name__}: {exc}", retriable=False)


def _fenced(exc: BaseException) -> bool:
    """Whether ``exc`` says another producer took this one's transactional id: itself or
    any error it was raised from (a failed send is a
    :class:`~workers.kafka.publisher.PublishFailed` caused by it; aiokafka's sender
    wraps a produce answer of INVALID_PRODUCER_EPOCH, which is how Apache Kafka tells
    an older epoch that a newer one has taken over, in a KafkaError)."""
    seen: BaseException | None = exc
    for _ in range(8):  # a chain of causes, never a cycle
        if seen is None:
            return False
        if isinstance(seen, ProducerFenced | InvalidProducerEpoch):
            return True
        seen = seen.__cause__
    return False
