"""Per-version monitoring windows, written to the registry in bulk off the hot path.

Every answered job is recorded in memory (a few appends); every ``interval_s`` the
windows are closed and written to the registry in one insert from a thread, where
the rollback policy and ``maas models stats`` read them. The same events feed
Prometheus counters and histograms for scraping.

A job answered with a client's mistake (``CLIENT_ERROR_CODES``: INVALID_INPUT,
UNAUTHORIZED, TOO_LARGE, EXPIRED, MODEL_NOT_FOUND, VERSION_NOT_FOUND) is counted apart
from the model's and the service's errors (INTERNAL), in a window's ``client_errors``
and in ``maas_job_client_errors``: it never counts toward the error rate that rollback
and the scheduler's metric trigger judge, so one tenant's bad inputs move no model.
"""

from __future__ import annotations

import asyncio
import contextlib
from collections import Counter
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Any, TypedDict, Unpack

import numpy as np
import structlog
from prometheus_client import Counter as PromCounter
from prometheus_client import Histogram

from producer.contract.messages import CLIENT_ERROR_CODES
from registry.entities import MetricWindow

log = structlog.get_logger(__name__)

# status: ok, error (the model's or the service's) or client_error (the caller's mistake)
JOBS = PromCounter("maas_jobs", "Jobs answered", ["model", "version", "status"])
ROWS = PromCounter("maas_rows", "Rows answered", ["model", "version"])
ERRORS = PromCounter(
    "maas_job_errors",
    "Jobs answered with an error of the model or the service",
    ["model", "version", "code"],
)
CLIENT_ERRORS = PromCounter(
    "maas_job_client_errors",
    "Jobs answered with a client's mistake (never counted as the model's errors)",
    ["model", "version", "code"],
)
# Each job adds rows / batch size, its share of the batch it ran in: the batches' count
# without a per-batch hook. Mean rows per batch: batched_rows / batches.
BATCHES = PromCounter("maas_batches", "Inference batches run", ["model", "version"])
BATCHED_ROWS = PromCounter(
    "maas_batched_rows", "Rows run in inference batches", ["model", "version"]
)
LATENCY = Histogram(
    "maas_job_seconds",
    "Job latency from receipt to answer",
    ["model", "version"],
    buckets=(0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0),
)


@dataclass
class _Window:
    jobs: int = 0
    rows: int = 0
    batch_rows: int = 0
    errors: Counter[str] = field(default_factory=Counter)
    client_errors: Counter[str] = field(default_factory=Counter)
    queue_ms: list[float] = field(default_factory=list)
    infer_ms: list[float] = field(default_factory=list)
    batched_rows: int = 0
    batches: float = 0.0
    # How much of the above publish() has added to the Prometheus metrics already.
    published_jobs: int = 0
    published_rows: int = 0
    published_errors: Counter[str] = field(default_factory=Counter)
    published_client_errors: Counter[str] = field(default_factory=Counter)
    published_batched_rows: int = 0
    published_batches: float = 0.0


class JobFigures(TypedDict):
    """What one answered job measured, as :meth:`MetricsRecorder.record` takes it:
    its rows, its error code (None when served), its milliseconds queued and in
    inference, and the rows of the batch it ran in (0 when it ran in none)."""

    rows: int
    error: str | None
    queue_ms: float
    infer_ms: float
    batch_size: int


def _publish_codes(
    metric: PromCounter, model: str, version: int, counts: Counter[str], published: Counter[str]
) -> None:
    """Add to ``metric`` by code what ``counts`` holds beyond ``published``."""
    for code, count in counts.items():
        if count > published[code]:
            metric.labels(model, str(version), code).inc(count - published[code])
            published[code] = count


def _percentiles(values: list[float]) -> tuple[float, float, float]:
    if not values:
        return (0.0, 0.0, 0.0)
    p50, p95, p99 = np.percentile(np.asarray(values), [50, 95, 99])
    return (float(p50), float(p95), float(p99))


