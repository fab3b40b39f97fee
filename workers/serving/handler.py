"""Answering one prediction job: deadline, version, validation, batching, Result.

Kafka-free: the loop decodes a poll's records and publishes what
:meth:`JobHandler.answer_many` returns. Every job gets exactly one outcome here,
whatever goes wrong: its Result, or a :class:`Retry` when it failed with a retriable
error (``retriable`` on the worker's and the registry's errors) and was not answered,
so that the loop can have it redelivered (or answer it with :meth:`JobHandler.give_up`).
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Any

import numpy as np
import structlog

from producer.contract.messages import ErrorCode, PredictJob, Result, Timing, error_result
from registry.entities import ModelVersion
from registry.errors import RegistryError
from workers.batching.batcher import BatchConfig, BatchOutput
from workers.errors import Expired, InferenceError, QueueFull, TooLarge, WorkerError
from workers.serving.metrics import MetricsRecorder
from workers.serving.models import Loaded, ModelCache

log = structlog.get_logger(__name__)

_QUEUE_FULL_WAIT_S = 0.005


def _ms(since: float) -> float:
    return round((time.time() - since) * 1000, 3)


# Jobs that name the same model, version and alias resolve to the same version.
_Target = tuple[str, int | None, str]


@dataclass(frozen=True, slots=True)
class Retry:
    """A job that failed with a retriable ``error`` and was not answered."""

    job: PredictJob
    version: ModelVersion | None
    error: BaseException


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


def _merged(parts: list[Any]) -> Any:
    """Jobs' rows of one input as one: arrays (OIP tensors) joined, lists chained."""
    if all(isinstance(part, np.ndarray) for part in parts):
        try:
            return np.concatenate(parts)
        except ValueError:  # rows of different shapes: the runtime says which is wrong
            pass
    return [row for part in parts for row in part]


def _retriable(exc: BaseException) -> bool:
    return isinstance(exc, WorkerError | RegistryError) and exc.retriable


def _classify(exc: BaseException, job: PredictJob) -> tuple[str, str]:
    """The error code and message a job gets for ``exc``.

    An error that is the job's own (invalid input, unknown model, ...) is told as it
    is. Any other is ``INTERNAL`` with a message that names only its kind: the
    details (SQL, database hosts, file paths) are for the worker's log, never for
    the client; they are logged here unless the batcher logged them already.
    """
    if isinstance(exc, WorkerError) and exc.code != ErrorCode.INTERNAL:
        return exc.code, str(exc)
    if not isinstance(exc, InferenceError):  # the batcher logs a failed batch once
        expected = isinstance(exc, WorkerError | RegistryError)  # no traceback needed
        log.error(
            "job failed",
            job_id=job.job_id,
            model=job.model,
            error=f"{type(exc).__name__}: {exc}",
            exc_info=None if expected else exc,
        )
    return (
        ErrorCode.INTERNAL,
        f"internal error while serving the job ({type(exc).__name__}); the worker's log "
        "has the details",
    )


def _check_deadline(job: PredictJob) -> None:
    if job.deadline_ms is not None and time.time() * 1000 > job.deadline_ms:
        late = time.time() * 1000 - job.deadline_ms
        raise Expired(
            f"the job's deadline_ms {job.deadline_ms} passed {late:.0f} ms before it "
            "could run; send a later deadline or add workers"
        )


def _check_rows(job: PredictJob, config: BatchConfig) -> None:
    if job.rows > config.max_job_rows:
        raise TooLarge(
            f"the job has {job.rows} rows, more than this worker's limit of "
            f"{config.max_job_rows} (maas worker --max-job-rows); send fewer rows per job"
        )


async def _enqueue(
    loaded: Loaded, inputs: dict[str, Any], priority: int, deadline: float | None
) -> asyncio.Future[BatchOutput]:
    while True:
        try:
            return loaded.batcher.submit_nowait(inputs, priority=priority, deadline=deadline)
        except QueueFull:
            await asyncio.sleep(_QUEUE_FULL_WAIT_S)  # the loop pauses polling meanwhile


