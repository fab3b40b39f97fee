"""The scheduler (exactly once per due time across schedulers), the metric trigger,
and the retraining CLI verbs as a user runs them."""

from __future__ import annotations

import asyncio
from collections.abc import Callable
from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest
import torch
from aiokafka import AIOKafkaProducer

from maas.cli import main
from producer.contract.messages import decode_retrain
from producer.kafka import KafkaSettings, ensure_topics
from registry.drafts import Draft
from registry.entities import MetricWindow
from registry.registry import Registry
from registry.settings import RegistrySettings
from tests.kafka_helpers import read_all
from workers.training.scheduler import MetricTrigger, Scheduler, SchedulerSettings
from workers.training.trainer import Trainer, TrainerSettings

NOW = datetime(2026, 1, 5, 3, 0, 30, tzinfo=UTC)


@pytest.mark.postgres
async def test_three_schedulers_publish_exactly_one_job_per_due_time(
    kafka: KafkaSettings, pg_url: str, tmp_path: Path
) -> None:
    settings = RegistrySettings(database_url=pg_url, artifact_dir=tmp_path / "artifacts")
    registries = [Registry.open(settings, migrate=(i == 0)) for i in range(3)]
    capabilities = await ensure_topics(kafka)
    producers = [AIOKafkaProducer(**kafka.producer(capabilities)) for _ in registries]
    try:
        for producer in producers:
            await producer.start()
        earlier = NOW - timedelta(hours=1)
        every_minute = registries[0].runs.add_schedule(
            "digits", "* * * * *", params={"epochs": 5}, actor="t", now=earlier
        )
        daily = registries[0].runs.add_schedule(
            "digits", "0 3 * * *", dataset={"name": "digits"}, actor="t", now=earlier
        )
        registries[0].runs.add_schedule("digits", "0 4 * * *", actor="t", now=earlier)  # not due
        schedulers = [
            Scheduler(kafka, r.runs, r.metrics, SchedulerSettings(metric=None), clock=lambda: NOW)
            for r in registries
        ]
        for _ in range(3):  # every scheduler ticks three times, concurrently
            await asyncio.gather(*(s.tick(p) for s, p in zip(schedulers, producers, strict=True)))
    finally:
        for producer in producers:
            await producer.stop()
        for registry in registries:
            registry.close()

    # Every publish was acked: reading to the end offsets sees each job and any duplicate.
    records = await read_all(kafka, kafka.topics.retrain)
    assert len(records) == 2, [r.value for r in records]
    jobs = sorted((decode_retrain(r.value) for r in records), key=lambda j: j.job_id)
    assert [j.job_id for j in jobs] == sorted(
        [every_minute.job_id(NOW.replace(second=0)), daily.job_id(NOW.replace(second=0))]
    )
    assert all(j.trigger == "schedule" and j.model == "digits" for j in jobs)
    by_id = {j.job_id: j for j in jobs}
    assert by_id[every_minute.job_id(NOW.replace(second=0))].params == {"epochs": 5}
    assert by_id[daily.job_id(NOW.replace(second=0))].dataset is not None


def test_metric_trigger_fires_once_per_cooldown_when_errors_cross_the_limit(
    registry: Registry, make_onnx: object, kafka_free_settings: KafkaSettings
) -> None:
    registry.models.register("m", Draft(make_onnx(), promote=True), actor="t")  # type: ignore[operator]
    now = datetime.now(UTC)

    def window(errors: int) -> MetricWindow:
        start = now - timedelta(seconds=30)
        return MetricWindow("m", 1, "w", start, now, jobs=100, rows=100, errors={"X": errors})

    scheduler = Scheduler(kafka_free_settings, registry.runs, registry.metrics, SchedulerSettings())
    trigger = MetricTrigger(max_error_rate=0.05, min_jobs=20, window_s=300, cooldown_s=3600)
    registry.metrics.record_windows([window(1)])
    assert scheduler.metric_jobs(trigger, now) == []  # 1% errors: fine
    registry.metrics.record_windows([window(30)])
    fired = scheduler.metric_jobs(trigger, now)
    assert [(j.model, j.trigger) for j in fired] == [("m", "metric")]
    assert scheduler.metric_jobs(trigger, now) == []  # cooling down
    assert Scheduler(
        kafka_free_settings, registry.runs, registry.metrics, SchedulerSettings()
    ).metric_jobs(
        trigger, now + timedelta(seconds=1)
    )  # in memory only: a new scheduler process fires again


@pytest.fixture
def kafka_free_settings() -> KafkaSettings:
    return KafkaSettings(bootstrap_servers="127.0.0.1:1")


def test_schedule_add_list_remove_through_the_cli(
    tmp_path: Path, capsys: pytest.CaptureFixture[str], make_onnx: Callable[..., Path]
) -> None:
    db = ["--database-url", f"sqlite:///{tmp_path / 'r.db'}", "--artifact-dir", str(tmp_path)]
    assert main(["models", "register", "digits", str(make_onnx()), *db]) == 0  # schedules retrain
    add = ["schedule", "add", "digits", "--cron", "0 3 * * *", "--dataset", "digits"]
    assert main([*add, "--params", '{"epochs": 5}', "--promote", "never", *db]) == 0
    assert "schedule 1: retrain digits at '0 3 * * *'" in capsys.readouterr().out
    assert main(["schedule", "list", *db]) == 0
    listed = capsys.readouterr().out
    assert "0 3 * * *" in listed and '"epochs": 5' in listed and "never" in listed
    assert main(["schedule", "add", "digits", "--cron", "not cron", *db]) == 1
    assert "not a valid cron expression" in capsys.readouterr().err
    assert main(["schedule", "remove", "1", *db]) == 0
    assert main(["schedule", "remove", "1", *db]) == 1
    assert "no schedule has id 1" in capsys.readouterr().err


async def test_maas_retrain_waits_for_the_result_and_exits_by_its_status(
    kafka: KafkaSettings, registry: Registry, capsys: pytest.CaptureFixture[str]
) -> None:
    torch.set_num_threads(1)
    trainer = Trainer(kafka, registry.models, registry.runs, TrainerSettings())
    stop = asyncio.Event()
    task = asyncio.create_task(trainer.run(stop))
    broker = [
        "--bootstrap-servers",
        kafka.bootstrap_servers,
        "--topic-prefix",
        kafka.topics.prefix,
    ]
    try:
        await asyncio.wait_for(trainer.ready.wait(), 30)
        ok = ["retrain", "digits", "--params", '{"epochs": 2}', "--timeout", "60", *broker]
        assert await asyncio.to_thread(main, ok) == 0
        out = capsys.readouterr().out
        assert "digits version 1 registered, promoted to production" in out
        assert "accuracy=" in out
        bad = ["retrain", "digits", "--params", '{"epochs": 0}', "--timeout", "60", *broker]
        assert await asyncio.to_thread(main, bad) == 1
        assert "failed: INVALID_INPUT" in capsys.readouterr().out
    finally:
        stop.set()
        await asyncio.wait_for(task, 60)
    assert [v.version for v in registry.models.versions("digits")] == [1]
    assert registry.models.get_version("digits", 1).params["epochs"] == 2
