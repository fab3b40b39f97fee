"""The serving path end to end through each real broker: job in, Result out."""

from __future__ import annotations

import asyncio
import json
import re
import urllib.error
import urllib.request
from collections.abc import AsyncIterator
from functools import partial
from pathlib import Path

import numpy as np
import onnxruntime as ort
import pytest
from aiokafka import AIOKafkaConsumer, TopicPartition

from maas.broker import free_port
from producer.kafka import KafkaSettings
from registry.drafts import Draft
from registry.entities import ModelVersion
from registry.registry import Registry
from registry.settings import RegistrySettings
from tests.kafka_helpers import create_topic, job, publish, read, read_results, running
from workers.batching.batcher import BatchConfig
from workers.recipes.demo import digits_samples
from workers.serving.loop import Worker, WorkerSettings
from workers.serving.pool import PoolSettings, serve_async

pytestmark = pytest.mark.both_brokers


@pytest.fixture(params=["aiokafka", "librdkafka"])
async def worker(
    kafka: KafkaSettings, registry: Registry, digits: ModelVersion, request: pytest.FixtureRequest
) -> AsyncIterator[Worker]:
    """A worker on each transport (the Kafka client library it consumes and produces with)."""
    settings = WorkerSettings(metrics_interval_s=0.5, transport=request.param)
    serving = Worker(kafka, registry.models, registry.metrics, settings)
    stop = asyncio.Event()
    task = asyncio.create_task(serving.run(stop))
    await asyncio.wait_for(serving.ready.wait(), 30)
    yield serving
    stop.set()
    await asyncio.wait_for(task, 60)


async def test_plain_kafka_job_is_answered_with_the_right_outputs_and_version(
    kafka: KafkaSettings, worker: Worker, digits: ModelVersion, digits_artifact: Path
) -> None:
    pixels, labels = digits_samples(5)
    raw = job("j-1", {"x": pixels.tolist()}, metadata={"trace": "abc"})
    await publish(kafka, kafka.topics.predict, [raw], headers=[("traceparent", b"00-1")])

    result = (await read_results(kafka, {"j-1"}))["j-1"]

    assert result["status"] == "ok", result["error"]
    assert result["schema"] == "maas.result/v1"
    assert result["version"] == digits.version == 1
    assert result["metadata"] == {"trace": "abc"}
    assert result["_key"] == b"j-1"
    assert result["_headers"]["traceparent"] == b"00-1"
    direct = ort.InferenceSession(str(digits_artifact)).run(None, {"x": pixels})
    np.testing.assert_allclose(result["outputs"]["probabilities"], direct[0], rtol=1e-5, atol=1e-6)
    assert result["outputs"]["label"] == direct[1].tolist()
    assert np.mean(np.array(result["outputs"]["label"]) == labels) >= 0.8
    assert result["timing"]["total_ms"] >= result["timing"]["infer_ms"] >= 0


async def test_explicit_version_and_custom_reply_topic(
    kafka: KafkaSettings, worker: Worker, digits_artifact: Path, registry: Registry
) -> None:
    v2 = registry.models.register("digits", Draft(digits_artifact), actor="test")  # not promoted
    pixels, _ = digits_samples(1)
    await create_topic(kafka, kafka.topics.dlq + "x")
    await publish(
        kafka,
        kafka.topics.predict,
        [
            job(
                "pinned",
                {"x": pixels.tolist()},
                version=v2.version,
                reply_to=kafka.topics.dlq + "x",
            ),
            job("aliased", {"x": pixels.tolist()}),
        ],
    )
    pinned = (await read_results(kafka, {"pinned"}, topic=kafka.topics.dlq + "x"))["pinned"]
    aliased = (await read_results(kafka, {"aliased"}))["aliased"]
    assert (pinned["status"], pinned["version"]) == ("ok", 2)
    assert (aliased["status"], aliased["version"]) == ("ok", 1)


async def test_undecodable_record_goes_to_dlq_and_the_next_job_is_answered(
    kafka: KafkaSettings, worker: Worker
) -> None:
    pixels, _ = digits_samples(1)
    await publish(
        kafka,
        kafka.topics.predict,
        [b"\x00not json at all", job("after", {"x": pixels.tolist()})],
        key=b"k1",
    )

    dead = await read(kafka, kafka.topics.dlq, until=lambda records: len(records) >= 1)
    headers = dict(dead[0].headers)
    assert dead[0].value == b"\x00not json at all"
    assert dead[0].key == b"k1"
    assert headers["maas.error.code"] == b"INVALID_INPUT"
    assert b"JSON" in headers["maas.error.message"]
    assert headers["maas.source.topic"] == kafka.topics.predict.encode()
    assert (await read_results(kafka, {"after"}))["after"]["status"] == "ok"


