"""The consume → batch → infer → reply loop, honest about offsets.

Poll; hand each partition's share of the poll to one task that decodes the records,
queues their jobs on the batchers together and publishes the answers together;
pause the partitions when too many jobs are in flight or a model's queue already holds
several batches; wait for the broker's acks; commit only the prefix of each partition
whose records are all answered. A job that fails with a retriable error (its
batcher closed, the registry unreachable) is not answered: its record is held back,
so the commit point stops before it, and read again after a backoff by seeking its
partition back to it (records already answered or in flight are passed over); after
``retry.attempts`` tries it is answered with its error. On rebalance, revoked
partitions are drained (or abandoned after a timeout, uncommitted) before they are
released; on SIGTERM the worker stops polling, drains and commits.
"""

from __future__ import annotations

import asyncio
import contextlib
import time
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field
from typing import Protocol

import structlog
from aiokafka import AIOKafkaConsumer, ConsumerRebalanceListener, TopicPartition

from producer.kafka import KafkaSettings
from producer.messages import (
    ControlEvent,
    DecodeError,
    ErrorCode,
    PredictJob,
    Result,
    decode_predict,
    encode,
    error_result,
)
from registry.entities import MetricWindow
from registry.policy import AliasRollbacks, WindowReader
from workers.batching import BatchConfig
from workers.consumer import (
    RetrySettings,
    commit,
    connected,
    dead_letter_unanswered,
    with_worker_id,
)
from workers.control import follow_control
from workers.heap import freeze_long_lived
from workers.idle import IdleBackoff
from workers.metrics import MetricsRecorder
from workers.models import ModelCache, VersionLookup
from workers.offsets import OffsetTracker
from workers.replies import Outgoing, Publisher, Record
from workers.rollback import RollbackSettings, RollbackWatcher
from workers.runtime import RuntimeSettings
from workers.serving import JobHandler, Retry

log = structlog.get_logger(__name__)


class ServedModels(VersionLookup, AliasRollbacks, Protocol):
    """What a worker asks of the model store: versions to serve, rollbacks of bad ones."""


class ServedMetrics(WindowReader, Protocol):
    """What a worker asks of the metric store: keep its windows, read them back to judge."""

    def record_windows(self, windows: Sequence[MetricWindow]) -> None: ...


@dataclass(frozen=True, slots=True)
class WorkerSettings:
    """How one worker process serves. Built once at the entrypoint."""

    models: tuple[str, ...] = ()  # empty: every registered model, loaded on demand
    group_id: str = "maas-workers"
    batch: BatchConfig = field(default_factory=BatchConfig)
    runtime: RuntimeSettings = field(default_factory=RuntimeSettings)
    max_in_flight: int = 4096  # jobs; polling pauses above it, resumes at half
    # Polling also pauses while a model's queue holds this many full batches, and resumes
    # at half: fetching further ahead only adds memory and redelivered jobs after a
    # crash, and on the embedded broker an idle fetch loop costs CPU the model needs.
    max_queued_batches: float = 4.0
    max_poll_records: int = 1000
    # Results can be large (an embedding is ~8 KB of JSON). At aiokafka's default 16 KB
    # a produce request per partition carried two of them and publishing, not the
    # model, set the pace (MiniLM on an H200: 1.3k rows/s with inference idle 95%).
    # Half of Kafka's default message.max.bytes keeps every batch acceptable.
    producer_batch_bytes: int = 512 * 1024
    commit_interval_s: float = 0.2
    drain_timeout_s: float = 30.0
    metrics_interval_s: float = 10.0
    alias_ttl_s: float = 5.0
    worker_id: str = ""  # default: host:pid of the process that serves
    rollback: RollbackSettings = field(default_factory=RollbackSettings)
    retry: RetrySettings = field(default_factory=RetrySettings)

    @property
    def group(self) -> str:
        """Pools that serve different models consume in different groups."""
        if not self.models:
            return self.group_id
        return f"{self.group_id}.{'+'.join(sorted(self.models))}"


class _Rebalance(ConsumerRebalanceListener):  # type: ignore[misc]
    def __init__(self, worker: Worker) -> None:
        self._worker = worker

    async def on_partitions_revoked(self, revoked: set[TopicPartition]) -> None:
        await self._worker.release(revoked)

    async def on_partitions_assigned(self, assigned: set[TopicPartition]) -> None:
        log.info("partitions assigned", partitions=sorted(tp.partition for tp in assigned))


