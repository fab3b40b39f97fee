"""Capture through a real worker on each broker: every answered job of a model whose
policy samples it is on the capture topic once, keyed by job_id, inputs as the policy
says; a policy set while the worker runs takes effect (control event). (A tenant's records go
to its own capture topic: tests/unit/serving/test_capture.py.)"""

from __future__ import annotations

import asyncio
import json
from collections.abc import AsyncIterator

import pytest

from producer.contract.messages import ControlEvent, decode_capture
from producer.control import publish_control
from producer.kafka import KafkaSettings, ensure_topics
from registry.entities import ModelVersion
from registry.labelled import CapturePolicy
from registry.registry import Registry
from tests.kafka_helpers import job, publish, read, read_all, read_results
from workers.recipes.demo import digits_samples
from workers.serving.capture import CaptureSettings
from workers.serving.loop import Worker, WorkerSettings

pytestmark = pytest.mark.both_brokers


async def _serving(
    kafka: KafkaSettings, registry: Registry, settings: WorkerSettings
) -> AsyncIterator[Worker]:
    worker = Worker(kafka, registry.models, registry.metrics, settings)
    worker.capture.follow(registry.quality)
    stop = asyncio.Event()
    task = asyncio.create_task(worker.run(stop))
    await asyncio.wait_for(worker.ready.wait(), 30)
    yield worker
    stop.set()
    await asyncio.wait_for(task, 60)


@pytest.fixture
async def worker(
    kafka: KafkaSettings, registry: Registry, digits: ModelVersion
) -> AsyncIterator[Worker]:
    await ensure_topics(kafka)
    settings = WorkerSettings(capture=CaptureSettings(refresh_s=60.0))  # control events only
    async for serving in _serving(kafka, registry, settings):
        yield serving


async def test_policy_set_live_captures_every_answer_once_with_inputs_hashed(
    kafka: KafkaSettings, worker: Worker, registry: Registry
) -> None:
    pixels, _ = digits_samples(2)
    await publish(kafka, kafka.topics.predict, [job("before", {"x": pixels.tolist()})])
    await read_results(kafka, {"before"})
    registry.quality.set_policy("digits", CapturePolicy(rate=1.0, inputs="hash:x"), actor="t")
    await asyncio.to_thread(publish_control, kafka, ControlEvent(event="monitor", model="digits"))
    await asyncio.sleep(1.0)  # the worker reads the policies again on the event
    ids = [f"j-{i}" for i in range(20)]
    await publish(kafka, kafka.topics.predict, [job(i, {"x": pixels.tolist()}) for i in ids])
    results = await read_results(kafka, set(ids))

    await read(kafka, kafka.topics.capture, until=lambda rs: len(rs) >= len(ids))
    await asyncio.sleep(0.5)  # room for a duplicate to show
    records = await read_all(kafka, kafka.topics.capture)

    captured = {r.key: decode_capture(r.value) for r in records}
    assert len(records) == len(ids)  # once each, and not the job answered before
    assert set(captured) == {i.encode() for i in ids}
    for job_id in ids:
        record = captured[job_id.encode()]
        assert (record.model, record.version, record.status) == ("digits", 1, "ok")
        assert record.outputs is not None
        assert record.outputs["label"] == results[job_id]["outputs"]["label"]
        assert record.inputs is not None
        assert all(len(h) == 64 for h in record.inputs["x"])  # hashed, not the pixels
        assert json.loads(json.dumps(record.inputs))  # plain JSON
