"""A deleted tenant results topic must not lose answers silently (issue 28, item 9), on
the embedded broker, which acknowledges writes to a topic that no longer exists.

The worker looks for missing service topics every ``topic_check_interval_s`` and
creates them again, a tenant's as the default tenant's; and a job whose tenant's results
topic is missing when the job is admitted is dead-lettered, with a log line, never
answered into the void.
"""

from __future__ import annotations

import asyncio
import json
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from typing import Any

import pytest
from aiokafka.admin import AIOKafkaAdminClient

from producer.contract.tenancy import Namespace
from producer.kafka import KafkaSettings, ensure_topics
from registry.drafts import Draft
from registry.entities import ModelVersion
from registry.registry import Registry
from tests.kafka_helpers import create_topic, job, publish, read, read_results, topic_names
from workers.serving.loop import Worker, WorkerSettings
from workers.tenancy.guard import TenancySettings

X = {"x": [[0.1, 0.2, 0.3, 0.4]]}


@pytest.fixture
def tiny(registry: Registry, make_onnx: Any) -> ModelVersion:
    """A small model (x: 4 features) as "digits", quicker to build than the real one."""
    return registry.models.register("digits", Draft(make_onnx(), promote=True), actor="test")


@asynccontextmanager
async def worker_running(
    kafka: KafkaSettings, registry: Registry, interval_s: float
) -> AsyncIterator[Worker]:
    settings = WorkerSettings(
        metrics_interval_s=5.0,
        topic_check_interval_s=interval_s,
        tenancy=TenancySettings(grants_ttl_s=600.0),
    )
    worker = Worker(kafka, registry.models, registry.metrics, settings, tenants=registry.tenants)
    stop = asyncio.Event()
    task = asyncio.create_task(worker.run(stop))
    await asyncio.wait_for(worker.ready.wait(), 30)
    try:
        yield worker
    finally:
        stop.set()
        await asyncio.wait_for(task, 60)


async def acme(kafka: KafkaSettings, registry: Registry, *, results: bool) -> Namespace:
    registry.tenants.add("acme", models=["digits"], actor="test")
    namespace = kafka.topics.namespace("acme")
    await ensure_topics(kafka)
    for topic in (namespace.predict, namespace.retrain) + ((namespace.results,) if results else ()):
        await create_topic(kafka, topic)
    return namespace


async def delete(kafka: KafkaSettings, topic: str) -> None:
    admin = AIOKafkaAdminClient(bootstrap_servers=kafka.bootstrap_servers)
    await admin.start()
    try:
        await admin.delete_topics([topic])
    finally:
        await admin.close()


async def test_a_deleted_tenant_results_topic_is_created_again_and_answers_arrive(
    kafka: KafkaSettings, registry: Registry, tiny: ModelVersion
) -> None:
    namespace = await acme(kafka, registry, results=True)
    async with worker_running(kafka, registry, interval_s=0.5):
        await publish(kafka, namespace.predict, [job("before", X)])
        before = await read_results(kafka, {"before"}, topic=namespace.results)
        assert before["before"]["status"] == "ok", before["before"]["error"]

        await delete(kafka, namespace.results)
        for _ in range(100):  # the worker looks every 0.5 s
            if namespace.results in await topic_names(kafka):
                break
            await asyncio.sleep(0.2)

        await publish(kafka, namespace.predict, [job("after", X)])
        result = (await read_results(kafka, {"after"}, topic=namespace.results))["after"]
        assert result["status"] == "ok", result["error"]


async def test_a_job_whose_results_topic_is_missing_is_dead_lettered_and_logged(
    kafka: KafkaSettings,
    registry: Registry,
    tiny: ModelVersion,
    capsys: pytest.CaptureFixture[str],
) -> None:
    namespace = await acme(kafka, registry, results=False)  # as if deleted before the job
    async with worker_running(kafka, registry, interval_s=600.0):  # not created again
        await publish(kafka, namespace.predict, [job("lost", X)], key=b"lost")

        records = await read(
            kafka, kafka.topics.dlq, until=lambda rs: any(r.key == b"lost" for r in rs)
        )
        [letter] = [r for r in records if r.key == b"lost"]
        headers = dict(letter.headers)
        assert headers["maas.error.code"] == b"INTERNAL"
        assert namespace.results.encode() in headers["maas.error.message"]
        assert headers["maas.source.topic"] == namespace.predict.encode()
        assert json.loads(letter.value)["job_id"] == "lost"
    logged = capsys.readouterr()  # stdout, or stderr once a CLI test set JSON logs up
    assert "results topic missing" in logged.out + logged.err
    assert namespace.results not in await topic_names(kafka)  # nothing answered there
