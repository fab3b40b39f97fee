"""Answering one prediction job: deadline, version, validation, batching, Result.

Kafka-free: the loop decodes records and publishes what :meth:`JobHandler.answer`
returns. Every job gets exactly one Result here, whatever goes wrong.
"""

from __future__ import annotations

import asyncio
import time
from typing import Any

import numpy as np
import structlog

from producer.messages import ErrorCode, PredictJob, Result, Timing, error_result
from registry.entities import ModelVersion
from workers.batching import BatchOutput
from workers.errors import Expired, QueueFull, WorkerError
from workers.metrics import MetricsRecorder
from workers.models import Loaded, ModelCache

log = structlog.get_logger(__name__)

_QUEUE_FULL_WAIT_S = 0.005


def _ms(since: float) -> float:
    return round((time.time() - since) * 1000, 3)


def _plain(outputs: dict[str, np.ndarray]) -> dict[str, Any]:
    return {name: value.tolist() for name, value in outputs.items()}


class JobHandler:
    """Turns a decoded job into its Result (ok or error), recording metrics on the way."""

    def __init__(self, models: ModelCache, metrics: MetricsRecorder, *, worker: str) -> None:
        self._models = models
        self._metrics = metrics
        self._worker = worker

    async def answer(self, job: PredictJob, received: float) -> Result:
        """``received``: epoch seconds when the record was polled."""
        version: ModelVersion | None = None
        try:
            self._check_deadline(job)
            version = await self._models.resolve(job.model, job.version, job.alias)
            loaded = await self._models.get(version)
            out = await self._submit(loaded, job)
        except WorkerError as exc:
            return self._failed(job, version, exc.code, str(exc), received)
        except Exception as exc:  # a bug or a broken artifact: answer, never hang
            log.exception("job failed", job_id=job.job_id, model=job.model)
            message = f"internal error while serving the job: {type(exc).__name__}: {exc}"
            return self._failed(job, version, ErrorCode.INTERNAL, message, received)
        total = _ms(received)
        self._metrics.record(
            version.model,
            version.version,
            rows=job.rows,
            error=None,
            queue_ms=max(total - out.infer_ms, 0.0),
            infer_ms=out.infer_ms,
            batch_size=out.batch_size,
        )
        return Result(
            job_id=job.job_id,
            status="ok",
            model=version.model,
            version=version.version,
            outputs=_plain(out.outputs),
            timing=Timing(
                queue_ms=round(max(total - out.infer_ms, 0.0), 3),
                infer_ms=round(out.infer_ms, 3),
                total_ms=total,
            ),
            batch_size=out.batch_size,
            worker=self._worker,
            metadata=job.metadata,
        )

    @staticmethod
    def _check_deadline(job: PredictJob) -> None:
        if job.deadline_ms is not None and time.time() * 1000 > job.deadline_ms:
            late = time.time() * 1000 - job.deadline_ms
            raise Expired(
                f"the job's deadline_ms {job.deadline_ms} passed {late:.0f} ms before it "
                "could run; send a later deadline or add workers"
            )

    async def _submit(self, loaded: Loaded, job: PredictJob) -> BatchOutput:
        inputs = loaded.runtime.prepare(job.inputs)
        deadline = job.deadline_ms / 1000 if job.deadline_ms is not None else None
        while True:
            try:
                return await loaded.batcher.submit(inputs, priority=job.priority, deadline=deadline)
            except QueueFull:
                await asyncio.sleep(_QUEUE_FULL_WAIT_S)  # the loop pauses polling meanwhile

    def _failed(
        self,
        job: PredictJob,
        version: ModelVersion | None,
        code: str,
        message: str,
        received: float,
    ) -> Result:
        total = _ms(received)
        if version is not None:
            self._metrics.record(
                version.model,
                version.version,
                rows=job.rows,
                error=code,
                queue_ms=total,
                infer_ms=0.0,
                batch_size=0,
            )
        return error_result(
            job.job_id,
            ErrorCode(code),
            message,
            model=job.model,
            version=version.version if version else job.version,
            metadata=job.metadata,
            worker=self._worker,
            timing=Timing(queue_ms=total, total_ms=total),
        )
