"""Test helpers that talk to the real brokers with plain Kafka clients."""

from __future__ import annotations

import asyncio
import json
import time
from collections.abc import AsyncIterator, Callable
from contextlib import asynccontextmanager
from typing import Any

from aiokafka import AIOKafkaConsumer, AIOKafkaProducer, TopicPartition
from aiokafka.admin import AIOKafkaAdminClient, NewTopic
from aiokafka.structs import ConsumerRecord

from maas.broker import EmbeddedBroker
from producer.kafka import KafkaSettings, detect_capabilities
from scripts.apache_kafka import ApacheKafka

# What the ``broker`` fixture yields: the embedded broker or Apache Kafka.
Broker = EmbeddedBroker | ApacheKafka


def job(job_id: str, inputs: object, **fields: object) -> bytes:
    """A PredictJob for the digits model as a plain client would write it: JSON bytes."""
    return json.dumps({"job_id": job_id, "model": "digits", "inputs": inputs, **fields}).encode()


def retrain_job(job_id: str, **fields: object) -> bytes:
    """A RetrainJob's bytes for digits, ``fields`` added or replacing the defaults."""
    body = {"schema": "maas.retrain/v1", "job_id": job_id, "model": "digits", **fields}
    return json.dumps(body).encode()


async def publish(settings: KafkaSettings, topic: str, values: list[bytes], **kwargs: Any) -> None:
    """Publish raw bytes with a plain aiokafka producer (no maas client)."""
    producer = AIOKafkaProducer(bootstrap_servers=settings.bootstrap_servers)
    await producer.start()
    try:
        for value in values:
            await producer.send_and_wait(topic, value, **kwargs)
    finally:
        await producer.stop()


async def publish_batch(
    settings: KafkaSettings, topic: str, values: list[bytes], *, partition: int, key: bytes | None
) -> None:
    """Publish raw bytes as ONE record batch: a consumer gets them all in one fetch."""
    producer = AIOKafkaProducer(bootstrap_servers=settings.bootstrap_servers)
    await producer.start()
    try:
        batch = producer.create_batch()
        for value in values:
            if batch.append(key=key, value=value, timestamp=None) is None:
                raise ValueError(f"{len(values)} records do not fit in one batch")
        batch.close()
        await (await producer.send_batch(batch, topic, partition=partition))
    finally:
        await producer.stop()


async def read(
    settings: KafkaSettings,
    topic: str,
    *,
    until: Callable[[list[ConsumerRecord[bytes, bytes]]], bool],
    timeout_s: float = 30.0,
    isolation_level: str = "read_uncommitted",
) -> list[ConsumerRecord[bytes, bytes]]:
    """Read ``topic`` from the beginning (no group) until ``until(records)`` holds."""
    consumer = AIOKafkaConsumer(
        topic,
        bootstrap_servers=settings.bootstrap_servers,
        auto_offset_reset="earliest",
        isolation_level=isolation_level,
        # A reply topic may not exist until the worker's first answer creates it: look
        # again soon rather than after the default five minutes.
        metadata_max_age_ms=500,
    )
    await consumer.start()
    records: list[ConsumerRecord[bytes, bytes]] = []
    try:
        async with asyncio.timeout(timeout_s):
            while not until(records):
                batch = await consumer.getmany(timeout_ms=200)
                for part in batch.values():
                    records.extend(part)
    finally:
        await consumer.stop()
    return records


async def _partitions(settings: KafkaSettings, topic: str) -> set[int]:
    """``topic``'s partitions (a consumer learns them only for topics it subscribes to)."""
    producer = AIOKafkaProducer(**settings.common())
    await producer.start()
    try:
        partitions: set[int] = await producer.partitions_for(topic)
    finally:
        await producer.stop()
    return partitions