class JobHandler:
    """Turns decoded jobs into their outcomes, recording metrics on the way: a Result
    (ok or error), or a :class:`Retry` for a job that failed with a retriable error."""

    def __init__(self, models: ModelCache, metrics: MetricsRecorder, *, worker: str) -> None:
        self._models = models
        self._metrics = metrics
        self._worker = worker

    async def answer(self, job: PredictJob, received: float) -> Result | Retry:
        """``received``: epoch seconds when the record was polled."""
        return (await self.answer_many([job], received))[0]

    async def answer_many(
        self, jobs: Sequence[PredictJob], received: float, *, tenant: str | None = None
    ) -> list[Result | Retry]:
        """One outcome per job, in order. Jobs are queued together and wait together:
        one registry lookup per (model, version, alias), one wake-up of each batcher.
        ``tenant``: whose jobs they are (None: the default tenant's)."""
        poll = _Poll(self._models, self._metrics, self._worker, jobs, received, tenant)
        return await poll.answer()

    def give_up(self, retry: Retry, received: float, *, attempts: int) -> Result:
        """The error Result for a job that failed with a retriable error ``attempts``
        times: it is answered now rather than tried again."""
        poll = _Poll(self._models, self._metrics, self._worker, [retry.job], received)
        code, message = _classify(retry.error, retry.job)
        message = f"{message} (failed {attempts} times; not retried again)"
        return poll.failed(retry.job, retry.version, code, message)


