"""What the serving worker and the trainer share as consumers of a topic.

Their Kafka clients (:func:`connected`), the worker id they answer as
(:func:`with_worker_id`), commits that survive a group that moved on
(:func:`commit`), the dead letter for a record whose answer could not be published
(:func:`dead_letter_unanswered`), and the bound on jobs that fail with a retriable
error (:class:`RetrySettings`).
"""

from __future__ import annotations

import os
import socket
from collections.abc import AsyncIterator, Mapping
from contextlib import asynccontextmanager
from dataclasses import dataclass, replace
from typing import Any, Protocol, TypeVar

import structlog
from aiokafka import AIOKafkaConsumer, AIOKafkaProducer, ConsumerRebalanceListener, TopicPartition
from aiokafka.errors import CommitFailedError, IllegalStateError, KafkaError

from producer.kafka import KafkaSettings, ensure_topics
from producer.messages import ErrorCode
from workers.replies import Publisher, PublishFailed, Record, source_of

log = structlog.get_logger(__name__)

_PRODUCER_BATCH_BYTES = 16384  # aiokafka's default max_batch_size


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


@asynccontextmanager
async def connected(
    kafka: KafkaSettings,
    topic: str,
    *,
    group: str,
    listener: ConsumerRebalanceListener | None = None,
    batch_bytes: int = _PRODUCER_BATCH_BYTES,
    **consumer_options: Any,
) -> AsyncIterator[tuple[AIOKafkaConsumer, Publisher]]:
    """A consumer of ``topic`` in ``group`` and a publisher for its answers, started
    (the service's topics created first) and stopped on the way out, consumer first.
    ``batch_bytes``: the producer's record batch size."""
    await ensure_topics(kafka)
    producer = AIOKafkaProducer(**kafka.producer(max_batch_size=batch_bytes))
    consumer = AIOKafkaConsumer(**kafka.consumer(group, **consumer_options))
    consumer.subscribe([topic], listener=listener)
    await producer.start()
    try:
        await consumer.start()
        try:
            yield consumer, Publisher(producer, dlq_topic=kafka.topics.dlq, batch_bytes=batch_bytes)
        finally:
            await consumer.stop()
    finally:
        await producer.stop()


async def commit(consumer: AIOKafkaConsumer, offsets: Mapping[TopicPartition, int]) -> bool:
    """Commit ``offsets``; False, logged, when the group moved on (a rebalance) or the
    broker is unreachable: the records are then read again by whoever owns them next."""
    try:
        await consumer.commit(dict(offsets))
    except (CommitFailedError, IllegalStateError, KafkaError) as exc:
        log.warning("commit failed; the records will be read again", error=str(exc))
        return False
    return True


async def dead_letter_unanswered(publisher: Publisher, record: Record, exc: Exception) -> bool:
    """The answer to ``record`` could not be published (``exc``): send the record to the
    dead-letter topic instead. True when that worked and the record may be committed."""
    try:
        await publisher.dead_letter(
            source_of(record), code=ErrorCode.INTERNAL, reason=f"answer not published: {exc}"
        )
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
