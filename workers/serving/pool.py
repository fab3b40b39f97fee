"""Running workers: one process, or N processes in one consumer group."""

from __future__ import annotations

import asyncio
import multiprocessing
import signal
from dataclasses import dataclass
from functools import partial

import structlog

from producer.control import alias_move_publisher
from producer.kafka import KafkaSettings
from registry.registry import Registry
from registry.settings import RegistrySettings
from workers import defaults, logs
from workers.health import served
from workers.serving.loop import Worker, WorkerSettings
from workers.serving.probes import worker_probe

log = structlog.get_logger(__name__)


@dataclass(frozen=True, slots=True)
class PoolSettings:
    kafka: KafkaSettings
    registry: RegistrySettings
    worker: WorkerSettings
    processes: int = defaults.PROCESSES
    metrics_port: int = 0  # /metrics, /healthz, /readyz here (process i of a pool on +i); 0: off
    metrics_host: str = "0.0.0.0"  # the address they are served on
    log_format: str = "auto"
    log_level: str = "info"


async def serve_async(
    settings: PoolSettings, stop: asyncio.Event | None = None, *, index: int = 0
) -> None:
    """Serve in this event loop until ``stop`` is set (or SIGTERM/SIGINT when not given).

    ``index``: this process's place in the pool (its metrics port is offset by it).
    With a metrics port, /metrics, /healthz and /readyz are served while it runs.
    """
    if stop is None:
        stop = asyncio.Event()
        loop = asyncio.get_running_loop()
        for sig in (signal.SIGTERM, signal.SIGINT):
            loop.add_signal_handler(sig, stop.set)
    registry = await asyncio.to_thread(
        partial(
            Registry.open,
            settings.registry,
            on_alias_move=alias_move_publisher(settings.kafka, settings.registry.identity),
        )
    )
    port = settings.metrics_port + index if settings.metrics_port else 0
    try:
        worker = Worker(
            settings.kafka,
            registry.models,
            registry.metrics,
            settings.worker,
            slot=index,
            tenants=registry.tenants,
        )
        worker.capture.follow(registry.quality)
        async with served(port, worker_probe(worker), host=settings.metrics_host):
            await worker.run(stop)
    finally:
        registry.close()


def _child(settings: PoolSettings, index: int) -> None:
    logs.configure(settings.log_format, settings.log_level)
    asyncio.run(serve_async(settings, index=index))


def serve(settings: PoolSettings) -> int:
    """Run the pool in the foreground; returns an exit code once every process stopped."""
    if settings.processes <= 1:
        asyncio.run(serve_async(settings))
        return 0
    context = multiprocessing.get_context("spawn")
    children = [
        context.Process(target=_child, args=(settings, i), name=f"maas-worker-{i}")
        for i in range(settings.processes)
    ]
    for child in children:
        child.start()

    def forward(_signum: int, _frame: object) -> None:
        for child in children:
            if child.is_alive():
                child.terminate()  # SIGTERM: the child stops polling, drains and commits

    signal.signal(signal.SIGTERM, forward)
    log.info("worker pool started", processes=settings.processes)
    try:
        for child in children:
            child.join()
    except KeyboardInterrupt:  # Ctrl-C reaches the children too; wait for their drain
        for child in children:
            child.join()
    failed = [c.name for c in children if c.exitcode != 0]
    if failed:
        log.error("worker processes failed", processes=failed)
    return 1 if failed else 0
