"""How each path is measured: the bare runtime, a backlog drained, latency at a fixed rate.

Every path but the bare runtime runs as a process of its own (``maas worker`` or a
baseline of :mod:`bench.baselines`) against the broker at ``bootstrap``, on topics of
its own; this process publishes the jobs and reads the results.
"""

from __future__ import annotations

import asyncio
import json
import os
import subprocess
import sys
import time
import uuid
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import msgspec
import numpy as np
from aiokafka import AIOKafkaConsumer, AIOKafkaProducer

from bench.cpu import cpu_seconds
from bench.workloads import Workload
from maas.broker import terminate
from producer.kafka import KafkaSettings, Topics, detect_capabilities, ensure_topics
from registry.models import ModelStore
from registry.settings import RegistrySettings
from workers.runtime.loader import RuntimeSettings, load_runtime


class _Seen(msgspec.Struct):
    """What the benchmark reads of a Result; msgspec skips the outputs without building them."""

    job_id: str
    batch_size: int = 0
    timing: dict[str, float] = {}


_read_result = msgspec.json.Decoder(_Seen).decode


def job_key(i: int, kind: str = "b") -> str:
    """Job ids as long as the SDK's (``uuid4().hex``): the results' partition is the
    murmur2 hash of the id, which aiokafka computes in Python, byte by byte."""
    return f"{kind}{i:031x}"


@dataclass(frozen=True)
class Setup:
    """What every measured path shares: the broker, the registry and the model."""

    bootstrap: str
    registry: RegistrySettings
    model: str
    # The checkout whose ``maas worker`` serves (PYTHONPATH and working directory), to
    # measure another version of maas in the same run; None: this one.
    worker_tree: Path | None = None


@dataclass
class Measured:
    rows_per_s: float
    p50_ms: float | None = None
    p99_ms: float | None = None
    mean_batch: float | None = None
    extra: dict[str, Any] = field(default_factory=dict)


def measure_raw(
    models: ModelStore, model: str, workload: Workload, batch_size: int | None = None
) -> Measured:
    """The bare runtime (the one maas uses) at its best batch size, in rows/s.

    The sweep picks the size (unless ``batch_size`` is given); a second, longer run at
    that size gives the figure, so that the limit is not the luckiest of seven samples.
    """
    version = models.resolve(model)
    runtime = load_runtime(version.path, version.format, version.signature, RuntimeSettings())

    def rate(size: int, seconds: float) -> float:
        rows = [workload.jobs[i % len(workload.jobs)] for i in range(size)]
        batch = runtime.prepare({k: [v for r in rows for v in r[k]] for k in rows[0]})
        runtime.infer(batch)  # warm-up
        done, started = 0, time.perf_counter()
        while time.perf_counter() - started < seconds:
            runtime.infer(batch)
            done += size
        return done / (time.perf_counter() - started)

    try:
        sizes = (1, 8, 16, 32, 64, 128, 256)
        best = batch_size or max(sizes, key=lambda size: rate(size, 1.0))
        return Measured(rate(best, 3.0), extra={"batch_size": best, "provider": runtime.provider})
    finally:
        runtime.close()


async def publish_backlog(
    kafka: KafkaSettings, jobs: Sequence[dict[str, Any]], model: str
) -> list[str]:
    producer = AIOKafkaProducer(**kafka.producer(await detect_capabilities(kafka), linger_ms=5))
    await producer.start()
    ids = []
    try:
        sends = []
        for i, inputs in enumerate(jobs):
            job_id = job_key(i)
            ids.append(job_id)
            body = json.dumps({"job_id": job_id, "model": model, "inputs": inputs}).encode()
            sends.append(await producer.send(kafka.topics.predict, body, key=job_id.encode()))
        await asyncio.gather(*sends)
    finally:
        await producer.stop()
    return ids


