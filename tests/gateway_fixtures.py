"""A gateway in front of a real worker, each in a thread with its own event loop.

Triton's client and httpx block the calling thread, so neither the worker nor the
gateway can share the test's loop. ``gateway_stack`` (one per module, on the module's
broker) has its own topics and SQLite registry holding digits, tenant ``acme``
(granted digits) and tenant ``beta`` (granted nothing), a token for each, and a
gateway that lets anonymous callers act for the default tenant.
"""

from __future__ import annotations

import asyncio
import threading
import uuid
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import pytest

from producer.kafka import KafkaSettings, Topics, ensure_topics
from registry.drafts import Draft
from registry.registry import Registry
from registry.settings import RegistrySettings
from tests.kafka_helpers import Broker
from tests.thread_helpers import Thread, start_worker
from workers.gateway import GatewaySettings, Limits, Running, Stores, run


@dataclass
class GatewayStack:
    """Where the module's gateway listens, and what it serves."""

    kafka: KafkaSettings
    registry: RegistrySettings
    artifact: Path
    version: int
    http: str  # http://127.0.0.1:PORT
    http_port: int
    grpc_port: int
    tokens: dict[str, str]  # tenant -> bearer token
    gateway_id: str


def start_gateway(
    kafka: KafkaSettings, registry: RegistrySettings, settings: GatewaySettings
) -> tuple[Thread, Running]:
    """A gateway on ``kafka`` and ``registry`` in a thread; returns once it listens."""
    started = threading.Event()
    where: list[Running] = []

    async def main(stop: asyncio.Event) -> None:
        with Registry.open(registry) as opened:
            await run(
                kafka,
                Stores.of(opened),
                settings,
                stop,
                started=lambda running: (where.append(running), started.set()),
            )

    thread = Thread(main)
    while not started.wait(0.2):
        if thread.error is not None:
            raise RuntimeError("the gateway did not start") from thread.error
    return thread, where[0]


@pytest.fixture(scope="module")
def gateway_stack(
    broker: Broker, digits_artifact: Path, tmp_path_factory: pytest.TempPathFactory
) -> Iterator[GatewayStack]:
    kafka = KafkaSettings(
        bootstrap_servers=broker.bootstrap_servers, topics=Topics(f"g{uuid.uuid4().hex[:8]}.")
    )
    root = tmp_path_factory.mktemp("gateway")
    registry = RegistrySettings(
        database_url=f"sqlite:///{root / 'registry.db'}", artifact_dir=root / "artifacts"
    )
    with Registry.open(registry) as opened:
        version = opened.models.register(
            "digits", Draft(digits_artifact, promote=True), actor="test"
        ).version
        opened.tenants.add("acme", models=["digits"], actor="test")
        opened.tenants.add("beta", actor="test")
        tokens = {t: opened.tokens.create(t, actor="test")[1] for t in ("acme", "beta")}
    asyncio.run(ensure_topics(kafka, tenants=["acme", "beta"]))
    worker = start_worker(kafka, registry, tenants=True)
    settings = GatewaySettings(
        host="127.0.0.1",
        http_port=0,
        grpc_port=0,
        allow_anonymous=True,
        max_body_bytes=1 << 20,
        timeout_s=30.0,
        token_ttl_s=0.5,
        limits=Limits(concurrency=64),
    )
    gateway, running = start_gateway(kafka, registry, settings)
    yield GatewayStack(
        kafka=kafka,
        registry=registry,
        artifact=digits_artifact,
        version=version,
        http=f"http://127.0.0.1:{running.http_port}",
        http_port=running.http_port,
        grpc_port=running.grpc_port,
        tokens=tokens,
        gateway_id=running.gateway_id,
    )
    gateway.stop()
    worker.stop()