@dataclass(slots=True)
class _Poll:
    """One call of :meth:`JobHandler.answer_many`: its jobs, when they were received,
    their outcomes as they settle and the jobs waiting on a batcher. The methods are
    the steps: deadlines, one lookup per target, queueing, waiting, answering."""

    models: ModelCache
    metrics: MetricsRecorder
    worker: str
    jobs: Sequence[PredictJob]
    received: float
    tenant: str | None = None
    outcomes: list[Result | Retry | None] = field(init=False)
    queued: list[_Queued] = field(default_factory=list)

    def __post_init__(self) -> None:
        self.outcomes = [None] * len(self.jobs)

    async def answer(self) -> list[Result | Retry]:
        live = self._live()
        try:
            for key, indices in _by_target(self.jobs, live).items():
                version = await self._target(key, indices)
                if version is not None:
                    await self._queue(version, indices)
            if self.queued:
                await asyncio.wait({q.future for q in self.queued})
        finally:
            for q in self.queued:
                q.future.cancel()  # only those not answered: withdrawn when we are cancelled
        for q in self.queued:
            self._finish(q)
        self.metrics.publish()
        return [outcome for outcome in self.outcomes if outcome is not None]

    def _live(self) -> list[int]:
        """The jobs still in time; the others are answered EXPIRED."""
        live = []
        for index, job in enumerate(self.jobs):
            try:
                _check_deadline(job)
            except Expired as exc:
                self.outcomes[index] = self.failed(job, None, exc.code, str(exc))
            else:
                live.append(index)
        return live

    async def _target(self, key: _Target, indices: list[int]) -> ModelVersion | None:
        """The version the jobs at ``indices`` asked for, or None after settling them."""
        try:
            return await self.models.resolve(*key, tenant=self.tenant, since=self.received)
        except Exception as exc:
            self._fail_all(exc, indices, None)
            return None

    async def _queue(self, version: ModelVersion, indices: list[int]) -> None:
        """Queue the jobs on their version's batcher; settle at once the ones that fail.

        Jobs alike (same inputs, priority, no deadline) are validated, converted and
        queued together as one batcher job (see :func:`_groups`), and split again
        when answered: one array conversion and one future for many small jobs. When
        such a group does not validate, its jobs go one by one, so that only the bad
        one is refused.
        """
        try:
            loaded = await self.models.get(version)
        except Exception as exc:
            self._fail_all(exc, indices, version)
            return
        one_by_one: list[int] = []
        for group in _groups(self.jobs, indices, loaded.batcher.config, one_by_one):
            await self._queue_group(loaded, group, one_by_one)
        for index in sorted(one_by_one):
            job = self.jobs[index]
            deadline = job.deadline_ms / 1000 if job.deadline_ms is not None else None
            try:
                _check_rows(job, loaded.batcher.config)  # before converting them all
                inputs = loaded.runtime.prepare(job.inputs)
                future = await _enqueue(loaded, inputs, job.priority, deadline)
            except Exception as exc:
                self._settle(index, version, exc)
            else:
                self.queued.append(_Queued(index, version, future))

    async def _queue_group(self, loaded: Loaded, group: list[int], one_by_one: list[int]) -> None:
        jobs = self.jobs
        first = jobs[group[0]]
        merged = {name: _merged([jobs[i].inputs[name] for i in group]) for name in first.inputs}
        try:
            inputs = loaded.runtime.prepare(merged)
        except Exception:
            one_by_one.extend(group)  # find the bad job and answer only that one
            return
        version = loaded.version
        try:
            future = await _enqueue(loaded, inputs, first.priority, None)
        except Exception as exc:
            self._fail_all(exc, group, version)
            return
        start = 0
        for index in group:
            stop = start + jobs[index].rows
            self.queued.append(_Queued(index, version, future, slice(start, stop)))
            start = stop

    def _finish(self, queued: _Queued) -> None:
        index, version = queued.index, queued.version
        error = queued.future.exception()
        if error is not None:
            self._settle(index, version, error)
            return
        job = self.jobs[index]
        out = queued.future.result()
        outputs = out.outputs
        if queued.rows is not None:
            outputs = {name: value[queued.rows] for name, value in outputs.items()}
        total = _ms(self.received)
        queue_ms = round(max(total - out.infer_ms, 0.0), 3)
        self._record(version, job, None, queue_ms, out)
        self.outcomes[index] = Result(
            job_id=job.job_id,
            status="ok",
            model=version.model,
            version=version.version,
            outputs=outputs,  # arrays: encode() writes them compactly
            timing=Timing(queue_ms=queue_ms, infer_ms=round(out.infer_ms, 3), total_ms=total),
            batch_size=out.batch_size,
            worker=self.worker,
            metadata=job.metadata,
        )

    def _settle(self, index: int, version: ModelVersion | None, exc: BaseException) -> None:
        """The job at ``index`` failed with ``exc``: a Retry, or its error Result."""
        self._fail_all(exc, [index], version)

    def _fail_all(
        self, exc: BaseException, indices: list[int], version: ModelVersion | None
    ) -> None:
        """Settle every job at ``indices`` with ``exc`` (classified once): a Retry each
        when ``exc`` is retriable, else the error Result."""
        jobs, outcomes = self.jobs, self.outcomes
        if _retriable(exc):
            for index in indices:
                outcomes[index] = Retry(jobs[index], version, exc)
            return
        code, message = _classify(exc, jobs[indices[0]])
        for index in indices:
            outcomes[index] = self.failed(jobs[index], version, code, message)

    def failed(
        self, job: PredictJob, version: ModelVersion | None, code: str, message: str
    ) -> Result:
        """The error Result for ``job``, recorded in its version's metrics."""
        total = _ms(self.received)
        if version is not None:
            self._record(version, job, code, total, None)
        return error_result(
            job.job_id,
            ErrorCode(code),
            message,
            model=job.model,
            version=version.version if version else job.version,
            metadata=job.metadata,
            worker=self.worker,
            timing=Timing(queue_ms=total, total_ms=total),
        )

    def _record(
        self,
        version: ModelVersion,
        job: PredictJob,
        error: str | None,
        queue_ms: float,
        out: BatchOutput | None,
    ) -> None:
        """Record the job in its version's metrics: served (``out``) or ``error``."""
        self.metrics.record(
            version.model,
            version.version,
            rows=job.rows,
            error=error,
            queue_ms=queue_ms,
            infer_ms=0.0 if out is None else out.infer_ms,
            batch_size=0 if out is None else out.batch_size,
        )
