"""A client's mistakes never move a model (issue 28 item 2).

Right after a promotion, a flood of invalid jobs (wrong input names, rows too narrow)
reaches the worker beside a few valid ones. Before the fix the INVALID_INPUT answers
made the new version's error rate 80 %, and the worker's rollback watcher rolled it
back; the scheduler's metric trigger would have published a retrain. Now they are
counted apart (the windows' ``client_errors``, ``maas_job_client_errors``) and nothing
is rolled back or fired.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import time
from collections.abc import Callable, Iterator
from datetime import UTC, datetime
from pathlib import Path

import pytest
from prometheus_client import REGISTRY

from maas.cli import main
from producer.control import alias_move_publisher
from producer.kafka import KafkaSettings
from registry.drafts import Draft
from registry.policy import RollbackPolicy, check_rollback
from registry.registry import Registry
from registry.settings import RegistrySettings
from tests.kafka_helpers import publish, read_results
from workers.recipes.demo import build_digits_model, digits_samples
from workers.serving.loop import Worker, WorkerSettings
from workers.serving.rollback import RollbackSettings
from workers.training.scheduler import MetricTrigger, Scheduler, SchedulerSettings

pytestmark = [
    pytest.mark.both_brokers,
    # kafka-python (the control-event publisher) reads a resource through a deprecated API.
    pytest.mark.filterwarnings("ignore:open_text is deprecated:DeprecationWarning"),
]

POLICY = RollbackPolicy(min_jobs=20, min_baseline_jobs=20)
TRIGGER = MetricTrigger(max_error_rate=0.05, min_jobs=20, window_s=600, cooldown_s=3600)


@pytest.fixture(scope="module")
def artifact(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return build_digits_model(tmp_path_factory.mktemp("digits")).artifact


@pytest.fixture
def settings(tmp_path: Path) -> RegistrySettings:
    return RegistrySettings(
        database_url=f"sqlite:///{tmp_path / 'registry.db'}", artifact_dir=tmp_path / "artifacts"
    )


@pytest.fixture
def registry(settings: RegistrySettings, kafka: KafkaSettings) -> Iterator[Registry]:
    with Registry.open(settings, on_alias_move=alias_move_publisher(kafka)) as opened:
        yield opened


def job(job_id: str, inputs: dict[str, object]) -> bytes:
    return json.dumps({"job_id": job_id, "model": "digits", "inputs": inputs}).encode()


async def wait_for(predicate: Callable[[], bool], timeout_s: float, what: str) -> None:
    deadline = time.monotonic() + timeout_s
    while not await asyncio.to_thread(predicate):
        if time.monotonic() > deadline:
            raise AssertionError(f"timed out waiting for {what}")
        await asyncio.sleep(0.2)


async def served_by(kafka: KafkaSettings, version: int, row: list[float]) -> None:
    """Send valid probes until one is answered by ``version`` (the control event swapped
    the worker to it)."""
    for attempt in range(100):
        await publish(kafka, kafka.topics.predict, [job(f"probe-{attempt}", {"x": [row]})])
        answer = await read_results(kafka, {f"probe-{attempt}"}, timeout_s=60)
        if answer[f"probe-{attempt}"]["version"] == version:
            return
        await asyncio.sleep(0.2)
    raise AssertionError(f"version {version} never served")


def client_errors(registry: Registry, version: int) -> int:
    return sum(w.n_client_errors for w in registry.metrics.windows("digits", version))


async def test_a_flood_of_invalid_jobs_after_a_promotion_moves_nothing(
    kafka: KafkaSettings,
    registry: Registry,
    settings: RegistrySettings,
    artifact: Path,
    capsys: pytest.CaptureFixture[str],
) -> None:
    registry.models.register("digits", Draft(artifact, promote=True), actor="test")
    rows = [r.tolist() for r in digits_samples(20)[0]]
    worker_settings = WorkerSettings(
        metrics_interval_s=0.5, rollback=RollbackSettings(policy=POLICY)
    )
    worker = Worker(kafka, registry.models, registry.metrics, worker_settings)
    stop = asyncio.Event()
    serving = asyncio.create_task(worker.run(stop))
    try:
        await asyncio.wait_for(worker.ready.wait(), 60)
        baseline = [job(f"v1-{i}", {"x": [row]}) for i, row in enumerate(rows)]
        await publish(kafka, kafka.topics.predict, baseline)
        await read_results(kafka, {f"v1-{i}" for i in range(20)}, timeout_s=60)
        promoted = registry.models.register("digits", Draft(artifact, promote=True), actor="t")
        await served_by(kafka, promoted.version, rows[0])  # the worker swapped; now the flood
        wrong_name = [job(f"name-{i}", {"pixels": [rows[0]]}) for i in range(60)]
        too_narrow = [job(f"narrow-{i}", {"x": [[1.0, 2.0]]}) for i in range(60)]
        valid = [job(f"v2-{i}", {"x": [row]}) for i, row in enumerate(rows)]
        await publish(kafka, kafka.topics.predict, [*wrong_name, *too_narrow, *valid])
        ids = {f"name-{i}" for i in range(60)} | {f"narrow-{i}" for i in range(60)}
        results = await read_results(kafka, ids | {f"v2-{i}" for i in range(20)}, timeout_s=60)
        await wait_for(
            lambda: client_errors(registry, promoted.version) >= 120, 30, "the flood's windows"
        )
    finally:
        stop.set()
        with contextlib.suppress(Exception):
            await asyncio.wait_for(serving, 60)

    assert {results[i]["error"]["code"] for i in ids} == {"INVALID_INPUT"}
    windows = registry.metrics.windows("digits", promoted.version)
    assert sum(w.jobs for w in windows) >= 140  # enough to judge: the policy did look
    assert sum(w.n_errors for w in windows) == 0
    jobs, mistakes = sum(w.jobs for w in windows), sum(w.n_client_errors for w in windows)
    with capsys.disabled():
        print(
            f"\nversion {promoted.version} after the flood: {jobs} jobs, 0 model errors, "
            f"{mistakes} client mistakes ({mistakes / jobs:.0%} of jobs): 0 rollbacks, 0 retrains"
        )
    assert registry.models.rollbacks("digits") == []
    assert registry.models.resolve("digits").version == promoted.version
    assert check_rollback(registry.models, registry.metrics, "digits", policy=POLICY) is None
    scheduler = Scheduler(kafka, registry.runs, registry.metrics, SchedulerSettings())
    assert scheduler.metric_jobs(TRIGGER, datetime.now(UTC)) == []

    labels = {"model": "digits", "version": str(promoted.version), "code": "INVALID_INPUT"}
    assert (REGISTRY.get_sample_value("maas_job_client_errors_total", labels) or 0) >= 120
    assert REGISTRY.get_sample_value("maas_job_errors_total", labels) is None

    db = ["--database-url", settings.database_url, "--artifact-dir", str(settings.artifact_dir)]
    assert main(["models", "stats", "digits", "--version", str(promoted.version), *db]) == 0
    out = capsys.readouterr().out
    assert "error rate 0.00%" in out and "client mistakes: 1" in out
    assert "INVALID_INPUT=" in out
