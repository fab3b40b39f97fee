"""Two pools, one job, one answer (issue 28, item 3; workers/serving/pools.py): a general
pool (``maas worker``, every model) beside a pinned pool (``maas worker --model iris``)
on the embedded broker. The general pool learns from the pinned pool's announcements on
the control topic that iris has a pool of its own and leaves iris's jobs to it: every
job is answered once."""

from __future__ import annotations

import asyncio
import json
from collections import Counter
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from typing import Any

from producer.kafka import KafkaSettings, ensure_topics
from registry.drafts import Draft
from registry.registry import Registry
from tests.kafka_helpers import job, publish, read, settled
from workers.serving.loop import Worker, WorkerSettings
from workers.serving.pools import PinnedPools, announcement

X = {"x": [[0.1, 0.2, 0.3, 0.4]]}
JOBS = 60  # per model


@asynccontextmanager
async def pool(
    kafka: KafkaSettings, registry: Registry, *models: str, worker_id: str
) -> AsyncIterator[Worker]:
    settings = WorkerSettings(
        models=models, worker_id=worker_id, metrics_interval_s=5.0, pool_check_interval_s=0.5
    )
    worker = Worker(kafka, registry.models, registry.metrics, settings)
    stop = asyncio.Event()
    task = asyncio.create_task(worker.run(stop))
    try:
        await asyncio.wait_for(worker.ready.wait(), 60)
        yield worker
    finally:
        stop.set()
        await asyncio.wait_for(task, 60)


async def test_a_general_and_a_pinned_pool_answer_every_job_once(
    kafka: KafkaSettings, registry: Registry, make_onnx: Any
) -> None:
    for name in ("digits", "iris"):
        registry.models.register(name, Draft(make_onnx(), promote=True), actor="test")
    await ensure_topics(kafka)
    async with (
        pool(kafka, registry, worker_id="general") as general,
        pool(kafka, registry, "iris", worker_id="pinned"),
    ):
        assert general.pinned is not None
        for _ in range(300):  # the pinned pool announces itself every 0.5 s
            if "iris" in general.pinned.models:
                break
            await asyncio.sleep(0.2)
        assert general.pinned.models == {"iris"}

        jobs = [
            job(f"{model}-{i}", X, model=model) for i in range(JOBS) for model in ("digits", "iris")
        ]
        await publish(kafka, kafka.topics.predict, jobs)
        records = await read(kafka, kafka.topics.results, until=settled(2 * JOBS, quiet_s=2.0))

    answers = [json.loads(r.value) for r in records]
    counts = Counter(a["job_id"] for a in answers)
    assert len(counts) == 2 * JOBS
    assert max(counts.values()) == 1, [j for j, n in counts.items() if n > 1][:5]
    assert all(a["status"] == "ok" for a in answers)
    by = {a["job_id"]: a["worker"] for a in answers}
    assert {by[f"iris-{i}"] for i in range(JOBS)} == {"pinned"}
    assert {by[f"digits-{i}"] for i in range(JOBS)} == {"general"}


def test_a_pinned_pool_counts_while_its_announcements_are_fresh() -> None:
    now = [100.0]
    pinned = PinnedPools(interval_s=2.0, clock=lambda: now[0])
    pinned.saw(announcement(["iris"], "w1"))
    pinned.saw(announcement(["minilm", "digits"], "w2"))
    assert pinned.models == {"iris", "digits", "minilm"}
    now[0] += 5.0
    pinned.saw(announcement(["iris"], "w1"))  # the other pool went quiet
    assert pinned.models == {"iris", "digits", "minilm"}  # within three intervals
    now[0] += 2.0
    assert pinned.models == {"iris"}
    assert announcement(["b", "a"], "w").model == "a+b"
