"""What the serving worker and the trainer share as consumers of a topic.

Their Kafka clients (:class:`Clients`, :func:`connected`: started so that a stop signal interrupts every
phase of start-up, saying why a group join takes long; :class:`Standby` says why no
partitions come after it), the worker id they answer as
(:func:`with_worker_id`), commits that survive a group that moved on
(:func:`commit`), the dead letter for a record whose answer could not be published
(:func:`dead_letter_unanswered`), and the bound on jobs that fail with a retriable
error (:class:`RetrySettings`).
"""

from __future__ import annotations

import asyncio
import contextlib
import os
import re
import socket
import time
from collections.abc import AsyncIterator, Awaitable, Mapping
from contextlib import asynccontextmanager
from dataclasses import dataclass, field, replace
from typing import Any, Protocol, TypeVar

import structlog
from aiokafka import AIOKafkaConsumer, AIOKafkaProducer, ConsumerRebalanceListener, TopicPartition
from aiokafka.admin import AIOKafkaAdminClient
from aiokafka.errors import (
    CommitFailedError,
    IllegalStateError,
    KafkaError,
    MessageSizeTooLargeError,
)

from producer.aiokafka_internals import close_connections
from producer.capabilities import Capabilities
from producer.contract.messages import ErrorCode
from producer.kafka import KafkaSettings
from workers.errors import WorkerError
from workers.kafka.publisher import (
    BARE_DEAD_LETTER_BYTES,
    DEFAULT_MAX_RECORD_BYTES,
    Publisher,
    PublishFailed,
    PublishSettings,
    Record,
    source_of,
)

log = structlog.get_logger(__name__)

_PRODUCER_BATCH_BYTES = 16384  # aiokafka's default max_batch_size
JOIN_REPORT_S = 10.0  # a group join taking longer is logged, with why, this often
LEAVE_TIMEOUT_S = 5.0  # the longest a consumer takes to stop before its connections close
# How often a consumer of a pattern reads the topic list for new matching topics (a new
# tenant's job topic); aiokafka's default (metadata_max_age_ms) is five minutes.
PATTERN_REFRESH_MS = 2000
T = TypeVar("T")


class Stopped(WorkerError):
    """Start-up was interrupted: the stop event was set before it was done."""


async def unless_stopped(step: Awaitable[T], stop: asyncio.Event | None) -> T:
    """Await ``step``; cancel it and raise :class:`Stopped` if ``stop`` is set first."""
    if stop is None:
        return await step
    task = asyncio.ensure_future(step)
    stopping = asyncio.ensure_future(stop.wait())
    try:
        await asyncio.wait({task, stopping}, return_when=asyncio.FIRST_COMPLETED)
    finally:
        stopping.cancel()
        if not task.done():
            task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await task
    if task.cancelled():
        raise Stopped
    return task.result()


async def _join(consumer: AIOKafkaConsumer, kafka: KafkaSettings, group: str) -> None:
    """Start ``consumer`` (which joins ``group``), logging every ``JOIN_REPORT_S`` why
    the join is taking so long, as far as the group's description tells."""
    starting = asyncio.ensure_future(consumer.start())
    try:
        waited = 0.0
        while not (await asyncio.wait({starting}, timeout=JOIN_REPORT_S))[0]:
            waited += JOIN_REPORT_S
            log.warning(
                "still waiting to join the consumer group",
                group=group,
                waited_s=waited,
                why=await _describe_group(kafka, group),
            )
        starting.result()
    finally:
        if not starting.done():  # we were cancelled: so is the start (the caller stops it)
            starting.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await starting


async def _describe_group(kafka: KafkaSettings, group: str) -> str:
    admin = AIOKafkaAdminClient(**kafka.common())
    try:
        async with asyncio.timeout(5):
            await admin.start()
            [response] = await admin.describe_consumer_groups([group])
            [described] = response.groups
            state, members = described[2], len(described[5])
    except Exception as exc:  # only for the log line: never fail the join for it
        return f"the group could not be described ({type(exc).__name__})"
    finally:
        await admin.close()
    return (
        f"the group is {state} with {members} member(s): the broker waits for them to "
        "rejoin, or for a member that died without leaving to time out (up to the "
        "consumer's max_poll_interval_ms); a stop signal ends the wait"
    )


def default_worker_id() -> str:
    """``host:pid`` of this process: who answered, in Results and the audit log."""
    return f"{socket.gethostname()}:{os.getpid()}"


