"""Prediction capture: a sampled copy of what the worker answered, for the monitor.

A small hook beside the loop (:class:`Capture`). For each answered job of a model whose
capture policy (:class:`~registry.labelled.CapturePolicy`, read from the registry every
``refresh_s`` and at once when a ``monitor`` control event says it changed) samples it,
a CaptureRecord goes to the job's tenant's capture topic, keyed by ``job_id``. Whether
a job is sampled is decided by a hash of its ``job_id`` (:func:`sampled`), so a
redelivered job is captured or not the same way. The inputs go in whole, not at all,
or with the named fields hashed (SHA-256 of each row's JSON); a record over the size
limit loses its inputs (counted).

Capture never fails, delays or reorders an answer: at-least-once, the records wait
in a bounded buffer that a background task publishes from after the answers went,
and what does not fit is dropped and counted (``maas_capture_dropped``); with
exactly-once they join the transaction that carries the answer (``attach``), so a
``read_committed`` monitor sees a job captured once.
"""

from __future__ import annotations

import asyncio
import contextlib
import hashlib
import time
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any, Protocol

import msgspec
import orjson
import structlog
from prometheus_client import Counter

from producer.contract.messages import CaptureRecord, PredictJob, Result, encode
from producer.contract.tenancy import Namespace
from registry.labelled import CapturePolicy
from workers.kafka.publisher import RECORD_OVERHEAD, Outgoing, Publisher

log = structlog.get_logger(__name__)

CAPTURED = Counter("maas_capture_records", "Capture records handed over to be published", ["model"])
DROPPED = Counter(
    "maas_capture_dropped",
    "Capture records not published: buffer_full, publish_failed",
    ["reason"],
)
TRIMMED = Counter("maas_capture_inputs_dropped", "Capture records sent without their inputs (size)")
for _reason in ("buffer_full", "publish_failed"):
    DROPPED.labels(_reason)

_HASH_SPACE = float(2**64)


@dataclass(frozen=True, slots=True)
class CaptureSettings:
    """How a worker captures: buffer size, publish batch, policy refresh, size limit."""

    buffer: int = 10_000  # records waiting to be published; more are dropped (counted)
    batch: int = 500  # records per publish
    refresh_s: float = 5.0  # how often capture policies are read again
    max_record_bytes: int = 1024 * 1024


class PolicyReader(Protocol):
    """What capture asks of the registry's quality store."""

    def policies(self) -> dict[str, CapturePolicy]: ...


def sampled(job_id: str, rate: float) -> bool:
    """Whether a job is captured at ``rate``: by a hash of its id, the same every time."""
    if rate <= 0.0:
        return False
    if rate >= 1.0:
        return True
    digest = hashlib.blake2b(job_id.encode(), digest_size=8).digest()
    return int.from_bytes(digest, "big") / _HASH_SPACE < rate


def kept_inputs(inputs: Mapping[str, list[Any]], policy: CapturePolicy) -> dict[str, Any] | None:
    """The inputs as ``policy`` keeps them: whole, None (drop), or named fields hashed."""
    if policy.inputs == "drop":
        return None
    hashed = set(policy.hashed_fields)
    if not hashed:
        return dict(inputs)
    return {
        name: [_digest(row) for row in rows] if name in hashed else rows
        for name, rows in inputs.items()
    }


def _digest(value: Any) -> str:
    raw = orjson.dumps(value, option=orjson.OPT_SERIALIZE_NUMPY | orjson.OPT_SORT_KEYS)
    return hashlib.sha256(raw).hexdigest()


class Capture:
    """The capture hook of one worker: :meth:`note` each answered job; :meth:`run`
    publishes the buffer (at-least-once) and keeps the policies fresh."""

    def __init__(self, prefix: str, settings: CaptureSettings) -> None:
        self._store: PolicyReader | None = None
        self._prefix, self.settings = prefix, settings
        self._policies: dict[str, CapturePolicy] = {}
        self._stale = asyncio.Event()
        self._buffer: asyncio.Queue[Outgoing] = asyncio.Queue(maxsize=settings.buffer)

    def follow(self, store: PolicyReader) -> None:
        """Read the capture policies from ``store`` (before :meth:`run`)."""
        self._store = store

    def invalidate(self) -> None:
        """A policy changed (a ``monitor`` control event): read them again now."""
        self._stale.set()

    def set_policies(self, policies: dict[str, CapturePolicy]) -> None:
        self._policies = policies

    def record(self, tenant: str | None, job: PredictJob, result: Result) -> Outgoing | None:
        """The capture record of ``job`` answered by ``result``, if its policy samples it."""
        policy = self._policies.get(job.model)
        if policy is None or result.version is None or not sampled(job.job_id, policy.rate):
            return None
        record = CaptureRecord(
            job_id=job.job_id,
            tenant=tenant,
            model=result.model or job.model,
            version=result.version,
            alias=job.alias if job.version is None else None,
            status=result.status,
            ts_ms=int(time.time() * 1000),
            inputs=kept_inputs(job.inputs, policy),
            outputs=result.outputs,
            timing=result.timing,
        )
        value = encode(record)
        if len(value) + len(job.job_id) + RECORD_OVERHEAD > self.settings.max_record_bytes:
            TRIMMED.inc()
            value = encode(_without_inputs(record))
        CAPTURED.labels(record.model).inc()
        topic = Namespace(self._prefix, tenant).capture
        return Outgoing(topic, value, job.job_id.encode())

    def offer(self, message: Outgoing) -> None:
        """Queue ``message`` for publishing; dropped (counted) when the buffer is full."""
        try:
            self._buffer.put_nowait(message)
        except asyncio.QueueFull:
            DROPPED.labels("buffer_full").inc()

    async def run(self, publisher: Publisher | None) -> None:
        """Publish the buffer (when ``publisher``: at-least-once) and refresh the
        policies, until cancelled."""
        tasks = [asyncio.create_task(self._refresh())]
        if publisher is not None:
            tasks.append(asyncio.create_task(self._publish(publisher)))
        try:
            await asyncio.gather(*tasks)
        finally:
            for task in tasks:
                task.cancel()
            for task in tasks:
                with contextlib.suppress(asyncio.CancelledError, Exception):
                    await task

    async def _refresh(self) -> None:
        while True:
            if self._store is not None:
                try:
                    self._policies = await asyncio.to_thread(self._store.policies)
                except Exception as exc:  # the registry is away: keep the last policies
                    log.warning("capture policies not read; keeping the last", error=str(exc))
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(self._stale.wait(), self.settings.refresh_s)
            self._stale.clear()

    async def _publish(self, publisher: Publisher) -> None:
        while True:
            batch = [await self._buffer.get()]
            while len(batch) < self.settings.batch and not self._buffer.empty():
                batch.append(self._buffer.get_nowait())
            try:
                errors = await publisher.send_many(batch)
            except Exception as exc:
                log.warning("capture records not published", error=str(exc), records=len(batch))
                DROPPED.labels("publish_failed").inc(len(batch))
                continue
            failed = sum(1 for error in errors if error is not None)
            if failed:
                DROPPED.labels("publish_failed").inc(failed)


def _without_inputs(record: CaptureRecord) -> CaptureRecord:
    return msgspec.structs.replace(record, inputs=None)
