"""One steady run: a path serving jobs that arrive at a fixed rate, measured from /proc.

The path (``maas``: one ``maas worker --processes 1``; ``loop``: the librdkafka
per-message loop of :mod:`bench.baselines`) serves topics of its own (8 predict
partitions). After one warm-up job is answered, the pacer (:mod:`bench.steady.pacer`,
a process of its own) sends for ``warmup_s + seconds``; the window is the ``seconds``
after the warm-up. Over it: the worker's and the broker's CPU (utime + stime of the
process and its children, from /proc) per answer read in the window and as a share of
a core; p50/p99 from send to answer read, of the jobs sent in the window.

Lag is bounded when every job sent is answered and the jobs outstanding (sent less
answered, sampled every 0.2 s) grow over the last third of the window, by the
least-squares slope times its length, by no more than 50 ms of arrivals (at least 10
jobs): a worker that keeps up holds a constant backlog, one that does not adds
``rate - capacity`` jobs every second.
"""

from __future__ import annotations

import asyncio
import multiprocessing
import time
from dataclasses import dataclass, field
from typing import Any

import numpy as np

from bench.cpu import cpu_seconds, listener_pid
from bench.measure import Setup, fresh_topics, start
from bench.steady.pacer import Pace, pace
from bench.steady.reader import Reader
from bench.workloads import Workload
from maas.broker import terminate
from producer.kafka import detect_capabilities

SAMPLE_EVERY_S = 0.2
GROWTH_ALLOWED_S = 0.05  # of arrivals, over the last third of the window
GROWTH_ALLOWED_MIN = 10  # jobs


@dataclass(frozen=True)
class SteadyRun:
    """One measurement: ``path`` at ``rate`` jobs/s (``runner``: Python options for the
    maas worker, e.g. ``-m cProfile -o FILE``)."""

    path: str
    rate: float
    seconds: float = 60.0
    warmup_s: float = 5.0
    runner: tuple[str, ...] = ()


@dataclass
class Steady:
    path: str
    rate: float
    offered: float = 0.0  # jobs/s the pacer sent in the window
    sent: int = 0
    answered: int = 0
    worker_ms_per_job: float = float("nan")
    worker_core: float = 0.0
    broker_ms_per_job: float = float("nan")
    broker_core: float = 0.0
    p50_ms: float = float("nan")
    p99_ms: float = float("nan")
    lag_growth: float = 0.0  # jobs, over the last third of the window
    bounded: bool = False
    extra: dict[str, Any] = field(default_factory=dict)


@dataclass(frozen=True)
class _Sample:
    at: float  # monotonic seconds
    worker_s: float
    broker_s: float
    answered: int
    sent: int


def lag_growth(outstanding: list[tuple[float, int]]) -> float:
    """How many jobs the backlog grew by over the last third of the samples' span."""
    if len(outstanding) < 3:
        return 0.0
    start, end = outstanding[0][0], outstanding[-1][0]
    last = [(t, n) for t, n in outstanding if t >= end - (end - start) / 3]
    if len(last) < 2:
        return 0.0
    times, counts = np.array([t for t, _ in last]), np.array([n for _, n in last], dtype=float)
    slope = float(np.polyfit(times, counts, 1)[0])
    return slope * float(times[-1] - times[0])


def is_bounded(growth: float, rate: float, all_answered: bool) -> bool:
    return all_answered and bool(growth <= max(GROWTH_ALLOWED_MIN, GROWTH_ALLOWED_S * rate))


def steady(setup: Setup, workload: Workload, run: SteadyRun) -> Steady:
    """Measure ``run`` against the broker of ``setup`` (topics of its own)."""
    kafka = asyncio.run(fresh_topics(setup.bootstrap, "steady"))
    broker = _broker_pid(setup.bootstrap)
    inputs = tuple(_inputs(workload))
    kind = "maas" if run.path == "maas" else "naive"
    process = start(kind, kafka, setup, workload, runner=run.runner)
    capabilities = asyncio.run(detect_capabilities(kafka))
    fetch_wait_ms = kafka.consumer(capabilities, None)["fetch_max_wait_ms"]
    reader = Reader(setup.bootstrap, kafka.topics.results, fetch_wait_ms)
    try:
        reader.warm_up(kafka.topics.predict, setup.model, inputs[0])
        job = Pace(
            setup.bootstrap, kafka.topics.predict, setup.model, inputs, run.rate,
            run.warmup_s + run.seconds + 1.0,
        )  # fmt: skip
        return _paced(reader, {"worker": process.pid, "broker": broker}, job, run)
    finally:
        reader.close()
        terminate(process, timeout_s=30)