class Worker:
    """One consumer in the worker group. ``run`` returns after ``stop`` is set and drained."""

    def __init__(
        self,
        kafka: KafkaSettings,
        models: ServedModels,
        metrics: ServedMetrics,
        settings: WorkerSettings,
    ) -> None:
        settings = with_worker_id(settings)
        self.kafka = kafka
        self.settings = settings
        self.tracker: OffsetTracker[TopicPartition] = OffsetTracker()
        self.rollback = RollbackWatcher(
            models, metrics, settings.rollback, actor=f"auto-rollback@{settings.worker_id}"
        )
        self.metrics = MetricsRecorder(
            self.rollback.wrap(metrics.record_windows),
            worker=settings.worker_id,
            interval_s=settings.metrics_interval_s,
        )
        self.models = ModelCache(
            models, runtime=settings.runtime, batch=settings.batch, alias_ttl_s=settings.alias_ttl_s
        )
        self.handler = JobHandler(self.models, self.metrics, worker=settings.worker_id)
        self._tasks: dict[TopicPartition, set[asyncio.Task[None]]] = {}
        # Partitions with records held back, and when to read them again (monotonic s).
        self._redeliveries: dict[TopicPartition, float] = {}
        self._consumer: AIOKafkaConsumer | None = None
        self._publisher: Publisher | None = None
        self.ready = asyncio.Event()

    @property
    def consumer(self) -> AIOKafkaConsumer | None:
        """The group member, once :meth:`run` has started it (probes read its partitions)."""
        return self._consumer

    async def run(self, stop: asyncio.Event) -> None:
        settings = self.settings
        try:
            async with connected(
                self.kafka,
                self.kafka.topics.predict,
                group=settings.group,
                listener=_Rebalance(self),
                batch_bytes=settings.producer_batch_bytes,
                max_poll_records=settings.max_poll_records,
            ) as (consumer, publisher):
                self._consumer, self._publisher = consumer, publisher
                helpers = [
                    asyncio.create_task(self._commit_loop()),
                    asyncio.create_task(self.metrics.run()),
                    asyncio.create_task(follow_control(self.kafka, self._on_control)),
                ]
                freeze_long_lived()
                log.info("worker started", worker=settings.worker_id, group=settings.group)
                try:
                    await self._poll(consumer, stop)
                finally:
                    await self._wind_down(consumer, helpers)
        finally:
            await self.models.aclose()
            log.info("worker stopped", worker=settings.worker_id)

    async def _poll(self, consumer: AIOKafkaConsumer, stop: asyncio.Event) -> None:
        idle = IdleBackoff(consumer)  # cheap empty fetches while no jobs come
        while not stop.is_set():
            # Paused, the poll returns nothing; come back soon to resume in time.
            batch = await consumer.getmany(timeout_ms=10 if consumer.paused() else 100)
            idle.polled(bool(batch))
            if consumer.assignment():
                self.ready.set()
            received = time.time()
            for tp, records in batch.items():
                if self.tracker.seen(tp, records[0].offset):  # read again after a seek
                    records = [r for r in records if self.tracker.reread(tp, r.offset)]
                    if not records:
                        continue
                else:
                    for record in records:
                        self.tracker.track(tp, record.offset)
                # One task per partition's share of a poll, not per record: a task, a
                # lock and a send per job cost more than decoding and inference.
                task = asyncio.create_task(self._process(tp, records, received))
                tasks = self._tasks.setdefault(tp, set())
                tasks.add(task)
                task.add_done_callback(tasks.discard)
            if batch:
                await asyncio.sleep(0)  # the tasks queue their jobs: backpressure sees them
            if self._redeliveries:
                self._redeliver(consumer)
            self._backpressure(consumer)

    def _redeliver(self, consumer: AIOKafkaConsumer) -> None:
        """Seek each partition whose held records are due back to the first of them."""
        now = time.monotonic()
        for tp, due in list(self._redeliveries.items()):
            if due > now:
                continue
            del self._redeliveries[tp]
            offset = self.tracker.held(tp)
            if offset is not None and tp in consumer.assignment():
                consumer.seek(tp, offset)

    def _backpressure(self, consumer: AIOKafkaConsumer) -> None:
        in_flight = self.tracker.in_flight()
        queued = max(
            (b.queued_rows / b.config.max_batch_size for b in self.models.batchers()),
            default=0.0,
        )
        limits = self.settings
        if in_flight >= limits.max_in_flight or queued >= limits.max_queued_batches:
            unpaused = consumer.assignment() - consumer.paused()
            if unpaused:
                consumer.pause(*unpaused)
                log.debug("partitions paused", in_flight=in_flight, queued_batches=queued)
        elif (
            consumer.paused()
            and in_flight <= limits.max_in_flight // 2
            and queued <= limits.max_queued_batches / 2
        ):
            consumer.resume(*consumer.paused())
            log.debug("partitions resumed", in_flight=in_flight, queued_batches=queued)

    async def _process(
        self, tp: TopicPartition, records: Sequence[Record], received: float
    ) -> None:
        """Answer a partition's records from one poll; mark each done once published."""
        assert self._publisher is not None
        try:
            replies = await self._replies(tp, records, received)
            sent = [reply for _, reply in replies if reply is not None]
            errors = iter(await self._publisher.send_many(sent))
            answered: list[tuple[Record, Exception | None]] = [
                (record, None if reply is None else next(errors)) for record, reply in replies
            ]
        except Exception as exc:  # a bug: dead-letter rather than hang the partition
            log.exception("unexpected failure answering records", partition=tp.partition)
            answered = [(record, exc) for record in records]
        for record, error in answered:
            if error is None or await dead_letter_unanswered(self._publisher, record, error):
                self.tracker.done(tp, record.offset)
            # else not answered: left uncommitted, redelivered after a restart

    async def _replies(
        self, tp: TopicPartition, records: Sequence[Record], received: float
    ) -> list[tuple[Record, Outgoing | None]]:
        """Each record with what answers it (None: another pool's job, nothing to send),
        less the records held back to be read again."""
        replies: list[tuple[Record, Outgoing | None]] = []
        jobs: list[tuple[int, Record, PredictJob]] = []
        for record in records:
            try:
                job = decode_predict(record.value or b"")
            except DecodeError as exc:
                replies.append((record, self._rejection(record, exc)))
                continue
            if self.settings.models and job.model not in self.settings.models:
                replies.append((record, None))  # another pool's job
                continue
            jobs.append((len(replies), record, job))
            replies.append((record, None))
        # No per-job context binding here: it costs more than the rest of the hot path;
        # the few log lines about a job name job_id themselves.
        outcomes = await self.handler.answer_many([job for _, _, job in jobs], received)
        held: set[int] = set()
        for (index, record, job), outcome in zip(jobs, outcomes, strict=True):
            if isinstance(outcome, Retry):
                answer = self._retry(tp, record, outcome, received)
                if answer is None:
                    held.add(index)
                    continue
                outcome = answer
            replies[index] = (
                record,
                Outgoing(
                    job.reply_to or self.kafka.topics.results,
                    encode(outcome),
                    job.job_id.encode(),
                    record.headers,
                ),
            )
        if held:
            return [reply for index, reply in enumerate(replies) if index not in held]
        return replies

    def _retry(
        self, tp: TopicPartition, record: Record, retry: Retry, received: float
    ) -> Result | None:
        """Hold a job that failed with a retriable error back to be read again (None),
        or, once it has been tried ``retry.attempts`` times more, its error Result."""
        limits = self.settings.retry
        attempt = self.tracker.hold(tp, record.offset, limits.attempts)
        context = {"job_id": retry.job.job_id, "partition": tp.partition, "offset": record.offset}
        if attempt is None:
            log.warning("job still failing; answering it", error=str(retry.error), **context)
            return self.handler.give_up(retry, received, attempts=limits.attempts + 1)
        log.info(
            "job held back to be read again", attempt=attempt, error=str(retry.error), **context
        )
        self._redeliveries.setdefault(tp, time.monotonic() + limits.delay_s(attempt))
        return None

    def _rejection(self, record: Record, exc: DecodeError) -> Outgoing:
        assert self._publisher is not None
        return self._publisher.rejection(
            record,
            exc,
            expected="PredictJob",
            answer=lambda envelope: error_result(
                envelope.job_id,
                ErrorCode.INVALID_INPUT,
                str(exc),
                model=envelope.model,
                metadata=envelope.metadata,
                worker=self.settings.worker_id,
            ),
            results_topic=self.kafka.topics.results,
        )

    async def _commit_loop(self) -> None:
        while True:
            await asyncio.sleep(self.settings.commit_interval_s)
            await self.commit()

    async def commit(self, tps: Iterable[TopicPartition] | None = None) -> None:
        points = self.tracker.commit_points(tps)
        if self._consumer is not None and points and await commit(self._consumer, points):
            self.tracker.mark_committed(points)

    async def release(self, revoked: set[TopicPartition]) -> None:
        """Drain revoked partitions (bounded), commit what is answered, then let go."""
        if not revoked:
            return
        await self._drain(revoked)
        abandoned = self.tracker.in_flight(revoked)
        await self.commit(revoked)
        self.tracker.forget(revoked)
        for tp in revoked:
            self._redeliveries.pop(tp, None)
        log.info(
            "partitions released",
            partitions=sorted(tp.partition for tp in revoked),
            abandoned=abandoned,
        )

    async def _drain(self, tps: Iterable[TopicPartition]) -> None:
        """Wait (bounded by drain_timeout_s) for the jobs of ``tps`` to be answered."""
        pending = {task for tp in tps for task in self._tasks.get(tp, ())}
        if pending:
            await asyncio.wait(pending, timeout=self.settings.drain_timeout_s)

    def _on_control(self, event: ControlEvent) -> None:
        self.models.invalidate(event.model)

    async def _wind_down(
        self, consumer: AIOKafkaConsumer, helpers: list[asyncio.Task[None]]
    ) -> None:
        """Stop polling, drain (bounded), commit what is answered, stop the helpers."""
        consumer.pause(*consumer.assignment())
        await self._drain(list(self._tasks))
        await self.commit()
        leftover = [task for tasks in self._tasks.values() for task in tasks]
        for task in [*helpers, *leftover]:
            task.cancel()
        for task in helpers:
            with contextlib.suppress(asyncio.CancelledError, Exception):
                await task