async def collect(
    kafka: KafkaSettings,
    expected: int,
    timeout_s: float,
    on_record: Callable[[_Seen, float], None] | None = None,
    fetch_wait_ms: int | None = None,
) -> Measured:
    """Read results until ``expected`` arrive (or time out); rows/s from first to last.

    ``fetch_wait_ms``: how long the broker may hold an empty fetch (default: the
    settings'). Throughput runs wait long, so that the reader, which shares the cores
    with what it measures, does not spin on empty fetches between result batches.
    """
    options = {"max_poll_records": 5000}
    if fetch_wait_ms is not None:
        options["fetch_max_wait_ms"] = fetch_wait_ms
    capabilities = await detect_capabilities(kafka)
    consumer = AIOKafkaConsumer(
        kafka.topics.results, **kafka.consumer(capabilities, None, **options)
    )
    await consumer.start()
    seen: set[str] = set()
    batches: list[int] = []
    first = last = 0.0
    before_first = 0  # results that arrived with the first poll, before ``first``
    deadline = time.monotonic() + timeout_s
    try:
        while len(seen) < expected and time.monotonic() < deadline:
            polled = await consumer.getmany(timeout_ms=200)
            if not polled:
                continue
            now = time.perf_counter()
            if not first:
                first, before_first = now, sum(map(len, polled.values()))
            last = now
            for records in polled.values():
                for record in records:
                    body = _read_result(record.value or b"{}")
                    seen.add(body.job_id)
                    if body.batch_size:
                        batches.append(body.batch_size)
                    if on_record:
                        on_record(body, now)
    finally:
        await consumer.stop()
    rate = (len(seen) - before_first) / (last - first) if last > first else 0.0
    return Measured(
        rate,
        mean_batch=float(np.mean(batches)) if batches else None,
        extra={"answered": len(seen), "expected": expected, "measured": len(seen) - before_first},
    )


def start(
    kind: str,
    kafka: KafkaSettings,
    setup: Setup,
    workload: Workload,
    flags: Sequence[str] = (),
    runner: Sequence[str] = (),
) -> subprocess.Popen[bytes]:
    """The process that serves: ``kind`` maas (``flags`` added to ``maas worker``'s,
    ``runner`` options to Python's, e.g. ``-m cProfile``), naive or relay."""
    common = ["--bootstrap-servers", kafka.bootstrap_servers]
    registry, model = setup.registry, setup.model
    store = ["--database-url", registry.database_url, "--artifact-dir", str(registry.artifact_dir)]
    if kind == "maas":
        cmd = [
            sys.executable, *runner, "-m", "maas.cli", "--log-level", "warning", "worker", *common,
            "--topic-prefix", kafka.topics.prefix, *store, "--model", model,
            "--max-batch-size", str(workload.max_batch_size),
            "--max-delay-ms", str(workload.max_delay_ms),
            "--processes", str(workload.processes), *flags,
            # A run measures one version: no automatic rollback may switch it mid-run.
            "--no-auto-rollback",
            # A consumer group per run, so that none meets the group state of the one
            # before (a one-process run right after two pools once answered nothing).
            "--group-id", f"bench-{kafka.topics.prefix}",
        ]  # fmt: skip
    else:
        cmd = [sys.executable, "-m", "bench.baselines", *common, "--prefix", kafka.topics.prefix]
        if kind == "naive":
            cmd += ["--model", model, *store]
    env, tree = os.environ.copy(), setup.worker_tree if kind == "maas" else None
    if tree is not None:
        env["PYTHONPATH"] = str(tree)
    return subprocess.Popen(cmd, env=env, cwd=tree)


async def fresh_topics(bootstrap: str, stem: str) -> KafkaSettings:
    """Settings with topics of their own, created; what the broker can do is asked."""
    kafka = KafkaSettings(bootstrap, Topics(f"{stem}{uuid.uuid4().hex[:6]}."))
    await ensure_topics(kafka)
    return kafka