class _Identified(Protocol):
    @property
    def worker_id(self) -> str: ...


S = TypeVar("S", bound=_Identified)


def with_worker_id(settings: S) -> S:
    """``settings`` with ``worker_id`` defaulted to :func:`default_worker_id`, in the
    process that serves (a pool builds its settings once, for every process)."""
    if settings.worker_id:
        return settings
    # mypy cannot see that a Protocol-bound S is a dataclass; both settings classes are.
    return replace(settings, worker_id=default_worker_id())  # type: ignore[type-var]


@dataclass(frozen=True, slots=True)
class Clients:
    """What :func:`connected` starts: a consumer of ``topic`` in ``group`` (told of
    rebalances through ``listener``, with ``consumer_options`` over the defaults; a
    compiled pattern: every topic it matches) and
    a producer for its answers, whose record batches hold ``batch_bytes`` and whose
    largest record is ``max_record_bytes`` (its ``max_request_size``). With a
    ``transactional_id`` the producer is transactional (exactly-once serving)."""

    topic: str | re.Pattern[str]
    group: str
    listener: ConsumerRebalanceListener | None = None
    batch_bytes: int = _PRODUCER_BATCH_BYTES
    max_record_bytes: int = DEFAULT_MAX_RECORD_BYTES
    transactional_id: str | None = None
    consumer_options: Mapping[str, Any] = field(default_factory=dict)

    def producer(self, kafka: KafkaSettings, capabilities: Capabilities) -> AIOKafkaProducer:
        options: dict[str, Any] = {
            "max_batch_size": self.batch_bytes,
            "max_request_size": self.max_record_bytes,
        }
        if self.transactional_id is not None:
            options["transactional_id"] = self.transactional_id
        return AIOKafkaProducer(**kafka.producer(capabilities, **options))

    def publisher(self, kafka: KafkaSettings, producer: AIOKafkaProducer) -> Publisher:
        return Publisher(
            producer,
            PublishSettings(
                dlq_topic=kafka.topics.dlq,
                batch_bytes=self.batch_bytes,
                max_record_bytes=self.max_record_bytes,
            ),
        )


@asynccontextmanager
async def connected(
    kafka: KafkaSettings,
    capabilities: Capabilities,
    clients: Clients,
    *,
    stop: asyncio.Event | None = None,
) -> AsyncIterator[tuple[AIOKafkaConsumer, Publisher]]:
    """The consumer and the publisher that ``clients`` describes, for a broker that
    supports ``capabilities`` (what :func:`~producer.kafka.ensure_topics` answered at
    start, the service's topics created), started and stopped on the way out, consumer
    first (it leaves the group). A topic given as a compiled pattern subscribes to every
    topic it matches, looked for every ``PATTERN_REFRESH_MS``. The producer starts first: a
    transactional one fences its predecessor and ends its open transaction before the
    consumer reads the group's committed offsets.

    Raises :class:`Stopped` when ``stop`` is set before start-up is done, whichever
    phase it is in: connecting, or joining a group that waits for its other members
    (logged every ``JOIN_REPORT_S``, with the group's state)."""
    producer = clients.producer(kafka, capabilities)
    consumer_options = dict(clients.consumer_options)
    if isinstance(clients.topic, re.Pattern):
        consumer_options.setdefault("metadata_max_age_ms", PATTERN_REFRESH_MS)
        subscription: dict[str, Any] = {"pattern": clients.topic.pattern}
    else:
        subscription = {"topics": [clients.topic]}
    consumer = AIOKafkaConsumer(**kafka.consumer(capabilities, clients.group, **consumer_options))
    consumer.subscribe(**subscription, listener=clients.listener)
    try:
        await unless_stopped(producer.start(), stop)
        await unless_stopped(_join(consumer, kafka, clients.group), stop)
        yield consumer, clients.publisher(kafka, producer)
    finally:  # both, started or not (a client never stopped warns when collected)
        await _stop(consumer)
        await producer.stop()


async def _stop(consumer: AIOKafkaConsumer) -> None:
    """Stop ``consumer``, leaving its group. A join still in flight (the broker holds it
    until the group's other members rejoin or time out: minutes) is cut short after
    ``LEAVE_TIMEOUT_S`` by closing the consumer's connections."""
    stopping = asyncio.ensure_future(consumer.stop())
    if not (await asyncio.wait({stopping}, timeout=LEAVE_TIMEOUT_S))[0]:
        log.warning("still joining the consumer group; closing the connections to stop")
        # aiokafka has no public way to end a JoinGroup in flight; failing it lets
        # stop() go on (the coordinator exits on the error, as it is closing).
        await close_connections(consumer)
    await stopping


