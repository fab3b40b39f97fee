"""Answering one prediction job: deadline, version, validation, batching, Result.

Kafka-free: the loop decodes a poll's records and publishes what
:meth:`JobHandler.answer_many` returns. Every job gets exactly one Result here,
whatever goes wrong.
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

import structlog

from producer.messages import ErrorCode, PredictJob, Result, Timing, error_result
from registry.entities import ModelVersion
from workers.batching import BatchConfig, BatchOutput
from workers.errors import Expired, InvalidInput, QueueFull, WorkerError
from workers.metrics import MetricsRecorder
from workers.models import Loaded, ModelCache

log = structlog.get_logger(__name__)

_QUEUE_FULL_WAIT_S = 0.005


def _ms(since: float) -> float:
    return round((time.time() - since) * 1000, 3)


# Jobs that name the same model, version and alias resolve to the same version.
_Target = tuple[str, int | None, str]


@dataclass(frozen=True, slots=True)
class _Queued:
    """A job waiting for its batch: its own future, or ``rows`` of one it shares."""

    index: int
    version: ModelVersion
    future: asyncio.Future[BatchOutput]
    rows: slice | None = None


def _by_target(jobs: Sequence[PredictJob], indices: list[int]) -> dict[_Target, list[int]]:
    groups: dict[_Target, list[int]] = {}
    for index in indices:
        job = jobs[index]
        groups.setdefault((job.model, job.version, job.alias), []).append(index)
    return groups


def _groups(
    jobs: Sequence[PredictJob], indices: list[int], config: BatchConfig, one_by_one: list[int]
) -> list[list[int]]:
    """Runs of jobs that can be queued as one: same input names and priority, no
    deadline (each keeps its own expiry), at most an eighth of a batch of rows: the
    batcher never splits a job, so bigger groups would leave batches part empty. The
    rest, and groups of one, go to ``one_by_one``."""
    limit = min(max(config.max_batch_size // 8, 1), config.max_job_rows)
    groups: list[list[int]] = []
    filling: dict[tuple[int, tuple[str, ...]], tuple[list[int], int]] = {}
    for index in indices:
        job = jobs[index]
        if job.deadline_ms is not None or job.rows > limit:
            one_by_one.append(index)
            continue
        key = (job.priority, tuple(job.inputs))
        group, rows = filling.get(key, ([], limit))
        if rows + job.rows > limit:  # full (or the first of its kind): start another
            group, rows = [], 0
            groups.append(group)
        group.append(index)
        filling[key] = (group, rows + job.rows)
    one_by_one.extend(group[0] for group in groups if len(group) == 1)
    return [group for group in groups if len(group) > 1]


def _classify(exc: BaseException, job: PredictJob) -> tuple[str, str]:
    """The error code and message a job gets for ``exc``; logs what is not a WorkerError."""
    if isinstance(exc, WorkerError):
        return exc.code, str(exc)
    log.error("job failed", job_id=job.job_id, model=job.model, exc_info=exc)
    return (
        ErrorCode.INTERNAL,
        f"internal error while serving the job: {type(exc).__name__}: {exc}",
    )


class JobHandler:
    """Turns decoded jobs into their Results (ok or error), recording metrics on the way."""

    def __init__(self, models: ModelCache, metrics: MetricsRecorder, *, worker: str) -> None:
        self._models = models
        self._metrics = metrics
        self._worker = worker

    async def answer(self, job: PredictJob, received: float) -> Result:
        """``received``: epoch seconds when the record was polled."""
        return (await self.answer_many([job], received))[0]

    async def answer_many(self, jobs: Sequence[PredictJob], received: float) -> list[Result]:
        """One Result per job, in order. Jobs are queued together and wait together:
        one registry lookup per (model, version, alias), one wake-up of each batcher."""
        results: list[Result | None] = [None] * len(jobs)
        queued: list[_Queued] = []
        live = []
        for index, job in enumerate(jobs):
            try:
                self._check_deadline(job)
            except Expired as exc:
                results[index] = self._failed(job, None, exc.code, str(exc), received)
            else:
                live.append(index)
        try:
            for key, indices in _by_target(jobs, live).items():
                version = await self._target(key, jobs, indices, results, received)
                if version is not None:
                    await self._queue(version, jobs, indices, results, queued, received)
            if queued:
                await asyncio.wait({q.future for q in queued})
        finally:
            for q in queued:
                q.future.cancel()  # only those not answered: withdrawn when we are cancelled
        for q in queued:
            results[q.index] = self._finished(jobs[q.index], q, received)
        self._metrics.publish()
        return [result for result in results if result is not None]

    async def _target(
        self,
        key: _Target,
        jobs: Sequence[PredictJob],
        indices: list[int],
        results: list[Result | None],
        received: float,
    ) -> ModelVersion | None:
        """The version the jobs at ``indices`` asked for, or None after answering them."""
        try:
            return await self._models.resolve(*key)
        except Exception as exc:
            self._fail_all(exc, jobs, indices, None, results, received)
            return None

    async def _queue(
        self,
        version: ModelVersion,
        jobs: Sequence[PredictJob],
        indices: list[int],
        results: list[Result | None],
        queued: list[_Queued],
        received: float,
    ) -> None:
        """Queue the jobs on their version's batcher; answer at once the ones that fail.

        Jobs alike (same inputs, priority, no deadline) are validated, converted and
        queued together as one batcher job (see :func:`_groups`), and split again
        when answered: one array conversion and one future for many small jobs. When
        such a group does not validate, its jobs go one by one, so that only the bad
        one is refused.
        """
        try:
            loaded = await self._models.get(version)
        except Exception as exc:
            self._fail_all(exc, jobs, indices, version, results, received)
            return
        one_by_one: list[int] = []
        for group in _groups(jobs, indices, loaded.batcher.config, one_by_one):
            await self._queue_group(loaded, jobs, group, results, queued, received, one_by_one)
        for index in sorted(one_by_one):
            job = jobs[index]
            deadline = job.deadline_ms / 1000 if job.deadline_ms is not None else None
            try:
                inputs = loaded.runtime.prepare(job.inputs)
                future = await self._enqueue(loaded, inputs, job.priority, deadline)
            except Exception as exc:
                code, message = _classify(exc, job)
                results[index] = self._failed(job, version, code, message, received)
            else:
                queued.append(_Queued(index, version, future))

    async def _queue_group(
        self,
        loaded: Loaded,
        jobs: Sequence[PredictJob],
        group: list[int],
        results: list[Result | None],
        queued: list[_Queued],
        received: float,
        one_by_one: list[int],
    ) -> None:
        first = jobs[group[0]]
        merged = {
            name: [row for i in group for row in jobs[i].inputs[name]] for name in first.inputs
        }
        try:
            inputs = loaded.runtime.prepare(merged)
        except InvalidInput:
            one_by_one.extend(group)  # find the bad job and refuse only that one
            return
        version = loaded.version
        try:
            future = await self._enqueue(loaded, inputs, first.priority, None)
        except Exception as exc:
            self._fail_all(exc, jobs, group, version, results, received)
            return
        start = 0
        for index in group:
            stop = start + jobs[index].rows
            queued.append(_Queued(index, version, future, slice(start, stop)))
            start = stop

    def _finished(self, job: PredictJob, queued: _Queued, received: float) -> Result:
        version = queued.version
        error = queued.future.exception()
        if error is not None:
            code, message = _classify(error, job)
            return self._failed(job, version, code, message, received)
        out = queued.future.result()
        outputs = out.outputs
        if queued.rows is not None:
            outputs = {name: value[queued.rows] for name, value in outputs.items()}
        total = _ms(received)
        queue_ms = round(max(total - out.infer_ms, 0.0), 3)
        self._metrics.record(
            version.model,
            version.version,
            rows=job.rows,
            error=None,
            queue_ms=queue_ms,
            infer_ms=out.infer_ms,
            batch_size=out.batch_size,
        )
        return Result(
            job_id=job.job_id,
            status="ok",
            model=version.model,
            version=version.version,
            outputs=outputs,  # arrays: encode() writes them compactly
            timing=Timing(queue_ms=queue_ms, infer_ms=round(out.infer_ms, 3), total_ms=total),
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

    @staticmethod
    async def _enqueue(
        loaded: Loaded, inputs: dict[str, Any], priority: int, deadline: float | None
    ) -> asyncio.Future[BatchOutput]:
        while True:
            try:
                return loaded.batcher.submit_nowait(inputs, priority=priority, deadline=deadline)
            except QueueFull:
                await asyncio.sleep(_QUEUE_FULL_WAIT_S)  # the loop pauses polling meanwhile

    def _fail_all(
        self,
        exc: BaseException,
        jobs: Sequence[PredictJob],
        indices: list[int],
        version: ModelVersion | None,
        results: list[Result | None],
        received: float,
    ) -> None:
        """Answer every job at ``indices`` with the error ``exc`` (classified once)."""
        code, message = _classify(exc, jobs[indices[0]])
        for index in indices:
            results[index] = self._failed(jobs[index], version, code, message, received)

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
