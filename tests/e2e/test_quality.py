"""Are the answers right? End to end on each broker, as the issue's "done when" says.

A worker serves digits with every answer captured; 2,000 jobs are answered; feedback
comes for all of them through the SDK, a known 10 % of it wrong. ``maas monitor`` runs
as a process of its own and is SIGKILLed half way through the feedback, then started
again: the registry's labelled rows and accuracy for the version equal the figures
computed here from the same Results and labels, no row lost and none counted twice.
A worse version promoted by force is rolled back on labelled accuracy within a minute
of having enough labels.
"""

from __future__ import annotations

import asyncio
import os
import signal
import subprocess
import sys
import time
from collections.abc import AsyncIterator
from pathlib import Path

import pytest

from producer.aio import AsyncClient
from producer.kafka import KafkaSettings, ensure_topics
from registry.drafts import Draft
from registry.entities import ModelVersion
from registry.labelled import CapturePolicy
from registry.registry import Registry
from registry.settings import RegistrySettings
from tests.kafka_helpers import job, publish, read_results
from tests.registry_fixtures import build_onnx
from workers.recipes.demo import digits_samples
from workers.serving.loop import Worker, WorkerSettings

pytestmark = [pytest.mark.both_brokers, pytest.mark.slow, pytest.mark.timeout(600)]

JOBS = 2_000


@pytest.fixture
async def worker(
    kafka: KafkaSettings, registry: Registry, digits: ModelVersion
) -> AsyncIterator[Worker]:
    await ensure_topics(kafka)
    registry.quality.set_policy("digits", CapturePolicy(rate=1.0, inputs="drop"), actor="t")
    serving = Worker(kafka, registry.models, registry.metrics, WorkerSettings())
    serving.capture.follow(registry.quality)
    stop = asyncio.Event()
    task = asyncio.create_task(serving.run(stop))
    await asyncio.wait_for(serving.ready.wait(), 60)
    yield serving
    stop.set()
    await asyncio.wait_for(task, 60)


def _monitor(
    kafka: KafkaSettings, settings: RegistrySettings, log: Path
) -> subprocess.Popen[bytes]:
    env = {
        **os.environ,
        "MAAS_BOOTSTRAP_SERVERS": kafka.bootstrap_servers,
        "MAAS_TOPIC_PREFIX": kafka.topics.prefix,
        "MAAS_DATABASE_URL": settings.database_url,
        "MAAS_ARTIFACT_DIR": str(settings.artifact_dir),
    }
    with log.open("ab") as out:
        return subprocess.Popen(
            [sys.executable, "-m", "maas.cli", "monitor"], stdout=out, stderr=out, env=env
        )


async def _rows(registry: Registry, at_least: int, timeout_s: float = 120.0) -> int:
    deadline = time.monotonic() + timeout_s
    while True:
        rows = sum(w.rows for w in registry.quality.windows("digits"))
        if rows >= at_least or time.monotonic() > deadline:
            return rows
        await asyncio.sleep(0.5)


async def test_registry_accuracy_equals_the_independent_figure_through_a_sigkill(
    kafka: KafkaSettings,
    worker: Worker,
    registry: Registry,
    registry_settings: RegistrySettings,
    tmp_path: Path,
) -> None:
    pixels, truth = digits_samples(JOBS)
    ids = [f"q-{i}" for i in range(JOBS)]
    await publish(
        kafka,
        kafka.topics.predict,
        [job(i, {"x": [p.tolist()]}) for i, p in zip(ids, pixels, strict=True)],
    )
    results = await read_results(kafka, set(ids), timeout_s=240)
    predicted = [results[i]["outputs"]["label"][0] for i in ids]
    # A known 10 %: every tenth label is wrong on purpose.
    labels = [int((t + 1) % 10) if n % 10 == 0 else int(t) for n, t in enumerate(truth)]
    expected_correct = sum(p == lab for p, lab in zip(predicted, labels, strict=True))

    log = tmp_path / "monitor.log"
    monitor = _monitor(kafka, registry_settings, log)
    try:
        async with AsyncClient(kafka) as client:
            half = JOBS // 2
            await asyncio.gather(
                *(
                    client.feedback(i, [lab])
                    for i, lab in zip(ids[:half], labels[:half], strict=True)
                )
            )
            counted = await _rows(registry, 1)
            assert counted >= 1, log.read_text()
            monitor.send_signal(signal.SIGKILL)  # mid-stream: some rows written, maybe not all
            monitor.wait(30)
            await asyncio.gather(
                *(
                    client.feedback(i, [lab])
                    for i, lab in zip(ids[half:], labels[half:], strict=True)
                )
            )
        monitor = _monitor(kafka, registry_settings, log)
        rows = await _rows(registry, JOBS)
        await asyncio.sleep(3)  # room for a row counted twice to show
    finally:
        monitor.terminate()
        monitor.wait(30)

    windows = registry.quality.windows("digits", version=1)
    assert sum(w.rows for w in windows) == rows == JOBS, log.read_text()[-3000:]
    assert sum(w.correct for w in windows) == expected_correct
    accuracy = sum(w.correct for w in windows) / JOBS
    assert accuracy == pytest.approx(expected_correct / JOBS)
    assert accuracy < 0.93  # the wrong tenth shows


async def _serve_and_label(
    kafka: KafkaSettings, client: AsyncClient, tag: str, n: int, version: int
) -> None:
    """``n`` digits jobs answered by ``version`` (resent until it is the one serving),
    then their true labels as feedback."""
    pixels, truth = digits_samples(n, seed=version)
    for attempt in range(30):
        ids = [f"{tag}-{attempt}-{i}" for i in range(n)]
        await publish(
            kafka,
            kafka.topics.predict,
            [job(i, {"x": [p.tolist()]}) for i, p in zip(ids, pixels, strict=True)],
        )
        results = await read_results(kafka, set(ids), timeout_s=120)
        if all(results[i]["version"] == version for i in ids):
            break
        await asyncio.sleep(1)  # the worker has not swapped yet
    else:
        raise AssertionError(f"version {version} never served")
    await asyncio.gather(*(client.feedback(i, [int(t)]) for i, t in zip(ids, truth, strict=True)))


async def test_a_worse_version_promoted_by_force_is_rolled_back_on_labelled_accuracy(
    kafka: KafkaSettings,
    worker: Worker,
    registry: Registry,
    registry_settings: RegistrySettings,
    tmp_path: Path,
) -> None:
    log = tmp_path / "monitor.log"
    monitor = _monitor(kafka, registry_settings, log)
    try:
        async with AsyncClient(kafka) as client:
            await _serve_and_label(kafka, client, "good", 250, version=1)
            worse = build_onnx(tmp_path / "worse" / "model.onnx", features=64, classes=10)
            v2 = registry.models.register("digits", Draft(worse), actor="test")
            registry.models.promote("digits", v2.version, actor="test", force=True)
            await _serve_and_label(kafka, client, "worse", 250, version=v2.version)
            labelled_at = time.monotonic()
            deadline = labelled_at + 60  # within a minute of having enough labels
            while time.monotonic() < deadline:
                last = registry.models.alias_history("digits")[-1]
                if last.kind == "rollback":
                    break
                await asyncio.sleep(0.5)
    finally:
        monitor.terminate()
        monitor.wait(30)
    assert last.kind == "rollback", log.read_text()[-3000:]
    assert (last.version, last.previous_version, last.automatic) == (1, v2.version, True)
    assert "labelled accuracy" in last.reason
    assert "two-proportion test" in last.reason
