"""Hot swap: an alias move reaches a running worker through the control topic.

The worker's alias cache lives 60 s here, so only the control event can make it
switch within the test's few seconds.
"""

from __future__ import annotations

import asyncio
import json
from collections.abc import AsyncIterator, Iterator
from pathlib import Path

import pytest

from producer.control import alias_move_publisher
from producer.kafka import KafkaSettings
from registry.bundle import Registry
from registry.settings import RegistrySettings
from tests.kafka_helpers import publish, read_results
from workers.demo import build_digits_model, digits_samples
from workers.loop import Worker, WorkerSettings

pytestmark = pytest.mark.both_brokers


@pytest.fixture(scope="module")
def artifact(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return build_digits_model(tmp_path_factory.mktemp("swap"), epochs=5).artifact


@pytest.fixture
def registry(tmp_path: Path, kafka: KafkaSettings, artifact: Path) -> Iterator[Registry]:
    settings = RegistrySettings(f"sqlite:///{tmp_path / 'r.db'}", tmp_path / "artifacts")
    with Registry.open(settings, on_alias_move=alias_move_publisher(kafka)) as opened:
        opened.models.register("digits", artifact, actor="test", promote=True)
        opened.models.register("digits", artifact, actor="test")
        yield opened


@pytest.fixture
async def worker(kafka: KafkaSettings, registry: Registry) -> AsyncIterator[Worker]:
    serving = Worker(kafka, registry.models, registry.metrics, WorkerSettings(alias_ttl_s=60.0))
    stop = asyncio.Event()
    task = asyncio.create_task(serving.run(stop))
    await asyncio.wait_for(serving.ready.wait(), 30)
    yield serving
    stop.set()
    await asyncio.wait_for(task, 60)


async def test_promotion_swaps_a_running_worker_without_dropping_jobs(
    kafka: KafkaSettings, registry: Registry, worker: Worker
) -> None:
    pixels, _ = digits_samples(1)
    row = pixels.tolist()

    def job(job_id: str, **fields: object) -> bytes:
        return json.dumps(
            {"job_id": job_id, "model": "digits", "inputs": {"x": row}, **fields}
        ).encode()

    await publish(kafka, kafka.topics.predict, [job("before")])
    assert (await read_results(kafka, {"before"}))["before"]["version"] == 1

    sent: list[str] = []
    for wave in range(40):  # a steady stream across the move, with pinned jobs mixed in
        if wave == 5:
            await asyncio.to_thread(
                registry.models.promote, "digits", 2, actor="test", reason="swap"
            )
        await publish(
            kafka,
            kafka.topics.predict,
            [job(f"a{wave}"), job(f"p1-{wave}", version=1), job(f"p2-{wave}", version=2)],
        )
        sent += [f"a{wave}", f"p1-{wave}", f"p2-{wave}"]
        await asyncio.sleep(0.1)

    results = await read_results(kafka, set(sent))
    assert all(results[j]["status"] == "ok" for j in sent), "a job was not answered ok"
    assert all(results[f"p1-{w}"]["version"] == 1 for w in range(40))
    assert all(results[f"p2-{w}"]["version"] == 2 for w in range(40))
    assert {results[f"a{w}"]["version"] for w in range(5)} == {1}
    assert {results[f"a{w}"]["version"] for w in range(30, 40)} == {2}, (
        "the alias move did not reach the worker within 2.5 s"
    )
