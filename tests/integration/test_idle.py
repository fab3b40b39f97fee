"""The idle backoff on a real consumer: the fetch wait grows with the quiet spell, drops
on records, and neither paused polls nor a consumer with a long wait change it."""

from __future__ import annotations

from collections.abc import AsyncIterator
from contextlib import asynccontextmanager

import pytest
from aiokafka import AIOKafkaConsumer, TopicPartition

from producer.kafka import KafkaSettings, ensure_topics
from workers.kafka.idle import SLOWEST_MS, IdleBackoff


class Clock:
    def __init__(self) -> None:
        self.now = 100.0

    def __call__(self) -> float:
        return self.now


@asynccontextmanager
async def started(kafka: KafkaSettings, **options: int) -> AsyncIterator[AIOKafkaConsumer]:
    """A consumer of the predict topic's first partition, built as workers build theirs."""
    capabilities = await ensure_topics(kafka)
    consumer = AIOKafkaConsumer(**kafka.consumer(capabilities, None, **options))
    await consumer.start()
    consumer.assign([TopicPartition(kafka.topics.predict, 0)])
    try:
        yield consumer
    finally:
        await consumer.stop()


@pytest.fixture
async def consumer(kafka: KafkaSettings) -> AsyncIterator[AIOKafkaConsumer]:
    async with started(kafka) as consumer:
        yield consumer


def fetch_wait_ms(consumer: AIOKafkaConsumer) -> int:
    """What aiokafka's fetcher puts in its next fetch request (the attribute IdleBackoff
    sets: if aiokafka renames it, this test fails)."""
    wait: int = consumer._fetcher._fetch_max_wait_ms
    return wait


async def test_the_wait_grows_with_the_quiet_spell_and_drops_on_records(
    consumer: AIOKafkaConsumer,
) -> None:
    clock = Clock()
    idle = IdleBackoff(consumer, clock=clock)
    assert idle.fast_ms == fetch_wait_ms(consumer) == 5  # the embedded broker's wait
    clock.now += 0.03
    idle.polled(False)
    assert fetch_wait_ms(consumer) == 5  # a short gap between jobs changes nothing
    clock.now += 0.97
    idle.polled(False)
    assert fetch_wait_ms(consumer) == 100  # a tenth of the quiet second
    clock.now += 60
    idle.polled(False)
    assert fetch_wait_ms(consumer) == SLOWEST_MS
    idle.polled(True)
    assert fetch_wait_ms(consumer) == 5
    clock.now += 0.5
    idle.polled(False)
    assert fetch_wait_ms(consumer) == 50  # quiet since the records, not since the start


async def test_polls_while_paused_are_not_quiet(consumer: AIOKafkaConsumer) -> None:
    clock = Clock()
    idle = IdleBackoff(consumer, clock=clock)
    consumer.pause(*consumer.assignment())
    clock.now += 10
    idle.polled(False)  # paused by backpressure: the jobs are there, waiting
    consumer.resume(*consumer.paused())
    assert fetch_wait_ms(consumer) == 5
    clock.now += 1
    idle.polled(False)
    assert fetch_wait_ms(consumer) == 100


async def test_a_consumer_that_waits_long_already_keeps_its_wait(kafka: KafkaSettings) -> None:
    async with started(kafka, fetch_max_wait_ms=500) as consumer:  # as on Apache Kafka
        clock = Clock()
        idle = IdleBackoff(consumer, clock=clock)
        for step in (0.0, 1.0, 60.0):
            clock.now += step
            idle.polled(bool(await consumer.getmany(timeout_ms=10)))  # an empty topic
            assert fetch_wait_ms(consumer) == 500
