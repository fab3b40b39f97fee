"""The dynamic batcher: packs rows from many jobs into one inference call. Kafka-free.

One :class:`DynamicBatcher` serves one model version. Callers ``await submit(inputs)``
with a job's tensors (leading row dimension); a scheduler task packs queued jobs,
highest priority first and FIFO within a priority, into batches of at most
``max_batch_size`` rows. It waits at most ``max_delay_ms`` after the oldest queued row
for a batch to fill, and dispatches at once when the batch is full or has reached one
of ``preferred_batch_sizes``. A job is never split, and jobs whose inputs differ in
names, dtypes or trailing shapes never share a batch.

The synchronous ``infer`` runs in an executor so the event loop keeps polling, unless
it has proved faster than ``inline_infer_ms`` for batches as large: then the hop to a
thread costs more than the inference, which runs on the loop
(:mod:`workers.batching.inline`). Every
output must have one row per batch row; each job gets its own rows back. Every waiter
is answered, with its outputs or an error, whatever happens: inference raising,
malformed outputs, cancellation or :meth:`DynamicBatcher.aclose`.

The policy (which jobs, when) is :mod:`workers.batching.policy`; a queued job and the
checks on its rows are :mod:`workers.batching.jobs`. ``BatchConfig`` and
``BatchOutput`` are re-exported here.
"""

from __future__ import annotations

import asyncio
import bisect
import concurrent.futures
import functools
import itertools
import time
from collections.abc import Mapping

import numpy as np
import structlog

from workers.batching.inline import InlineRule
from workers.batching.jobs import (
    BatchOutput,
    InferFn,
    QueuedJob,
    Tensors,
    check_inputs,
    check_outputs,
    concat,
    group_key,
)
from workers.batching.policy import ArrivalRate, BatchConfig, plan_batch
from workers.errors import BatcherClosed, Expired, InferenceError, QueueFull, TooLarge, WorkerError

__all__ = ["BatchConfig", "BatchOutput", "DynamicBatcher", "InferFn"]

log = structlog.get_logger(__name__)


