"""Hot swap: an alias move reaches a running worker through the control topic.

The worker's alias cache lives 60 s here, so only the control event can make it
switch within the test's few seconds.
"""

from __future__ import annotations

import asyncio
import json
import time
from collections.abc import AsyncIterator, Iterator
from pathlib import Path
from typing import Any

import pytest

from producer.control import alias_move_publisher
from producer.kafka import KafkaSettings
from registry.drafts import Draft
from registry.registry import Registry
from registry.settings import RegistrySettings
from tests.kafka_helpers import publish, read_results
from workers.recipes.demo import build_digits_model, digits_samples
from workers.serving.loop import Worker, WorkerSettings

pytestmark = pytest.mark.both_brokers


@pytest.fixture(scope="module")
def artifact(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return build_digits_model(tmp_path_factory.mktemp("swap"), epochs=5).artifact


@pytest.fixture
def registry(tmp_path: Path, kafka: KafkaSettings, artifact: Path) -> Iterator[Registry]:
    settings = RegistrySettings(f"sqlite:///{tmp_path / 'r.db'}", tmp_path / "artifacts")
    with Registry.open(settings, on_alias_move=alias_move_publisher(kafka)) as opened:
        opened.models.register("digits", Draft(artifact, promote=True), actor="test")
        opened.models.register("digits", Draft(artifact), actor="test")
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

    answers: dict[str, dict[str, Any]] = {}

    async def wave(n: int) -> dict[str, Any]:
        """One alias job and two pinned ones; waits for their answers, returns the alias's."""
        ids = (f"a{n}", f"p1-{n}", f"p2-{n}")
        raws = [job(ids[0]), job(ids[1], version=1), job(ids[2], version=2)]
        await publish(kafka, kafka.topics.predict, raws)
        answers.update(await read_results(kafka, set(ids)))
        return answers[ids[0]]

    before = [await wave(n) for n in range(5)]  # a steady stream across the move
    await asyncio.to_thread(registry.models.promote, "digits", 2, actor="test", reason="swap")
    promoted, n = time.monotonic(), 5
    while (await wave(n))["version"] != 2:
        assert time.monotonic() - promoted < 5.0, "the alias move did not reach the worker"
        n += 1
    after = [await wave(m) for m in range(n + 1, n + 6)]  # once moved, it stays moved

    assert all(a["status"] == "ok" for a in answers.values()), "a job was not answered ok"
    assert {a["version"] for a in before} == {1}
    assert {a["version"] for a in after} == {2}
    pinned = [(a["job_id"][:2], a["version"]) for a in answers.values() if a["job_id"][0] == "p"]
    assert pinned and all(version == int(kind[1]) for kind, version in pinned)
