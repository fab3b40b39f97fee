"""``maas up``: the embedded stack — broker, registry, demo model, worker, trainer — in
one process."""

from __future__ import annotations

import asyncio
import contextlib
import signal
import tempfile
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import structlog
from rich.console import Console

from maas.broker import EmbeddedBroker, PortHeld, free_port
from maas.errors import BrokerError
from producer.aio import AsyncClient
from producer.contract.messages import Result
from producer.kafka import KafkaSettings, Topics
from registry.drafts import Draft
from registry.errors import RegistryError
from registry.models import ModelStore
from registry.registry import Registry
from registry.settings import RegistrySettings
from workers.batching.batcher import BatchConfig
from workers.serving.loop import Worker, WorkerSettings

log = structlog.get_logger(__name__)

DEMO_MODEL = "digits"
# The batching docs/serving.md recommends for the demo models: where the bare model did
# best on 2 CPU cores and on an H200, and a delay that suits a sub-millisecond model.
DEMO_BATCH = BatchConfig(max_batch_size=256, max_delay_ms=2.0)


@dataclass(frozen=True, slots=True)
class StackSettings:
    registry: RegistrySettings
    worker: WorkerSettings
    topic_prefix: str = "maas."
    port: int = 9092
    samples: int = 300
    serve: bool = True  # keep serving after the demo until Ctrl-C / SIGTERM
    gateway_port: int = 8080  # while serving: the OIP gateway on 127.0.0.1 (0: none)


@dataclass(frozen=True, slots=True)
class DemoReport:
    jobs: int
    accuracy: float
    p50_ms: float
    p99_ms: float
    seconds: float
    versions: tuple[int, ...]


def ensure_demo_model(models: ModelStore, console: Console) -> int:
    """Register and promote the digits demo model if it has no production version."""
    try:
        return models.resolve(DEMO_MODEL).version
    except RegistryError:
        pass
    from workers.recipes.demo import build_digits_model

    console.print("training the digits demo model (numpy, scikit-learn's bundled data)…")
    with tempfile.TemporaryDirectory() as workdir:
        trained = build_digits_model(Path(workdir))
        version = models.register(
            DEMO_MODEL,
            Draft(
                trained.artifact,
                reason="demo model",
                promote=True,
                dataset_hash=trained.dataset_hash,
                params=trained.params,
                metrics=trained.metrics,
            ),
            actor="maas up",
        )
    console.print(
        f"registered {DEMO_MODEL} version {version.version} "
        f"(held-out accuracy {trained.metrics['accuracy']:.3f}) and promoted it to production"
    )
    return version.version


async def score_demo(kafka: KafkaSettings, samples: int) -> DemoReport:
    """Score held-out digits through Kafka, one job per row, and measure what came back."""
    from workers.recipes.demo import digits_samples

    pixels, labels = digits_samples(samples)
    sent: dict[str, tuple[float, int]] = {}
    latencies: list[float] = []
    correct = 0
    versions: set[int] = set()
    started = time.perf_counter()
    async with AsyncClient(kafka, timeout_s=60) as client:
        jobs = []
        for i, row in enumerate(pixels):
            job_id = f"demo-{i}"
            sent[job_id] = (time.perf_counter(), int(labels[i]))
            jobs.append((job_id, {"x": [row.tolist()]}))
        async for reply in client.submit_many(jobs, DEMO_MODEL, max_in_flight=64):
            t0, label = sent[reply.job_id]
            latencies.append((time.perf_counter() - t0) * 1000)
            if isinstance(reply, Result) and reply.ok and reply.outputs is not None:
                correct += int(reply.outputs["label"][0] == label)
                if reply.version is not None:
                    versions.add(reply.version)
    elapsed = time.perf_counter() - started
    p50, p99 = np.percentile(latencies, [50, 99]) if latencies else (0.0, 0.0)
    return DemoReport(
        len(latencies),
        correct / max(len(latencies), 1),
        float(p50),
        float(p99),
        elapsed,
        tuple(sorted(versions)),
    )


def _start_broker(port: int, console: Console) -> EmbeddedBroker:
    broker = EmbeddedBroker(port=port)
    try:
        return broker.start()
    except PortHeld:  # README commands would talk to that one: say how to stop it
        raise
    except BrokerError as exc:  # the port is taken: take any free one and say so
        fallback = free_port()
        console.print(f"[yellow]{exc}[/yellow]; using port {fallback} instead")
        return EmbeddedBroker(port=fallback).start()


async def _serve_until_stopped(worker_task: asyncio.Task[None], stop: asyncio.Event) -> None:
    loop = asyncio.get_running_loop()
    for sig in (signal.SIGTERM, signal.SIGINT):
        loop.add_signal_handler(sig, stop.set)
    await stop.wait()
    await worker_task


async def run_stack(settings: StackSettings, console: Console | None = None) -> DemoReport | None:
    """Run the stack; on every way out (done, Ctrl-C, an error) the worker is stopped,
    the broker process ended and the registry closed, in that order."""
    console = console or Console(stderr=False)
    # The registry first: a database that is down fails before anything is started.
    registry = await asyncio.to_thread(Registry.open, settings.registry)
    try:
        broker = _start_broker(settings.port, console)
        try:
            return await _run(settings, registry, broker, console)
        finally:
            broker.stop()
            console.print("stopped")
    finally:
        registry.close()