def _broker_pid(bootstrap: str, tries: int = 5) -> int:
    port = int(bootstrap.rsplit(":", 1)[1])
    for _ in range(tries):
        if (pid := listener_pid(port)) is not None:
            return pid
        time.sleep(0.2)
    raise RuntimeError(f"no process of this user listens on {bootstrap}")


def _inputs(workload: Workload) -> list[str]:
    import json

    return [json.dumps(row) for row in workload.jobs[:100]]


def _paced(reader: Reader, pids: dict[str, int], job: Pace, run: SteadyRun) -> Steady:
    context = multiprocessing.get_context("spawn")
    sent, started = context.Value("q", 0), context.Value("q", 0)
    pacer = context.Process(target=pace, args=(job, sent, started), daemon=True)
    pacer.start()
    try:
        while not started.value and pacer.is_alive():
            reader.read(0.05)
        if not started.value:
            raise RuntimeError(f"the pacer exited with {pacer.exitcode} before it sent a job")
        begin = started.value / 1e9 + run.warmup_s

        def sample() -> _Sample:
            cpu = {name: cpu_seconds(pid) for name, pid in pids.items()}
            now = time.monotonic()
            return _Sample(now, cpu["worker"], cpu["broker"], reader.count, sent.value)

        while time.monotonic() < begin:
            reader.read(0.05)
        first, outstanding = sample(), list[tuple[float, int]]()
        while time.monotonic() < begin + run.seconds:
            reader.read(0.05)
            if not outstanding or time.monotonic() - outstanding[-1][0] >= SAMPLE_EVERY_S:
                outstanding.append((time.monotonic(), sent.value - reader.count))
        last = sample()
        _finish(reader, pacer, sent, timeout_s=max(30.0, run.seconds))
    finally:
        pacer.join(timeout=5)
        if pacer.is_alive():
            pacer.kill()
    return _figures(run, reader, (first, last), outstanding, sent.value)


def _finish(reader: Reader, pacer: Any, sent: Any, timeout_s: float) -> None:
    """Read on until the pacer is done and every job it sent is answered (or time out)."""
    deadline = time.monotonic() + timeout_s
    while (pacer.is_alive() or reader.count < sent.value) and time.monotonic() < deadline:
        reader.read(0.1)


def _figures(
    run: SteadyRun,
    reader: Reader,
    window: tuple[_Sample, _Sample],
    outstanding: list[tuple[float, int]],
    sent: int,
) -> Steady:
    first, last = window
    span, jobs = last.at - first.at, last.answered - first.answered
    found = Steady(run.path, run.rate, (last.sent - first.sent) / span, sent, reader.count)
    if jobs:
        found.worker_ms_per_job = 1000 * (last.worker_s - first.worker_s) / jobs
        found.broker_ms_per_job = 1000 * (last.broker_s - first.broker_s) / jobs
    found.worker_core = (last.worker_s - first.worker_s) / span
    found.broker_core = (last.broker_s - first.broker_s) / span
    low, high = int(first.at * 1e9), int(last.at * 1e9)
    latencies = [lat / 1e6 for at, lat in reader.timed if low <= at <= high]
    if latencies:
        found.p50_ms, found.p99_ms = (float(v) for v in np.percentile(latencies, [50, 99]))
    found.lag_growth = lag_growth(outstanding)
    found.bounded = is_bounded(found.lag_growth, run.rate, reader.count >= sent)
    found.extra = {"window_s": span, "window_answers": jobs, "timed": len(latencies)}
    return found
