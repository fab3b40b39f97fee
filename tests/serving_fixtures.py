"""A real worker serving the digits demo model, in a thread with its own event loop.

Sync tests (the kafka-python client, the CLI) block the calling thread, so the worker
cannot share the test's event loop; in a thread it also lives for a whole module,
which saves a consumer-group join per test. tests/conftest.py loads these fixtures for
every test module; ``digits`` is the model registered in a test's own ``registry``.
"""

from __future__ import annotations

import asyncio
import threading
import uuid
from collections.abc import AsyncIterator, Iterator
from dataclasses import dataclass, field
from pathlib import Path

import pytest

from producer.kafka import KafkaSettings, Topics
from registry.drafts import Draft
from registry.entities import ModelVersion
from registry.registry import Registry
from registry.settings import RegistrySettings
from tests.fault_helpers import Workers
from tests.kafka_helpers import Broker
from workers.recipes.demo import build_digits_model
from workers.serving.loop import Worker, WorkerSettings
from workers.training.trainer import Trainer, TrainerSettings


@dataclass
class ServedDigits:
    """Where the module's worker listens and what it serves."""

    kafka: KafkaSettings
    artifact: Path
    version: int


@pytest.fixture(scope="session")
def digits_artifact(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return build_digits_model(tmp_path_factory.mktemp("digits-served")).artifact


@pytest.fixture
def digits_registry(tmp_path: Path, digits_artifact: Path) -> RegistrySettings:
    """A SQLite registry of the test's own holding digits, promoted: for ``maas worker``
    processes (:class:`~tests.fault_helpers.Workers`) to open."""
    settings = RegistrySettings(
        database_url=f"sqlite:///{tmp_path / 'registry.db'}", artifact_dir=tmp_path / "artifacts"
    )
    with Registry.open(settings) as opened:
        opened.models.register("digits", Draft(digits_artifact, promote=True), actor="test")
    return settings


@pytest.fixture
def workers(
    kafka: KafkaSettings, digits_registry: RegistrySettings, tmp_path: Path
) -> Iterator[Workers]:
    """``maas worker`` processes on the test's ``kafka`` and ``digits_registry``, killed
    at the end."""
    pool = Workers(kafka, digits_registry, tmp_path)
    yield pool
    pool.close()


@pytest.fixture
async def trainer(kafka: KafkaSettings, registry: Registry) -> AsyncIterator[Trainer]:
    """A trainer on the test's ``kafka`` and ``registry``, in the test's event loop,
    started (partitions assigned) and stopped at the end."""
    running = Trainer(kafka, registry.models, registry.runs, TrainerSettings())
    stop = asyncio.Event()
    task = asyncio.create_task(running.run(stop))
    await asyncio.wait_for(running.ready.wait(), 30)
    yield running
    stop.set()
    await asyncio.wait_for(task, 60)


@pytest.fixture
def digits(registry: Registry, digits_artifact: Path) -> ModelVersion:
    """The digits model registered and promoted in the test's ``registry`` (the SQLite one
    of ``tests.registry_fixtures``, or the module's own)."""
    return registry.models.register("digits", Draft(digits_artifact, promote=True), actor="test")


@dataclass
class _Box:
    ready: threading.Event = field(default_factory=threading.Event)
    loop: asyncio.AbstractEventLoop | None = None
    stop: asyncio.Event | None = None
    error: BaseException | None = None


def _serve(kafka: KafkaSettings, registry: RegistrySettings, box: _Box) -> None:
    async def main() -> None:
        with Registry.open(registry) as opened:
            settings = WorkerSettings(metrics_interval_s=5.0)
            worker = Worker(kafka, opened.models, opened.metrics, settings)
            box.loop, box.stop = asyncio.get_running_loop(), asyncio.Event()
            task = asyncio.create_task(worker.run(box.stop))
            await asyncio.wait_for(worker.ready.wait(), 30)
            box.ready.set()
            await task

    try:
        asyncio.run(main())
    except BaseException as exc:
        box.error = exc
        box.ready.set()


@pytest.fixture(scope="module")
def served_digits(
    broker: Broker, digits_artifact: Path, tmp_path_factory: pytest.TempPathFactory
) -> Iterator[ServedDigits]:
    """A worker for this module's tests, on the module's broker, with topics of its own."""
    kafka = KafkaSettings(
        bootstrap_servers=broker.bootstrap_servers, topics=Topics(f"s{uuid.uuid4().hex[:8]}.")
    )
    root = tmp_path_factory.mktemp("served")
    registry = RegistrySettings(
        database_url=f"sqlite:///{root / 'registry.db'}", artifact_dir=root / "artifacts"
    )
    with Registry.open(registry) as opened:
        served = opened.models.register(
            "digits", Draft(digits_artifact, promote=True), actor="test"
        )
        version = served.version
    box = _Box()
    thread = threading.Thread(target=_serve, args=(kafka, registry, box), daemon=True)
    thread.start()
    box.ready.wait(60)
    if box.error is not None or box.loop is None or box.stop is None:
        raise RuntimeError("the worker did not start") from box.error
    yield ServedDigits(kafka=kafka, artifact=digits_artifact, version=version)
    box.loop.call_soon_threadsafe(box.stop.set)
    thread.join(60)
    assert not thread.is_alive(), "the worker did not stop within 60 s"
