"""The contract is enough: plain aiokafka, no maas client code, gets a Result."""

from __future__ import annotations

import json
from typing import TYPE_CHECKING

import pytest
from aiokafka import AIOKafkaConsumer, AIOKafkaProducer, TopicPartition

if TYPE_CHECKING:
    from tests.serving_fixtures import ServedDigits

pytestmark = pytest.mark.both_brokers


async def test_a_hand_written_json_job_gets_a_result(served_digits: ServedDigits) -> None:
    bootstrap = served_digits.kafka.bootstrap_servers
    prefix = served_digits.kafka.topics.prefix
    replies = f"{prefix}results"
    consumer = AIOKafkaConsumer(bootstrap_servers=bootstrap, auto_offset_reset="latest")
    producer = AIOKafkaProducer(bootstrap_servers=bootstrap)
    await consumer.start()
    await producer.start()
    try:
        partitions = [TopicPartition(replies, p) for p in await producer.partitions_for(replies)]
        consumer.assign(partitions)
        await consumer.seek_to_end(*partitions)
        for tp in partitions:
            await consumer.position(tp)
        job = {
            "schema": "maas.predict/v1",
            "job_id": "interop-1",
            "model": "digits",
            "version": None,
            "alias": "production",
            "inputs": {"x": [[0.0] * 64, [16.0] * 64]},
            "reply_to": replies,
            "deadline_ms": None,
            "priority": 0,
            "metadata": {"caller": "plain-aiokafka"},
        }
        await producer.send_and_wait(f"{prefix}predict", json.dumps(job).encode(), key=b"interop-1")
        result = None
        while result is None:
            batch = await consumer.getmany(timeout_ms=30_000)
            assert batch, "no record on the reply topic within 30 s"
            for record in (r for records in batch.values() for r in records):
                if record.key == b"interop-1":
                    result = json.loads(record.value or b"")
    finally:
        await producer.stop()
        await consumer.stop()
    assert result["schema"] == "maas.result/v1"
    assert (result["job_id"], result["status"], result["error"]) == ("interop-1", "ok", None)
    assert result["version"] == served_digits.version
    assert result["metadata"] == {"caller": "plain-aiokafka"}
    assert len(result["outputs"]["probabilities"]) == len(result["outputs"]["label"]) == 2
