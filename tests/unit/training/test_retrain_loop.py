"""The full loop: a due schedule → scheduler → trainer → gate → a serving worker
hot-swaps → prediction results name the new version."""

from __future__ import annotations

import asyncio
import json
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest
import torch
from aiokafka import AIOKafkaProducer

from producer.contract.messages import RetrainJob
from producer.control import alias_move_publisher
from producer.kafka import KafkaSettings, ensure_topics
from registry.registry import Registry
from registry.settings import RegistrySettings
from tests.kafka_helpers import publish, read_results
from workers.recipes.demo import digits_samples
from workers.serving.loop import Worker, WorkerSettings
from workers.training.scheduler import Scheduler, SchedulerSettings
from workers.training.trainer import Trainer, TrainerSettings


@pytest.fixture
def registry(tmp_path: Path, kafka: KafkaSettings) -> Iterator[Registry]:
    settings = RegistrySettings(
        database_url=f"sqlite:///{tmp_path / 'registry.db'}", artifact_dir=tmp_path / "artifacts"
    )
    with Registry.open(settings, on_alias_move=alias_move_publisher(kafka)) as opened:
        yield opened


async def predicted_version(kafka: KafkaSettings, job_id: str) -> int:
    pixels, _ = digits_samples(1)
    body = {"job_id": job_id, "model": "digits", "inputs": {"x": pixels.tolist()}}
    await publish(kafka, kafka.topics.predict, [json.dumps(body).encode()])
    result = (await read_results(kafka, {job_id}))[job_id]
    assert result["status"] == "ok", result["error"]
    return int(result["version"])


async def test_schedule_to_hot_swapped_prediction(kafka: KafkaSettings, registry: Registry) -> None:
    torch.set_num_threads(1)
    trainer = Trainer(kafka, registry.models, registry.runs, TrainerSettings())
    weak = RetrainJob(job_id="bootstrap", model="digits", params={"epochs": 1, "max_rows": 200})
    assert (await trainer.execute(weak)).version == 1  # production 1, a weak model

    serving = Worker(
        kafka,
        registry.models,
        registry.metrics,
        WorkerSettings(metrics_interval_s=0.5, alias_ttl_s=1.0),
    )
    stop = asyncio.Event()
    tasks = [asyncio.create_task(serving.run(stop)), asyncio.create_task(trainer.run(stop))]
    await asyncio.wait_for(asyncio.gather(serving.ready.wait(), trainer.ready.wait()), 30)
    try:
        assert await predicted_version(kafka, "before") == 1
        now = datetime.now(UTC)
        schedule = registry.runs.add_schedule(
            "digits", "* * * * *", params={"epochs": 5}, actor="t", now=now - timedelta(hours=1)
        )
        capabilities = await ensure_topics(kafka)
        producer = AIOKafkaProducer(**kafka.producer(capabilities))
        await producer.start()
        try:
            fired = await Scheduler(
                kafka,
                registry.runs,
                registry.metrics,
                SchedulerSettings(metric=None),
                clock=lambda: now,
            ).tick(producer)
        finally:
            await producer.stop()
        assert [j.job_id for j in fired] == [schedule.job_id(now.replace(second=0, microsecond=0))]

        answer = (await read_results(kafka, {fired[0].job_id}, timeout_s=60))[fired[0].job_id]
        assert (answer["status"], answer["version"], answer["promoted"]) == ("ok", 2, True)
        assert answer["reason"].startswith("beats production 1")
        assert registry.models.get_version("digits", 2).parent_version == 1

        for attempt in range(40):  # the worker swaps on the control event or its alias TTL
            if await predicted_version(kafka, f"after-{attempt}") == 2:
                break
            await asyncio.sleep(0.25)
        else:
            pytest.fail("the serving worker never answered with version 2")
    finally:
        stop.set()
        await asyncio.wait_for(asyncio.gather(*tasks), 60)