async def read_all(
    settings: KafkaSettings,
    topic: str,
    *,
    timeout_s: float = 30.0,
    isolation_level: str = "read_uncommitted",
) -> list[ConsumerRecord[bytes, bytes]]:
    """Every record of ``topic`` up to its end offsets as of this call: all that the
    broker acknowledged before it, and so every duplicate there is to see (read
    committed: up to the last stable offsets, every committed record)."""
    consumer = AIOKafkaConsumer(
        **settings.common(), auto_offset_reset="earliest", isolation_level=isolation_level
    )
    await consumer.start()
    records: list[ConsumerRecord[bytes, bytes]] = []
    try:
        async with asyncio.timeout(timeout_s):
            partitions = [TopicPartition(topic, p) for p in await _partitions(settings, topic)]
            consumer.assign(partitions)
            ends = await consumer.end_offsets(partitions)
            await consumer.seek_to_beginning(*partitions)
            while any([await consumer.position(tp) < end for tp, end in ends.items()]):
                batch = await consumer.getmany(timeout_ms=200)
                for part in batch.values():
                    records.extend(part)
    finally:
        await consumer.stop()
    return records


async def read_results(
    settings: KafkaSettings, job_ids: set[str], *, topic: str | None = None, timeout_s: float = 30.0
) -> dict[str, dict[str, Any]]:
    """Results (decoded JSON) for ``job_ids`` from the results topic, the latest per job."""

    def answered(records: list[ConsumerRecord[bytes, bytes]]) -> bool:
        return job_ids <= {json.loads(r.value)["job_id"] for r in records if r.value}

    records = await read(
        settings, topic or settings.topics.results, until=answered, timeout_s=timeout_s
    )
    results = {}
    for record in records:
        body = json.loads(record.value)
        results[body["job_id"]] = {**body, "_headers": dict(record.headers), "_key": record.key}
    return results


async def committed_offset(kafka: KafkaSettings, group: str, tp: TopicPartition) -> int | None:
    consumer = AIOKafkaConsumer(**kafka.consumer(await detect_capabilities(kafka), group))
    await consumer.start()
    try:
        offset: int | None = await consumer.committed(tp)
        return offset
    finally:
        await consumer.stop()


def settled(expected: int, quiet_s: float = 0.5) -> Callable[[list[Any]], bool]:
    """For ``read``: done once ``expected`` records arrived and ``quiet_s`` more polling
    brought nothing else to stop at (duplicates would come in that time)."""
    reached: list[float] = []

    def until(records: list[Any]) -> bool:
        if len(records) < expected:
            return False
        reached.append(time.monotonic())
        return reached[-1] - reached[0] >= quiet_s

    return until


@asynccontextmanager
async def running(coro_factory: Callable[[asyncio.Event], Any]) -> AsyncIterator[asyncio.Event]:
    """Run ``coro_factory(stop)`` as a task for the duration of the block, then stop it."""
    stop = asyncio.Event()
    task = asyncio.create_task(coro_factory(stop))
    try:
        yield stop
    finally:
        stop.set()
        await asyncio.wait_for(task, 60)


async def create_topic(settings: KafkaSettings, name: str, partitions: int = 1) -> None:
    """Create a topic, as a client must before naming it as a job's ``reply_to``."""
    admin = AIOKafkaAdminClient(**settings.common())
    await admin.start()
    try:
        await admin.create_topics([NewTopic(name, partitions, 1)])
    finally:
        await admin.close()


async def topic_names(kafka: KafkaSettings) -> set[str]:
    """The names of every topic the cluster has now."""
    admin = AIOKafkaAdminClient(bootstrap_servers=kafka.bootstrap_servers)
    await admin.start()
    try:
        return set(await admin.list_topics())
    finally:
        await admin.close()


@asynccontextmanager
async def group_member(settings: KafkaSettings, topic: str, group: str) -> AsyncIterator[None]:
    """A consumer that has joined ``group`` on ``topic`` (and reads nothing) for the
    block: what a trainer looks like to ``maas retrain``'s check, without training."""
    consumer = AIOKafkaConsumer(topic, bootstrap_servers=settings.bootstrap_servers, group_id=group)
    await consumer.start()
    try:
        async with asyncio.timeout(30):
            while not consumer.assignment():
                await consumer.getmany(timeout_ms=100, max_records=1)
        consumer.pause(*consumer.assignment())
        yield
    finally:
        await consumer.stop()