async def drain(
    kind: str,
    setup: Setup,
    workload: Workload,
    flags: Sequence[str] = (),
    runner: Sequence[str] = (),
) -> Measured:
    """Rows/s of ``kind`` (see :func:`start`) draining a backlog, and the CPU it spent per job meanwhile
    (``extra["cpu_us_per_job"]``, its processes' CPU from the first answer to the last)."""
    kafka = await fresh_topics(setup.bootstrap, "bench")
    n = workload.naive_jobs if kind == "naive" else workload.saturation_jobs
    if kind == "relay":  # so fast that a backlog of a model's size drains in a poll or two
        n = max(n, 40000)
    jobs = [workload.jobs[i % len(workload.jobs)] for i in range(n)]
    await publish_backlog(kafka, jobs, setup.model)
    process = start(kind, kafka, setup, workload, flags, runner)
    cpu_at_first: list[float] = []

    def on_record(_: _Seen, __: float) -> None:
        if not cpu_at_first:
            cpu_at_first.append(cpu_seconds(process.pid))

    try:
        # A 100 ms fetch wait moves the first and last arrival by at most that much in
        # a run of many seconds; the 5 ms one costs the measured run CPU.
        measured = await collect(kafka, n, timeout_s=120, on_record=on_record, fetch_wait_ms=100)
        spent = cpu_seconds(process.pid) - cpu_at_first[0] if cpu_at_first else 0.0
    finally:
        terminate(process, timeout_s=30)
    if measured.extra["measured"]:
        measured.extra["cpu_us_per_job"] = 1e6 * spent / measured.extra["measured"]
    return measured


async def latency_at_load(
    kind: str, setup: Setup, workload: Workload, rate: float, seconds: float = 8.0
) -> Measured:
    """p50/p99 from publish to result at a fixed arrival rate (``kind`` maas or relay).

    For maas, ``extra`` also holds the p50/p99 of the Results' own ``timing.total_ms``:
    the time a job spent in the worker, from poll to answer, without the broker hops.
    """
    kafka = await fresh_topics(setup.bootstrap, "lat")
    model = setup.model
    process = start(kind, kafka, setup, workload)
    sent: dict[str, float] = {}
    latencies: list[float] = []
    in_worker: list[float] = []

    def on_record(body: _Seen, now: float) -> None:
        if body.job_id in sent:
            latencies.append((now - sent[body.job_id]) * 1000)
            if "total_ms" in body.timing:
                in_worker.append(body.timing["total_ms"])

    try:
        await publish_backlog(kafka, workload.jobs[:1], model)  # warm-up: group join, model load
        await collect(kafka, 1, timeout_s=60)
        count = max(int(rate * seconds), 20)
        reader = asyncio.create_task(
            collect(kafka, count + 1, timeout_s=seconds + 30, on_record=on_record)
        )
        await asyncio.sleep(1.0)  # the reader is positioned
        producer = AIOKafkaProducer(**kafka.producer(await detect_capabilities(kafka), linger_ms=0))
        await producer.start()
        interval, t0 = 1.0 / rate, time.perf_counter()
        for i in range(count):
            await asyncio.sleep(max(0.0, t0 + i * interval - time.perf_counter()))
            job_id = job_key(i, "l")
            body = json.dumps(
                {"job_id": job_id, "model": model, "inputs": workload.jobs[i % len(workload.jobs)]}
            )
            sent[job_id] = time.perf_counter()
            await producer.send(kafka.topics.predict, body.encode(), key=job_id.encode())
        await producer.stop()
        await reader
    finally:
        terminate(process, timeout_s=30)
    p50, p99 = np.percentile(latencies, [50, 99]) if latencies else (float("nan"),) * 2
    extra: dict[str, Any] = {"jobs": len(latencies)}
    if in_worker:
        extra["worker_p50_ms"], extra["worker_p99_ms"] = (
            float(v) for v in np.percentile(in_worker, [50, 99])
        )
    return Measured(rate, float(p50), float(p99), extra=extra)
