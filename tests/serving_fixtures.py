"""A real worker serving the digits demo model, in a thread with its own event loop
(:func:`tests.thread_helpers.start_worker`), and the fixtures around it.

tests/conftest.py loads these fixtures for every test module; ``digits`` is the model
registered in a test's own ``registry``.
"""

from __future__ import annotations

import asyncio
import uuid
from collections.abc import AsyncIterator, Iterator
from dataclasses import dataclass
from pathlib import Path

import pytest

from producer.kafka import KafkaSettings, Topics
from registry.drafts import Draft
from registry.entities import ModelVersion
from registry.registry import Registry
from registry.settings import RegistrySettings
from tests.fault_helpers import Workers
from tests.kafka_helpers import Broker
from tests.thread_helpers import start_worker
from workers.recipes.demo import build_digits_model
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
    worker = start_worker(kafka, registry)
    yield ServedDigits(kafka=kafka, artifact=digits_artifact, version=version)
    worker.stop()