@pytest.mark.parametrize(
    ("fields", "code", "words"),
    [
        ({"inputs": {"pixels": [[0.0] * 64]}}, "INVALID_INPUT", "pixels"),
        ({"inputs": {"x": [[0.0] * 63]}}, "INVALID_INPUT", "64"),
        ({"inputs": {"x": [["a"] * 64]}}, "INVALID_INPUT", "x"),
        ({"inputs": {"x": [[0.0] * 64]}, "priority": "high"}, "INVALID_INPUT", "priority"),
        ({"inputs": {"x": [[0.0] * 64]}, "model": "nope"}, "MODEL_NOT_FOUND", "nope"),
        ({"inputs": {"x": [[0.0] * 64]}, "version": 99}, "VERSION_NOT_FOUND", "99"),
        ({"inputs": {"x": [[0.0] * 64]}, "alias": "staging"}, "VERSION_NOT_FOUND", "staging"),
        ({"inputs": {"x": [[0.0] * 64]}, "deadline_ms": 1}, "EXPIRED", "deadline"),
    ],
)
async def test_bad_jobs_get_a_clear_error_result(
    kafka: KafkaSettings, worker: Worker, fields: dict[str, object], code: str, words: str
) -> None:
    body = {"job_id": "bad", "model": "digits", **fields}
    await publish(kafka, kafka.topics.predict, [json.dumps(body).encode()])
    result = (await read_results(kafka, {"bad"}))["bad"]
    assert result["status"] == "error"
    assert result["error"]["code"] == code
    assert words in result["error"]["message"]
    assert result["outputs"] is None


async def test_many_jobs_are_batched_and_all_answered(kafka: KafkaSettings, worker: Worker) -> None:
    pixels, _ = digits_samples(200)
    raws = [job(f"m-{i}", {"x": [row.tolist()]}) for i, row in enumerate(pixels)]
    await publish(kafka, kafka.topics.predict, raws)
    results = await read_results(kafka, {f"m-{i}" for i in range(200)})
    assert all(r["status"] == "ok" for r in results.values())
    assert max(r["batch_size"] for r in results.values()) > 1


async def test_metric_windows_reach_the_registry(
    kafka: KafkaSettings, worker: Worker, registry: Registry
) -> None:
    pixels, _ = digits_samples(3)
    await publish(
        kafka,
        kafka.topics.predict,
        [job(f"w-{i}", {"x": [r.tolist()]}) for i, r in enumerate(pixels)],
    )
    await read_results(kafka, {"w-0", "w-1", "w-2"})
    await worker.metrics.flush()  # do not wait for the interval
    windows = registry.metrics.windows("digits")
    assert sum(w.jobs for w in windows) >= 3
    assert all(w.version == 1 for w in windows)


async def test_a_full_model_queue_pauses_polling_until_it_drains(
    kafka: KafkaSettings, registry: Registry, digits: ModelVersion, monkeypatch: pytest.MonkeyPatch
) -> None:
    paused_with: list[int] = []
    pause = AIOKafkaConsumer.pause

    def spy(consumer: AIOKafkaConsumer, *partitions: TopicPartition) -> None:
        paused_with.append(max(b.queued_rows for b in serving.models.batchers()))
        pause(consumer, *partitions)

    monkeypatch.setattr(AIOKafkaConsumer, "pause", spy)
    # One row per batch, at most 3 batches queued: 300 jobs in one fetch overfill it.
    settings = WorkerSettings(
        batch=BatchConfig(max_batch_size=1, max_delay_ms=0), max_queued_batches=3
    )
    serving = Worker(kafka, registry.models, registry.metrics, settings)
    # Resolved and loaded already: the first poll's jobs queue at once.
    await serving.models.get(await serving.models.resolve("digits", None, "production"))
    pixels, _ = digits_samples(1)
    ids = [f"q{i}" for i in range(300)]
    # A backlog before the worker starts: its first fetch brings all of it.
    await publish(kafka, kafka.topics.predict, [job(i, {"x": pixels.tolist()}) for i in ids])
    async with running(serving.run):
        results = await read_results(kafka, set(ids), timeout_s=60)
    # Paused because the queue was full (shutdown pauses too, with an empty queue).
    assert max(paused_with, default=0) >= 3
    assert all(results[i]["status"] == "ok" for i in ids)  # and resumed until all were served


@pytest.mark.parametrize("transport", ["aiokafka", "librdkafka"])
async def test_the_pool_serves_prometheus_metrics_of_the_jobs_it_answered(
    kafka: KafkaSettings, registry_settings: RegistrySettings, digits: ModelVersion, transport: str
) -> None:
    port = free_port()
    settings = PoolSettings(
        kafka=kafka,
        registry=registry_settings,
        worker=WorkerSettings(metrics_interval_s=0.5, transport=transport),
        metrics_port=port,
    )
    pixels, _ = digits_samples(3)
    await publish(
        kafka,
        kafka.topics.predict,
        [job(f"prom-{i}", {"x": [r.tolist()]}) for i, r in enumerate(pixels)],
    )
    async with running(partial(serve_async, settings)):
        await read_results(kafka, {"prom-0", "prom-1", "prom-2"})
        url = f"http://127.0.0.1:{port}/metrics"
        page = await asyncio.to_thread(lambda: urllib.request.urlopen(url, timeout=5).read())
    text = page.decode()
    answered = re.search(
        r'^maas_jobs_total\{model="digits",status="ok",version="1"\} (\S+)$', text, re.M
    )
    assert answered is not None, text[:2000]
    assert float(answered.group(1)) >= 3
    assert 'maas_job_seconds_bucket{le="0.005",model="digits",version="1"}' in text
    with pytest.raises(urllib.error.URLError):  # the server went with the worker
        await asyncio.to_thread(lambda: urllib.request.urlopen(url, timeout=2).read())
