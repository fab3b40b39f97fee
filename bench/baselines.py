"""What maas is compared with: a naive per-message worker and a pure relay.

Both drain the predict topic into the results topic, one record at a time, the way a
user would write it by hand (kafka consume → [predict] → produce and wait).
"""

from __future__ import annotations

import argparse
import asyncio
import json
from pathlib import Path

import numpy as np
from aiokafka import AIOKafkaConsumer, AIOKafkaProducer

from producer.kafka import KafkaSettings, Topics
from registry.bundle import Registry
from registry.settings import RegistrySettings
from workers.loop import WorkerSettings
from workers.runtime import RuntimeSettings, load_runtime


async def naive(kafka: KafkaSettings, model: str, registry: RegistrySettings) -> None:
    """Consume one, predict one, produce one and wait: what a user writes by hand."""
    with Registry.open(registry) as opened:
        version = opened.models.resolve(model)
    runtime = load_runtime(version.path, version.format, version.signature, RuntimeSettings())
    consumer = AIOKafkaConsumer(
        kafka.topics.predict, **kafka.consumer("bench-naive", enable_auto_commit=True)
    )
    producer = AIOKafkaProducer(**kafka.producer(linger_ms=0))
    await consumer.start()
    await producer.start()
    try:
        async for record in consumer:
            job = json.loads(record.value or b"{}")
            out = runtime.infer(runtime.prepare(job["inputs"]))
            reply = {
                "job_id": job["job_id"],
                "status": "ok",
                "outputs": {k: np.asarray(v).tolist() for k, v in out.items()},
            }
            await producer.send_and_wait(
                kafka.topics.results, json.dumps(reply).encode(), key=record.key
            )
    finally:
        await consumer.stop()
        await producer.stop()


async def relay(kafka: KafkaSettings) -> None:
    """Consume and re-produce each poll's records, pipelined: the transport limit."""
    consumer = AIOKafkaConsumer(
        kafka.topics.predict, **kafka.consumer("bench-relay", max_poll_records=2000)
    )
    # The same produce batching as the maas worker, so the relay is the transport's limit.
    producer = AIOKafkaProducer(
        **kafka.producer(max_batch_size=WorkerSettings().producer_batch_bytes)
    )
    await consumer.start()
    await producer.start()
    try:
        while True:
            batch = await consumer.getmany(timeout_ms=100)
            sends = [
                await producer.send(kafka.topics.results, r.value, key=r.key)
                for records in batch.values()
                for r in records
            ]
            if sends:
                await asyncio.gather(*sends)
                await consumer.commit()
    finally:
        await consumer.stop()
        await producer.stop()


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--bootstrap-servers", required=True)
    parser.add_argument("--prefix", required=True)
    parser.add_argument("--model")
    parser.add_argument("--database-url", default="")
    parser.add_argument("--artifact-dir", default="")
    args = parser.parse_args()
    kafka = KafkaSettings(
        bootstrap_servers=args.bootstrap_servers, topics=Topics(args.prefix), embedded=True
    )
    if args.model:
        registry = RegistrySettings(
            database_url=args.database_url, artifact_dir=Path(args.artifact_dir)
        )
        asyncio.run(naive(kafka, args.model, registry))
    else:
        asyncio.run(relay(kafka))


if __name__ == "__main__":
    main()
