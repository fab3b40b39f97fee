"""Reading a topic from now on, with kafka-python and aiokafka, against the real broker."""

from __future__ import annotations

import asyncio
import time
import uuid
from typing import Any

import pytest
from aiokafka import AIOKafkaConsumer
from kafka import KafkaConsumer

from producer.errors import TopicNotFound
from producer.kafka import KafkaSettings, detect_capabilities, ensure_topics
from producer.tail import tail, tail_async
from tests.kafka_helpers import publish_batch


async def publish_to_every_partition(kafka: KafkaSettings, topic: str, tag: str) -> set[bytes]:
    """One record per partition of ``topic``; returns the values sent."""
    values: set[bytes] = set()
    for partition in range(kafka.topics.partitions()[topic]):
        value = f"{tag}-{partition}".encode()
        await publish_batch(kafka, topic, [value], partition=partition, key=None)
        values.add(value)
    return values


def values_of(batch: dict[Any, list[Any]]) -> set[bytes]:
    return {record.value for records in batch.values() for record in records}


async def test_tail_async_sees_what_is_sent_after_it_and_nothing_before(
    kafka: KafkaSettings,
) -> None:
    topic = kafka.topics.results
    capabilities = await ensure_topics(kafka)
    await publish_to_every_partition(kafka, topic, "old")
    consumer = AIOKafkaConsumer(**kafka.consumer(capabilities, None, auto_offset_reset="earliest"))
    await consumer.start()
    try:
        partitions = await tail_async(consumer, topic)
        assert {tp.partition for tp in partitions} == set(range(8))
        new = await publish_to_every_partition(kafka, topic, "new")
        seen: set[bytes] = set()
        async with asyncio.timeout(30):
            while not new <= seen:
                seen |= values_of(await consumer.getmany(timeout_ms=200))
    finally:
        await consumer.stop()
    assert seen == new


def test_tail_sees_what_is_sent_after_it_and_nothing_before(kafka: KafkaSettings) -> None:
    topic = kafka.topics.results
    capabilities = asyncio.run(ensure_topics(kafka))
    asyncio.run(publish_to_every_partition(kafka, topic, "old"))
    consumer = KafkaConsumer(**kafka.consumer(capabilities, None, auto_offset_reset="earliest"))
    try:
        partitions = tail(consumer, topic)
        assert [tp.partition for tp in partitions] == list(range(8))
        new = asyncio.run(publish_to_every_partition(kafka, topic, "new"))
        seen: set[bytes] = set()
        deadline = time.monotonic() + 30
        while not new <= seen and time.monotonic() < deadline:
            seen |= values_of(consumer.poll(timeout_ms=200))
    finally:
        consumer.close()
    assert seen == new


def test_tail_gives_up_on_a_topic_that_does_not_appear(kafka: KafkaSettings) -> None:
    consumer = KafkaConsumer(**kafka.consumer(asyncio.run(detect_capabilities(kafka)), None))
    missing = f"missing-{uuid.uuid4().hex[:8]}"
    started = time.monotonic()
    try:
        with pytest.raises(TopicNotFound) as caught:
            tail(consumer, missing, wait_s=0.5)
    finally:
        consumer.close()
    assert 0.5 <= time.monotonic() - started < 5
    assert caught.value.topic == missing and "create it first" in str(caught.value)