class DynamicBatcher:
    """Packs jobs into batches for one model version and runs ``infer`` off the loop.

    ``infer`` takes and returns named arrays with a leading row dimension. It runs in
    ``executor``, by default a private thread pool with ``max_concurrent_batches``
    threads that :meth:`aclose` shuts down.
    """

    def __init__(
        self,
        infer: InferFn,
        config: BatchConfig | None = None,
        *,
        executor: concurrent.futures.Executor | None = None,
        name: str = "",
    ) -> None:
        self._infer = infer
        self.config = config or BatchConfig()
        self.name = name
        self._own_executor = executor is None
        self._executor = executor or concurrent.futures.ThreadPoolExecutor(
            max_workers=self.config.max_concurrent_batches,
            thread_name_prefix=f"batcher-{name}" if name else "batcher",
        )
        self._queue: list[QueuedJob] = []  # sorted by (-priority, seq)
        self._queued_rows = 0
        self._arrivals = ArrivalRate()
        self._seq = itertools.count()
        self._wakeup = asyncio.Event()
        self._idle = asyncio.Event()
        self._idle.set()
        self._outstanding = 0  # jobs submitted and not yet answered
        self._slots = asyncio.Semaphore(self.config.max_concurrent_batches)
        self._batches: set[asyncio.Task[None]] = set()
        self._scheduler: asyncio.Task[None] | None = None
        self._closed = False
        self._inline = InlineRule(self.config.inline_infer_ms)
        self._log = log.bind(batcher=name) if name else log

    # -- public API ---------------------------------------------------------------------

    @property
    def queued_rows(self) -> int:
        """Rows waiting to be put in a batch (not counting batches already running)."""
        return self._queued_rows

    @property
    def closed(self) -> bool:
        return self._closed

    async def submit(
        self,
        inputs: Mapping[str, np.ndarray],
        *,
        priority: int = 0,
        deadline: float | None = None,
    ) -> BatchOutput:
        """Queue one job and wait for its rows of every output.

        ``deadline`` is absolute ``time.time()`` seconds. Raises :class:`InvalidInput`,
        :class:`TooLarge`, :class:`Expired`, :class:`QueueFull` at submit, and
        :class:`Expired`, :class:`InferenceError` or :class:`BatcherClosed` later.
        """
        job = self._admit(inputs, priority, deadline)
        self._enqueue(job)
        try:
            return await job.future
        finally:
            if not job.future.done():
                job.future.cancel()
            if job.future.cancelled():  # the caller was cancelled: forget the job
                self._dequeue([job])

    def submit_nowait(
        self,
        inputs: Mapping[str, np.ndarray],
        *,
        priority: int = 0,
        deadline: float | None = None,
    ) -> asyncio.Future[BatchOutput]:
        """Queue one job and return the future of its answer, without awaiting it.

        For callers that queue many jobs at once (a whole poll of records) and wait
        for them together. Raises like :meth:`submit` at admission; cancelling the
        future withdraws the job if it has not run yet.
        """
        job = self._admit(inputs, priority, deadline)
        self._enqueue(job)
        return job.future

    async def drain(self) -> None:
        """Wait until every job submitted so far has been answered."""
        await self._idle.wait()

    async def aclose(self) -> None:
        """Stop: queued jobs fail with BatcherClosed, running batches finish first."""
        if self._closed:
            return
        self._closed = True
        if self._scheduler is not None:
            self._scheduler.cancel()
            await asyncio.gather(self._scheduler, return_exceptions=True)
        self._fail_queued(BatcherClosed(f"batcher {self.name!r} closed before the job ran"))
        if self._batches:
            await asyncio.gather(*self._batches, return_exceptions=True)
        if self._own_executor:
            self._executor.shutdown(wait=False)

    # -- admission ----------------------------------------------------------------------

    def _admit(
        self, inputs: Mapping[str, np.ndarray], priority: int, deadline: float | None
    ) -> QueuedJob:
        if self._closed:
            raise BatcherClosed(f"batcher {self.name!r} is closed")
        rows = check_inputs(inputs)
        limits = self.config
        if rows > limits.max_job_rows:
            raise TooLarge(
                f"the job has {rows} rows, a worker accepts at most {limits.max_job_rows} "
                "per job; split it into smaller jobs"
            )
        if deadline is not None and time.time() >= deadline:
            raise Expired("the job's deadline passed before it was queued")
        if self._queued_rows + rows > limits.max_queue_rows:
            raise QueueFull(
                f"the batcher queue holds {self._queued_rows} rows; {rows} more would exceed "
                f"max_queue_rows={limits.max_queue_rows}"
            )
        future: asyncio.Future[BatchOutput] = asyncio.get_running_loop().create_future()
        return QueuedJob(
            inputs=dict(inputs),
            rows=rows,
            priority=priority,
            deadline=deadline,
            seq=next(self._seq),
            key=group_key(inputs),
            future=future,
        )

    def _enqueue(self, job: QueuedJob) -> None:
        if not self._queue or self._queue[-1].order <= job.order:
            self._queue.append(job)  # the usual case: same priority, arriving in order
        else:
            bisect.insort(self._queue, job, key=lambda j: j.order)
        self._queued_rows += job.rows
        self._arrivals.add(job.rows, job.enqueued)
        self._outstanding += 1
        self._idle.clear()
        job.future.add_done_callback(self._job_done)
        self._wakeup.set()
        if self._scheduler is None or self._scheduler.done():
            self._scheduler = asyncio.get_running_loop().create_task(
                self._schedule(), name=f"batcher-{self.name}"
            )

    def _dequeue(self, jobs: list[QueuedJob]) -> None:
        gone = {id(job) for job in jobs}
        self._queue = [job for job in self._queue if id(job) not in gone]
        self._queued_rows = sum(job.rows for job in self._queue)

    def _job_done(self, future: asyncio.Future[BatchOutput]) -> None:
        """A cancelled job leaves the queue at once, freeing its rows for others."""
        if future.cancelled():
            self._dequeue([job for job in self._queue if job.future is future])
            self._wakeup.set()
        self._outstanding -= 1
        if self._outstanding == 0:
            self._idle.set()

    def _fail_queued(self, error: WorkerError) -> None:
        queued, self._queue, self._queued_rows = self._queue, [], 0
        for job in queued:
            job.answer(error)

    # -- scheduling ---------------------------------------------------------------------

    async def _schedule(self) -> None:
        try:
            while True:
                await self._slots.acquire()
                try:
                    batch = await self._next_batch()
                except BaseException:
                    self._slots.release()
                    raise
                task = asyncio.get_running_loop().create_task(self._run(batch))
                self._batches.add(task)
                task.add_done_callback(functools.partial(self._batch_done, batch))
        except Exception:
            self._log.exception("batcher_scheduler_failed")  # restarted by the next submit
            raise
        finally:
            self._fail_queued(BatcherClosed(f"batcher {self.name!r} stopped"))

    async def _next_batch(self) -> list[QueuedJob]:
        """Wait until a batch is ready (full, preferred size or delay passed); take it."""
        while True:
            self._wakeup.clear()
            self._drop_expired()
            plan, ready, wait_s = plan_batch(self._queue, self.config, self._arrivals)
            if plan and ready:
                self._dequeue(plan)
                return plan
            try:
                async with asyncio.timeout(wait_s):
                    await self._wakeup.wait()
            except TimeoutError:
                pass

    def _drop_expired(self) -> None:
        now = time.time()
        expired = [job for job in self._queue if job.expired(now) or job.future.done()]
        if not expired:
            return
        self._dequeue(expired)
        for job in expired:
            job.answer(Expired("the job's deadline passed while it waited in the queue"))

    # -- running a batch ----------------------------------------------------------------

    async def _run(self, batch: list[QueuedJob]) -> None:
        rows = sum(job.rows for job in batch)
        started = time.monotonic()
        try:
            outputs = await self._infer_batch(concat(batch), rows)
            checked = check_outputs(outputs, rows)
        except WorkerError as exc:
            self._fail(batch, exc)
            return
        except Exception as exc:
            error = InferenceError(f"inference failed: {type(exc).__name__}: {exc}")
            error.__cause__ = exc
            self._fail(batch, error)
            return
        self._answer(batch, checked, rows, started, (time.monotonic() - started) * 1000)

    async def _infer_batch(self, inputs: Tensors, rows: int) -> Tensors:
        """``infer(inputs)``: on the loop when batches this large are known to be fast,
        else in the executor; either way timed, to learn which sizes are."""
        started = time.perf_counter()
        if self._inline.inline(rows):
            outputs = self._infer(inputs)
        else:
            loop = asyncio.get_running_loop()
            outputs = await loop.run_in_executor(self._executor, self._infer, inputs)
        self._inline.took(rows, time.perf_counter() - started)
        return outputs

    def _answer(
        self, batch: list[QueuedJob], outputs: Tensors, rows: int, started: float, infer_ms: float
    ) -> None:
        start = 0
        for job in batch:
            end = start + job.rows
            job.answer(
                BatchOutput(
                    outputs={name: array[start:end] for name, array in outputs.items()},
                    batch_size=rows,
                    queue_ms=(started - job.enqueued) * 1000,
                    infer_ms=infer_ms,
                )
            )
            start = end

    def _fail(self, batch: list[QueuedJob], error: WorkerError) -> None:
        """Answer every job of ``batch`` still waiting with ``error``."""
        waiting = [job for job in batch if not job.future.done()]
        for job in waiting:
            job.answer(error)
        if waiting and not isinstance(error, BatcherClosed):
            rows = sum(job.rows for job in batch)
            self._log.warning("batch_failed", jobs=len(batch), rows=rows, error=str(error))

    def _batch_done(self, batch: list[QueuedJob], task: asyncio.Task[None]) -> None:
        """Runs however the batch task ended, even cancelled before it started."""
        self._batches.discard(task)
        self._slots.release()
        self._fail(batch, BatcherClosed(f"batcher {self.name!r} stopped while the batch ran"))
