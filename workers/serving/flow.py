"""Flow control of the serving loop: how far ahead it reads, and reading again.

:func:`pace` pauses a consumer's partitions while too many jobs are in flight or a
model's queue holds too many full batches, and resumes them at half of both: a slow
model's backlog waits in Kafka, not in the worker's memory, and a crash redelivers
little. :func:`redeliver_due` seeks each partition whose held-back records are due
to be read again back to the first of them.
"""

from __future__ import annotations

import time
from collections.abc import Iterable
from typing import Protocol

import structlog
from aiokafka import AIOKafkaConsumer, TopicPartition

from workers.batching.batcher import DynamicBatcher
from workers.serving.offsets import OffsetTracker

log = structlog.get_logger(__name__)


class Limits(Protocol):
    """How far ahead to read: jobs in flight, and full batches queued per model."""

    @property
    def max_in_flight(self) -> int: ...

    @property
    def max_queued_batches(self) -> float: ...


def pace(
    consumer: AIOKafkaConsumer, in_flight: int, batchers: Iterable[DynamicBatcher], limits: Limits
) -> None:
    """Pause every partition above either limit; resume them all at half of both."""
    max_in_flight, max_queued_batches = limits.max_in_flight, limits.max_queued_batches
    queued = max((b.queued_rows / b.config.max_batch_size for b in batchers), default=0.0)
    if in_flight >= max_in_flight or queued >= max_queued_batches:
        unpaused = consumer.assignment() - consumer.paused()
        if unpaused:
            consumer.pause(*unpaused)
            log.debug("partitions paused", in_flight=in_flight, queued_batches=queued)
    elif consumer.paused() and in_flight <= max_in_flight // 2 and queued <= max_queued_batches / 2:
        consumer.resume(*consumer.paused())
        log.debug("partitions resumed", in_flight=in_flight, queued_batches=queued)


def redeliver_due(
    consumer: AIOKafkaConsumer,
    due: dict[TopicPartition, float],
    tracker: OffsetTracker[TopicPartition],
) -> None:
    """Seek each partition of ``due`` (when to read it again, monotonic s) whose time
    has come back to its first held record, and forget it."""
    now = time.monotonic()
    for tp, when in list(due.items()):
        if when > now:
            continue
        del due[tp]
        offset = tracker.held(tp)
        if offset is not None and tp in consumer.assignment():
            consumer.seek(tp, offset)