async def poll(
    consumer: AIOKafkaConsumer, stopping: asyncio.Future[Any], *, timeout_ms: int
) -> dict[TopicPartition, list[Any]]:
    """``consumer.getmany(timeout_ms=...)``, or nothing as soon as ``stopping`` is done:
    during a rebalance getmany waits for the new assignment without a timeout, as long
    as the group's other members take to rejoin."""
    polling = asyncio.ensure_future(consumer.getmany(timeout_ms=timeout_ms))

    def interrupt(_: asyncio.Future[Any]) -> None:
        polling.cancel()

    stopping.add_done_callback(interrupt)
    try:
        batch: dict[TopicPartition, list[Any]] = await polling
    except asyncio.CancelledError:
        task = asyncio.current_task()
        if stopping.done() and task is not None and not task.cancelling():
            return {}
        raise
    finally:
        stopping.remove_done_callback(interrupt)
    return batch


class Standby:
    """Says, every ``report_s`` while it lasts, why a consumer that joined its group
    has no partitions: :meth:`check` it after each poll."""

    def __init__(self, consumer: AIOKafkaConsumer, topic: str, group: str, report_s: float) -> None:
        self._consumer, self._topic, self._group = consumer, topic, group
        self._report_s = report_s
        self._since: float | None = time.monotonic()
        self._reported = time.monotonic()

    def check(self) -> None:
        if self._consumer.assignment():
            self._since = None
            return
        now = time.monotonic()
        if self._since is None:
            self._since = self._reported = now
        if now - self._reported < self._report_s:
            return
        self._reported = now
        partitions = self._consumer.partitions_for_topic(self._topic)
        why = (
            f"the group's other members hold all {len(partitions)} partitions of "
            f"{self._topic}; this consumer stands by until one leaves"
            if partitions
            else f"no partitions of {self._topic} are known yet"
        )
        log.warning(
            "no partitions assigned", group=self._group, waited_s=round(now - self._since), why=why
        )


async def commit(consumer: AIOKafkaConsumer, offsets: Mapping[TopicPartition, int]) -> bool:
    """Commit ``offsets``; False, logged, when the group moved on (a rebalance) or the
    broker is unreachable: the records are then read again by whoever owns them next."""
    try:
        await consumer.commit(dict(offsets))
    except (CommitFailedError, IllegalStateError, KafkaError) as exc:
        log.warning("commit failed; the records will be read again", error=str(exc))
        return False
    return True


async def dead_letter_unanswered(
    publisher: Publisher, record: Record, exc: Exception, *, reason: str | None = None
) -> bool:
    """The answer to ``record`` could not be published (``exc``), or could not be made
    (``reason`` says how): send the record to the dead-letter topic instead. A dead
    letter the broker refuses as too large (its limit below the producer's) goes again,
    cut to a size any broker takes. True when that worked and the record may be
    committed."""
    source = source_of(record)
    why = reason or f"answer not published: {exc}"
    try:
        try:
            await publisher.dead_letter(source, code=ErrorCode.INTERNAL, reason=why)
        except PublishFailed as failed:
            if not isinstance(failed.__cause__, MessageSizeTooLargeError):
                raise
            bare = publisher.dead_letter_of(
                source, code=ErrorCode.INTERNAL, reason=why, max_bytes=BARE_DEAD_LETTER_BYTES
            )
            await publisher.publish(bare)
    except PublishFailed:
        log.error(
            "record neither answered nor dead-lettered",
            topic=record.topic,
            partition=record.partition,
            offset=record.offset,
        )
        return False
    return True


@dataclass(frozen=True, slots=True)
class RetrySettings:
    """How often a job that fails with a retriable error is tried again before it is
    answered with the error, and how long to wait before each try."""

    attempts: int = 5  # tries after the first failure
    backoff_s: float = 0.5  # before the first of them; doubles for each next one

    def __post_init__(self) -> None:
        if self.attempts < 0 or self.backoff_s < 0:
            raise ValueError("RetrySettings.attempts and backoff_s must be >= 0")

    def delay_s(self, attempt: int) -> float:
        """The wait before try ``attempt`` (1 is the first try after a failure)."""
        return float(self.backoff_s * 2 ** (attempt - 1))