async def _run(
    settings: StackSettings, registry: Registry, broker: EmbeddedBroker, console: Console
) -> DemoReport | None:
    kafka = KafkaSettings(
        bootstrap_servers=broker.bootstrap_servers,
        topics=Topics(settings.topic_prefix),
        embedded=True,
    )
    console.print(f"embedded broker on {broker.bootstrap_servers} (in memory)")
    await asyncio.to_thread(ensure_demo_model, registry.models, console)
    worker = Worker(
        kafka, registry.models, registry.metrics, settings.worker, tenants=registry.tenants
    )
    await worker.models.get(await worker.models.resolve(DEMO_MODEL, None, "production"))
    stop = asyncio.Event()
    worker_task = asyncio.create_task(worker.run(stop))
    trainer_task = asyncio.create_task(_train(kafka, registry, stop))
    try:
        await _started(worker, worker_task)
        report = await score_demo(kafka, settings.samples) if settings.samples else None
        if report is not None:
            _print_report(console, report)
        if settings.serve:
            gateway = await _start_gateway(kafka, registry, settings.gateway_port, stop, console)
            console.print(
                f"serving on {broker.bootstrap_servers}: publish PredictJobs to "
                f"{kafka.topics.predict}, read results from {kafka.topics.results}; a trainer "
                f"answers RetrainJobs on {kafka.topics.retrain} (maas retrain {DEMO_MODEL}). "
                "Ctrl-C stops."
            )
            await _serve_until_stopped(worker_task, stop)
            if gateway is not None:
                await gateway
        return report
    finally:
        stop.set()
        with contextlib.suppress(Exception):  # a failure of the worker was raised above
            await worker_task
        await asyncio.gather(trainer_task, return_exceptions=True)


async def _train(kafka: KafkaSettings, registry: Registry, stop: asyncio.Event) -> None:
    """The stack's trainer (``maas trainer``'s defaults: data in ./.maas/data), so that
    ``maas retrain`` is answered; a trainer that fails is logged, serving goes on."""
    from workers.training.trainer import Trainer, TrainerSettings

    try:
        trainer = Trainer(
            kafka, registry.models, registry.runs, TrainerSettings(), tenants=registry.tenants
        )
        await trainer.run(stop)
    except Exception:
        log.exception("the stack's trainer stopped; maas retrain is not answered")


async def _start_gateway(
    kafka: KafkaSettings, registry: Registry, port: int, stop: asyncio.Event, console: Console
) -> asyncio.Task[None] | None:
    """The OIP gateway on 127.0.0.1:``port`` (a free port if that one is taken), for the
    demo: anonymous calls allowed, acting for the default tenant; None for port 0."""
    if not port:
        return None
    try:
        from workers.gateway import GatewaySettings, Running, Stores
        from workers.gateway import run as run_gateway
    except ModuleNotFoundError as exc:  # installed without the gateway's extra
        console.print(
            f"[yellow]no OIP gateway: it needs the `gateway` extra ({exc.name} is not "
            "installed): pip install 'maas[gateway]'[/yellow]"
        )
        return None

    for attempt in (port, 0):
        settings = GatewaySettings(
            host="127.0.0.1", http_port=attempt, grpc_port=None, allow_anonymous=True
        )
        started: asyncio.Future[Running] = asyncio.get_running_loop().create_future()
        task = asyncio.create_task(
            run_gateway(kafka, Stores.of(registry), settings, stop, started=started.set_result)
        )
        waiters: list[asyncio.Future[Any]] = [started, task]
        await asyncio.wait(waiters, return_when=asyncio.FIRST_COMPLETED)
        if started.done():
            url = f"http://127.0.0.1:{started.result().http_port}"
            console.print(
                f"OIP gateway on {url}/v2 (anonymous calls allowed, as the default tenant; "
                f"this machine only): curl {url}/v2/models/{DEMO_MODEL}"
            )
            return task
        with contextlib.suppress(Exception):  # why: said below, and the demo goes on
            await task
        console.print(f"[yellow]the gateway could not listen on port {attempt}[/yellow]")
    return None


async def _started(worker: Worker, worker_task: asyncio.Task[None]) -> None:
    """Wait until the worker serves; if it fails to start, raise why."""
    ready = asyncio.ensure_future(worker.ready.wait())
    try:
        await asyncio.wait([ready, worker_task], return_when=asyncio.FIRST_COMPLETED)
    finally:
        ready.cancel()
    if worker_task.done():
        await worker_task


def _print_report(console: Console, report: DemoReport) -> None:
    console.print(
        f"scored {report.jobs} held-out digits through Kafka in {report.seconds:.2f}s: "
        f"accuracy {report.accuracy:.3f}, latency p50 {report.p50_ms:.1f} ms, "
        f"p99 {report.p99_ms:.1f} ms, version(s) {list(report.versions)}"
    )
