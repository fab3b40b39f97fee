"""Read a topic from now on: a consumer without a group, at the end of every partition.

The clients read their reply topic this way and the workers the control topic:
nothing is replayed, no group join (seconds) is paid, and since every position is
fixed before these functions return, a record sent after that point is never missed.
:func:`tail` drives kafka-python, :func:`tail_async` aiokafka; both wait up to
``wait_s`` for the topic's partitions to appear in the metadata (a topic just created
takes a moment) and then raise :class:`TopicNotFound`.
"""

from __future__ import annotations

import asyncio
import time
from typing import TYPE_CHECKING, Any

from producer.errors import TopicNotFound

if TYPE_CHECKING:
    from aiokafka import AIOKafkaConsumer
    from kafka import KafkaConsumer

WAIT_S = 10.0
_FIRST_PAUSE_S = 0.05
_LONGEST_PAUSE_S = 1.0


class _Patience:
    """The retry policy both variants share: look again after 50 ms, doubling up to 1 s,
    until ``wait_s`` has passed."""

    def __init__(self, topic: str, wait_s: float) -> None:
        self.topic = topic
        self.wait_s = wait_s
        self._deadline = time.monotonic() + wait_s
        self._pause_s = _FIRST_PAUSE_S

    def pause_s(self) -> float:
        """How long to sleep before looking again; raises once the wait is over."""
        left = self._deadline - time.monotonic()
        if left <= 0:
            raise TopicNotFound(self.topic, self.wait_s)
        pause, self._pause_s = self._pause_s, min(2 * self._pause_s, _LONGEST_PAUSE_S)
        return min(pause, left)


def tail(consumer: KafkaConsumer, topic: str, *, wait_s: float = WAIT_S) -> list[Any]:
    """Assign every partition of ``topic`` to a kafka-python consumer, positioned at its end.

    Returns the assigned partitions. kafka-python refreshes its metadata on each look.
    """
    from kafka import TopicPartition  # loaded already: the caller holds a KafkaConsumer

    patience = _Patience(topic, wait_s)
    while not (ids := consumer.partitions_for_topic(topic)):
        time.sleep(patience.pause_s())
    partitions = [TopicPartition(topic, p) for p in sorted(ids)]
    consumer.assign(partitions)
    consumer.seek_to_end(*partitions)
    for tp in partitions:  # the end offsets are looked up now, not at the first fetch
        consumer.position(tp)
    return partitions


async def tail_async(consumer: AIOKafkaConsumer, topic: str, *, wait_s: float = WAIT_S) -> set[Any]:
    """Subscribe a started, group-less aiokafka consumer to ``topic`` at its end.

    Without a group, aiokafka assigns every partition of a subscribed topic as soon as
    its metadata arrives (and partitions added later too), and each ``subscribe``
    refreshes that metadata. Returns the assignment.
    """
    patience = _Patience(topic, wait_s)
    consumer.subscribe([topic])
    while not (partitions := consumer.assignment()):
        await asyncio.sleep(patience.pause_s())
        if not consumer.assignment():  # subscribing again asks for fresh metadata
            consumer.subscribe([topic])
    await consumer.seek_to_end(*partitions)
    for tp in partitions:  # the end offsets are looked up now, not at the first fetch
        await consumer.position(tp)
    return set(partitions)
