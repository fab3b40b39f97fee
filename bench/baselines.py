"""What maas is compared with: a per-message worker and a pure relay, each a process.

``naive`` is the fastest loop a performance-minded user writes by hand: librdkafka
(confluent-kafka) consumes one record, the model predicts it (the same runtime maas
uses), and the answer is produced without waiting for its ack (librdkafka batches
sends in the background and commits offsets by itself), with orjson for the JSON.
``relay`` consumes and re-produces each poll's records with the client maas uses
(aiokafka), pipelined and batched as maas publishes: the transport's limit.
Both use the fetch wait maas's own consumers use on the same broker.
"""

from __future__ import annotations

import argparse
import asyncio
import signal
from pathlib import Path
from typing import Any

import orjson
from aiokafka import AIOKafkaConsumer, AIOKafkaProducer

from producer.capabilities import run_blocking
from producer.kafka import KafkaSettings, Topics, detect_capabilities
from registry.registry import Registry
from registry.settings import RegistrySettings
from workers.runtime.loader import RuntimeSettings, load_runtime
from workers.serving.loop import WorkerSettings


def librdkafka_options(kafka: KafkaSettings) -> tuple[dict[str, Any], dict[str, Any]]:
    """Consumer and producer options for confluent-kafka, matching maas's own: the same
    fetch wait, acks=all, idempotence where the broker grants it."""
    capabilities = run_blocking(lambda: detect_capabilities(kafka))
    fetch_wait_ms = kafka.consumer(capabilities, None)["fetch_max_wait_ms"]
    consumer = {
        "bootstrap.servers": kafka.bootstrap_servers,
        "group.id": "bench-naive",
        "auto.offset.reset": "earliest",
        "fetch.wait.max.ms": fetch_wait_ms,
    }
    producer = {
        "bootstrap.servers": kafka.bootstrap_servers,
        "acks": "all",
        "linger.ms": 2,
        "enable.idempotence": capabilities.idempotence,
    }
    return consumer, producer


def naive(kafka: KafkaSettings, model: str, registry: RegistrySettings) -> None:
    """Consume one, predict one, produce one: until SIGTERM."""
    from confluent_kafka import Consumer, Producer

    with Registry.open(registry) as opened:
        version = opened.models.resolve(model)
    runtime = load_runtime(version.path, version.format, version.signature, RuntimeSettings())
    consumer_options, producer_options = librdkafka_options(kafka)
    consumer, producer = Consumer(consumer_options), Producer(producer_options)
    consumer.subscribe([kafka.topics.predict])
    stopping: list[int] = []
    signal.signal(signal.SIGTERM, lambda signum, _: stopping.append(signum))
    results = kafka.topics.results
    try:
        while not stopping:
            record = consumer.poll(0.1)
            if record is None or record.error():
                continue
            job = orjson.loads(record.value() or b"{}")
            outputs = runtime.infer(runtime.prepare(job["inputs"]))
            reply = {"job_id": job["job_id"], "status": "ok", "model": model, "outputs": outputs}
            value = orjson.dumps(reply, option=orjson.OPT_SERIALIZE_NUMPY)
            while True:
                try:
                    producer.produce(results, value, key=record.key())
                    break
                except BufferError:  # librdkafka's queue is full: let it send
                    producer.poll(0.05)
            producer.poll(0)
    finally:
        consumer.close()
        producer.flush(10)


async def relay(kafka: KafkaSettings) -> None:
    """Consume and re-produce each poll's records, pipelined: the transport limit."""
    capabilities = await detect_capabilities(kafka)
    consumer = AIOKafkaConsumer(
        kafka.topics.predict, **kafka.consumer(capabilities, "bench-relay", max_poll_records=2000)
    )
    # The same produce batching as the maas worker, so the relay is the transport's limit.
    producer = AIOKafkaProducer(
        **kafka.producer(capabilities, max_batch_size=WorkerSettings().producer_batch_bytes)
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
    kafka = KafkaSettings(bootstrap_servers=args.bootstrap_servers, topics=Topics(args.prefix))
    if args.model:
        registry = RegistrySettings(
            database_url=args.database_url, artifact_dir=Path(args.artifact_dir)
        )
        naive(kafka, args.model, registry)
    else:
        asyncio.run(relay(kafka))


if __name__ == "__main__":
    main()