class MetricsRecorder:
    """Accumulates windows per (model, version) and flushes them with ``write``."""

    def __init__(
        self,
        write: Callable[[Sequence[MetricWindow]], None],
        *,
        worker: str,
        interval_s: float = 10.0,
    ) -> None:
        self._write = write
        self._worker = worker
        self._interval_s = interval_s
        self._windows: dict[tuple[str, int], _Window] = {}
        self._started = datetime.now(UTC)
        self._prom: dict[tuple[str, int], tuple[Any, Any, Any, Any, Any]] = {}

    def record(self, model: str, version: int, **job: Unpack[JobFigures]) -> None:
        """Count one answered job of ``model`` ``version`` in its window."""
        rows, error, batch_size = job["rows"], job["error"], job["batch_size"]
        window = self._windows.get((model, version))
        if window is None:
            window = self._windows[(model, version)] = _Window()
        window.jobs += 1
        window.rows += rows
        window.batch_rows += batch_size
        if error in CLIENT_ERROR_CODES:
            window.client_errors[error] += 1
        elif error:
            window.errors[error] += 1
        elif batch_size:
            window.batched_rows += rows
            window.batches += rows / batch_size
        window.queue_ms.append(job["queue_ms"])
        window.infer_ms.append(job["infer_ms"])

    def publish(self) -> None:
        """Add what :meth:`record` gathered to the Prometheus metrics: once per poll's
        jobs, not per job (three metric updates per job cost a tenth of serving one)."""
        for (model, version), w in self._windows.items():
            if w.published_jobs == w.jobs:
                continue
            jobs_ok, jobs_error, jobs_client, rows_total, latency = self._children(model, version)
            new_errors = w.errors.total() - w.published_errors.total()
            new_client = w.client_errors.total() - w.published_client_errors.total()
            new_ok = w.jobs - w.published_jobs - new_errors - new_client
            if new_ok:
                jobs_ok.inc(new_ok)
            if new_errors:
                jobs_error.inc(new_errors)
                _publish_codes(ERRORS, model, version, w.errors, w.published_errors)
            if new_client:
                jobs_client.inc(new_client)
                _publish_codes(
                    CLIENT_ERRORS, model, version, w.client_errors, w.published_client_errors
                )
            rows_total.inc(w.rows - w.published_rows)
            self._publish_batches(model, version, w)
            start = w.published_jobs
            for queue_ms, infer_ms in zip(w.queue_ms[start:], w.infer_ms[start:], strict=True):
                latency.observe((queue_ms + infer_ms) / 1000)
            w.published_jobs, w.published_rows = w.jobs, w.rows

    @staticmethod
    def _publish_batches(model: str, version: int, w: _Window) -> None:
        if w.batched_rows == w.published_batched_rows:
            return
        BATCHED_ROWS.labels(model, str(version)).inc(w.batched_rows - w.published_batched_rows)
        BATCHES.labels(model, str(version)).inc(w.batches - w.published_batches)
        w.published_batched_rows, w.published_batches = w.batched_rows, w.batches

    def _children(self, model: str, version: int) -> tuple[Any, Any, Any, Any, Any]:
        """Prometheus children per version, looked up once (labels() is slow per call)."""
        key = (model, version)
        children = self._prom.get(key)
        if children is None:
            labels = (model, str(version))
            children = self._prom[key] = (
                JOBS.labels(*labels, "ok"),
                JOBS.labels(*labels, "error"),
                JOBS.labels(*labels, "client_error"),
                ROWS.labels(*labels),
                LATENCY.labels(*labels),
            )
        return children

    def close_windows(self) -> list[MetricWindow]:
        """Close the current windows and return them as registry entities."""
        self.publish()
        end = datetime.now(UTC)
        seconds = max((end - self._started).total_seconds(), 1e-6)
        windows, self._windows = self._windows, {}
        start, self._started = self._started, end
        closed = []
        for (model, version), w in windows.items():
            q50, q95, q99 = _percentiles(w.queue_ms)
            i50, i95, i99 = _percentiles(w.infer_ms)
            closed.append(
                MetricWindow(
                    model=model,
                    version=version,
                    worker=self._worker,
                    start=start,
                    end=end,
                    jobs=w.jobs,
                    rows=w.rows,
                    errors=dict(w.errors),
                    client_errors=dict(w.client_errors),
                    queue_ms_p50=q50,
                    queue_ms_p95=q95,
                    queue_ms_p99=q99,
                    infer_ms_p50=i50,
                    infer_ms_p95=i95,
                    infer_ms_p99=i99,
                    mean_batch_size=w.batch_rows / w.jobs if w.jobs else 0.0,
                    rows_per_s=w.rows / seconds,
                )
            )
        return closed

    async def flush(self) -> None:
        windows = self.close_windows()
        if not windows:
            return
        try:
            await asyncio.to_thread(self._write, windows)
        except Exception:  # the registry being down must never stop serving
            log.exception("metric windows not written", windows=len(windows))

    async def run(self) -> None:
        """Flush every ``interval_s`` until cancelled, then flush what is left."""
        try:
            while True:
                await asyncio.sleep(self._interval_s)
                await self.flush()
        finally:
            with contextlib.suppress(Exception):
                await asyncio.shield(self.flush())
