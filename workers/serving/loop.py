"""The consume → batch → infer → reply loop, honest about offsets.

Poll; hand each partition's share of the poll to one task that checks and decodes the
records (:mod:`workers.serving.edge`: one bad record costs one answer), queues their jobs on
the batchers together and publishes the answers together; pause the partitions when
too many jobs are in flight or a model's queue holds several batches; commit only the
prefix of each partition whose records are all answered (:mod:`workers.serving.delivery`:
answers published at once and offsets committed after them, at-least-once; or, with
``exactly_once``, both in Kafka transactions, :mod:`workers.serving.transactions`). A job
that fails with a retriable error (its batcher closed, the registry unreachable) is
held back: the commit point stops before it, and it is read again after a backoff by
seeking its partition back to it (records answered or in flight are passed over);
after ``retry.attempts`` tries it is answered with its error. Records aiokafka cannot
decode are read raw (:mod:`workers.kafka.unreadable`). Revoked partitions are drained (or
abandoned after a timeout, uncommitted) before they are released; the stop event
(SIGTERM, SIGINT) ends start-up and polls waiting on a rebalance at once."""

from __future__ import annotations

import asyncio
import contextlib
import time
from collections.abc import Coroutine, Iterable, Sequence
from dataclasses import dataclass, field
from typing import Any, TypeVar

import structlog
from aiokafka import AIOKafkaConsumer, AIOKafkaProducer, ConsumerRebalanceListener, TopicPartition
from aiokafka.errors import KafkaError

from producer.capabilities import Capabilities
from producer.contract.messages import ControlEvent, Result, encode
from producer.contract.tenancy import tenant_of_topic
from producer.kafka import KafkaSettings, ensure_topics
from workers import defaults
from workers.batching.batcher import BatchConfig
from workers.kafka.clients import (
    Clients,
    RetrySettings,
    Standby,
    Stopped,
    connected,
    poll,
    unless_stopped,
    with_worker_id,
)
from workers.kafka.idle import IdleBackoff
from workers.kafka.publisher import (
    DEFAULT_MAX_RECORD_BYTES,
    Outgoing,
    Publisher,
    PublishFailed,
    Record,
)
from workers.kafka.topics import ClusterTopics, keep_service_topics
from workers.kafka.unreadable import RawRecord, salvage
from workers.runtime.loader import RuntimeSettings
from workers.serving.capture import Capture, CaptureSettings
from workers.serving.delivery import AtLeastOnce, Delivery, Replies
from workers.serving.edge import Accepted, Edge
from workers.serving.flow import pace, redeliver_due
from workers.serving.handler import JobHandler, Retry
from workers.serving.heap import freeze_long_lived
from workers.serving.metrics import MetricsRecorder
from workers.serving.models import ModelCache
from workers.serving.offsets import OffsetTracker
from workers.serving.pools import PinnedPools, PoolShare, announcement
from workers.serving.rollback import RollbackSettings, RollbackWatcher
from workers.serving.session import Session
from workers.serving.stores import ServedMetrics, ServedModels
from workers.serving.transactions import ExactlyOnce, transactional_id
from workers.tenancy.control import from_another_registry
from workers.tenancy.guard import Guard, TenancySettings, TenantStore

log = structlog.get_logger(__name__)

R = TypeVar("R", bound=Record)


@dataclass(frozen=True, slots=True)
class WorkerSettings:
    """How one worker process serves. Built once at the entrypoint."""

    models: tuple[str, ...] = ()  # empty: every registered model, loaded on demand
    group_id: str = defaults.GROUP_ID
    batch: BatchConfig = field(default_factory=BatchConfig)
    runtime: RuntimeSettings = field(default_factory=RuntimeSettings)
    max_in_flight: int = defaults.MAX_IN_FLIGHT  # jobs; polling pauses above it, resumes at half
    # Polling also pauses while a model's queue holds this many full batches, and resumes
    # at half: fetching further ahead only adds memory and redelivered jobs after a
    # crash, and on the embedded broker an idle fetch loop costs CPU the model needs.
    max_queued_batches: float = 4.0
    max_poll_records: int = 1000
    # A job record over this many bytes is answered TOO_LARGE before it is decoded.
    # Above Kafka's default of 1 MiB, the broker's message.max.bytes must be raised
    # too: the worker's producer then sends records this large (results, dead letters).
    max_job_bytes: int = DEFAULT_MAX_RECORD_BYTES
    # Results can be large (an embedding is ~8 KB of JSON). At aiokafka's default 16 KB
    # a produce request per partition carried two of them and publishing, not the
    # model, set the pace (MiniLM on an H200: 1.3k rows/s with inference idle 95%).
    # Half of Kafka's default message.max.bytes keeps every batch acceptable.
    producer_batch_bytes: int = 512 * 1024
    commit_interval_s: float = (
        defaults.COMMIT_INTERVAL_S
    )  # at-least-once; exactly-once commits as answers come
    # Each poll's answers and consumed offsets in one Kafka transaction (Apache Kafka
    # only): read_committed readers see each job answered once, even after a crash.
    exactly_once: bool = defaults.EXACTLY_ONCE
    # Which Kafka client library consumes and produces: "aiokafka" or "librdkafka"
    # (confluent-kafka; workers/kafka/rdkafka_*.py).
    transport: str = defaults.TRANSPORT
    drain_timeout_s: float = 30.0
    metrics_interval_s: float = 10.0
    alias_ttl_s: float = 5.0
    # How often missing service topics (a tenant's too) are looked for and created
    # again; the embedded broker acknowledges writes to a deleted topic, so this bounds
    # how long answers there can vanish unseen.
    topic_check_interval_s: float = 2.0
    standby_report_s: float = 15.0  # a worker without partitions this long says why
    # The general pool (no models) reads the consumer groups this often to learn which
    # models pinned pools serve, and leaves their jobs to them (workers/serving/pools.py).
    pool_check_interval_s: float = 2.0
    # Who answers, in Results and the audit log; default: host:pid of the process
    # that serves. With exactly-once, it also names the transactional ids (default:
    # the host's name), so it must stay the same across restarts.
    worker_id: str = ""
    registry: str = ""  # the registry read (RegistrySettings.identity), to compare with events'
    rollback: RollbackSettings = field(default_factory=RollbackSettings)
    retry: RetrySettings = field(default_factory=RetrySettings)
    tenancy: TenancySettings = field(default_factory=TenancySettings)
    capture: CaptureSettings = field(default_factory=CaptureSettings)

    @property
    def group(self) -> str:
        """Pools that serve different models consume in different groups."""
        if not self.models:
            return self.group_id
        return f"{self.group_id}.{'+'.join(sorted(self.models))}"

    @property
    def max_record_bytes(self) -> int:
        """The largest record the worker publishes: as large as the jobs it takes, and
        Kafka's default at least."""
        return max(self.max_job_bytes, DEFAULT_MAX_RECORD_BYTES)


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
        *,
        slot: int = 0,
        tenants: TenantStore | None = None,
    ) -> None:
        """``slot``: this process's place in its pool, which names its transactional id;
        ``tenants``: the registry's tenants, whose grants named tenants' jobs need.
        Nothing is captured until ``capture.follow`` names the capture policies' store."""
        self.transactional_id = (
            transactional_id(kafka.topics.prefix, settings.group, settings.worker_id, slot)
            if settings.exactly_once
            else None
        )
        settings = with_worker_id(settings)
        self.kafka = kafka
        self.settings = settings
        self.guard = Guard.of(kafka, tenants, settings.tenancy, settings.worker_id)
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
        self.pinned = (
            None if settings.models else PinnedPools(interval_s=settings.pool_check_interval_s)
        )
        self.handler = JobHandler(self.models, self.metrics, worker=settings.worker_id)
        self.capture = Capture(kafka.topics.prefix, settings.capture)
        self._tasks: dict[TopicPartition, set[asyncio.Task[None]]] = {}
        # Partitions with records held back, and when to read them again (monotonic s).
        self._redeliveries: dict[TopicPartition, float] = {}
        # What run() serves with, for rebalances and probes (None: not connected yet).
        self._session: Session | None = None
        self.ready = asyncio.Event()

    @property
    def consumer(self) -> AIOKafkaConsumer | None:
        """The group member, once :meth:`run` has started it (probes read its partitions)."""
        return None if self._session is None else self._session.consumer

    async def run(self, stop: asyncio.Event) -> None:
        """Serve until ``stop`` is set, then drain; ``stop`` also ends start-up early."""
        settings = self.settings
        clients = Clients(
            self.guard.job_topics("predict"),
            group=settings.group,
            listener=_Rebalance(self),
            batch_bytes=settings.producer_batch_bytes,
            max_record_bytes=settings.max_record_bytes,
            transactional_id=self.transactional_id,
            consumer_options={"max_poll_records": settings.max_poll_records},
        )
        try:
            capabilities = await unless_stopped(ensure_topics(self.kafka), stop)
            connect = connected
            if settings.transport == "librdkafka":  # the rdkafka extra: imported only here
                from workers.kafka.rdkafka_clients import connected_rdkafka as connect
            async with connect(self.kafka, capabilities, clients, stop=stop) as (
                consumer,
                publisher,
            ):
                session = self._session = self._open(consumer, publisher, stop)
                topics, interval = session.topics, settings.topic_check_interval_s
                helpers = [
                    asyncio.create_task(session.delivery.run()),
                    asyncio.create_task(self.metrics.run()),
                    asyncio.create_task(self.guard.run(self.kafka, capabilities, self._on_control)),
                    asyncio.create_task(
                        keep_service_topics(self.kafka, topics, interval_s=interval)
                    ),
                    asyncio.create_task(
                        self.capture.run(None if self.transactional_id else publisher)
                    ),
                ]
                with contextlib.suppress(KafkaError):  # else the first jobs ask for it
                    await topics.refresh(time.monotonic())  # results topics are checked
                if settings.models:  # a pinned pool: say so, for the general pool
                    helpers.append(asyncio.create_task(self._announce(publisher, capabilities)))
                freeze_long_lived()
                log.info(
                    "worker started",
                    worker=settings.worker_id,
                    group=settings.group,
                    transactional_id=self.transactional_id,
                )
                try:
                    await self._poll(session, stop)
                finally:
                    await self._wind_down(session, helpers)
        except Stopped:
            log.info("stopped while starting", worker=settings.worker_id)
        finally:
            await self.models.aclose()
            log.info("worker stopped", worker=settings.worker_id)

    def _open(
        self, consumer: AIOKafkaConsumer, publisher: Publisher, stop: asyncio.Event
    ) -> Session:
        """The session over the connected clients (``stop``: exactly-once's to set)."""
        settings = self.settings
        delivery: Delivery
        if self.transactional_id is not None:
            delivery = ExactlyOnce(publisher, self.tracker, settings.group, stop)
        else:
            delivery = AtLeastOnce(consumer, publisher, self.tracker, settings.commit_interval_s)
        topics = ClusterTopics(publisher.client, always=[self.kafka.topics.results])
        edge = Edge(
            publisher,
            topics,
            self.guard,
            models=PoolShare(frozenset(settings.models), self.pinned),
            max_job_bytes=settings.max_job_bytes,
            worker=settings.worker_id,
        )
        return Session(consumer, publisher, delivery, topics, edge)

    async def _poll(self, session: Session, stop: asyncio.Event) -> None:
        settings, consumer = self.settings, session.consumer
        standby = Standby(
            consumer, self.kafka.topics.predict, settings.group, settings.standby_report_s
        )
        stopping = asyncio.ensure_future(stop.wait())  # also ends a poll that waits
        # Cheap empty fetches while no jobs come (librdkafka fetches in its own threads).
        idle = IdleBackoff(consumer) if settings.transport == "aiokafka" else None
        try:
            while not stop.is_set():
                # Paused, the poll returns nothing; come back soon to resume in time.
                timeout_ms = 10 if consumer.paused() else 100
                try:
                    batch = await poll(consumer, stopping, timeout_ms=timeout_ms)
                except UnicodeDecodeError:  # a header key aiokafka cannot decode
                    await self._salvage(session)
                    continue
                if idle is not None:
                    idle.polled(bool(batch))
                if consumer.assignment():
                    self.ready.set()
                standby.check()
                received = time.time()
                for tp, records in batch.items():
                    if kept := self._admitted(tp, records):
                        self._spawn(tp, self._process(session, tp, kept, received))
                if batch:
                    await asyncio.sleep(0)  # the tasks queue their jobs: pace sees them
                if self._redeliveries:
                    redeliver_due(consumer, self._redeliveries, self.tracker)
                pace(consumer, self.tracker.in_flight(), self.models.batchers(), settings)
        finally:
            stopping.cancel()

    def _admitted(self, tp: TopicPartition, records: Sequence[R]) -> list[R]:
        """``records`` tracked in flight, less those read again after a seek that are
        answered or in flight already."""
        if self.tracker.seen(tp, records[0].offset):  # read again after a seek
            return [r for r in records if self.tracker.reread(tp, r.offset)]
        for record in records:
            self.tracker.track(tp, record.offset)
        return list(records)

    def _spawn(self, tp: TopicPartition, work: Coroutine[Any, Any, None]) -> None:
        """Run ``work`` on records of ``tp`` in a task: one per partition's share of a
        poll, not per record (a task, a lock and a send per job cost more than
        decoding and inference)."""
        task = asyncio.create_task(work)
        tasks = self._tasks.setdefault(tp, set())
        tasks.add(task)
        task.add_done_callback(tasks.discard)

    async def _salvage(self, session: Session) -> None:
        """Get past records whose header keys aiokafka cannot decode: read the
        partitions raw, answer the readable records, dead-letter the others."""
        client, max_bytes = session.publisher.client, self.settings.max_record_bytes
        found = await salvage(session.consumer, client, self.tracker.resume_at, max_bytes=max_bytes)
        received = time.time()
        for tp, records in found.items():
            kept: list[RawRecord] = self._admitted(tp, records)
            readable = [r for r in kept if not r.unreadable]
            self._spawn(tp, self._process(session, tp, readable, received))
            self._spawn(tp, self._dead_letter(session, tp, [r for r in kept if r.unreadable]))

    async def _process(
        self, session: Session, tp: TopicPartition, records: Sequence[Record], received: float
    ) -> None:
        """Answer a partition's records from one poll and hand the answers over."""
        captured: list[Outgoing] = []
        try:
            replies = await self._replies(session, tp, records, received, captured)
            await session.delivery.deliver(tp, replies)
        except Exception as exc:  # a bug: dead-letter rather than hang the partition
            log.exception("unexpected failure answering records", partition=tp.partition)
            await session.delivery.fail(tp, records, exc)
        for message in captured:  # after the answers: capture never delays one
            self.capture.offer(message)

    async def _dead_letter(
        self, session: Session, tp: TopicPartition, records: Sequence[Record]
    ) -> None:
        await session.delivery.deliver(tp, [(r, session.edge.unreadable(r)) for r in records])

    async def _replies(
        self,
        session: Session,
        tp: TopicPartition,
        records: Sequence[Record],
        received: float,
        captured: list[Outgoing],
    ) -> Replies:
        """Each record with what answers it (None: another pool's job, nothing to send),
        less the records held back to be read again; ``captured`` gets the capture
        records to publish once the answers went (at-least-once)."""
        edge = session.edge
        admitted = await edge.admit(records)
        # No per-job context binding here: it costs more than the rest of the hot path;
        # the few log lines about a job name job_id themselves.
        jobs = [each.job for each in admitted if isinstance(each, Accepted)]
        tenant = self.guard.namespace(tp.topic).tenant
        outcomes = iter(await self.handler.answer_many(jobs, received, tenant=tenant))
        replies: list[tuple[Record, Outgoing | None]] = []
        for each in admitted:
            if not isinstance(each, Accepted):
                replies.append((each.record, each.reply))
                continue
            result = self._result(tp, each.record, next(outcomes), received)
            if result is not None:  # else held back, to be read again
                replies.append((each.record, edge.answer(each.record, each.job, result)))
                self._capture(session.delivery, tp, each, result, captured)
        return replies

    def _capture(
        self,
        delivery: Delivery,
        tp: TopicPartition,
        accepted: Accepted,
        result: Result,
        captured: list[Outgoing],
    ) -> None:
        """Capture an answered job, as its model's policy says (never fails the job):
        in the answer's transaction (exactly-once), else into ``captured``."""
        record, job = accepted.record, accepted.job
        try:
            tenant = tenant_of_topic(self.kafka.topics.prefix, record.topic)
            message = self.capture.record(tenant, job, result)
        except Exception:
            log.exception("capture failed; the answer goes out without it", job_id=job.job_id)
            return
        if message is None:
            return
        if isinstance(delivery, ExactlyOnce):
            delivery.attach(tp, record.offset, message)
        else:
            captured.append(message)

    def _result(
        self, tp: TopicPartition, record: Record, retry: Result | Retry, received: float
    ) -> Result | None:
        """A job's Result; for one that failed with a retriable error, None: held back to
        be read again, or once it has been tried ``retry.attempts`` times more, its error."""
        if not isinstance(retry, Retry):
            return retry
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

    async def commit(self, tps: Iterable[TopicPartition] | None = None) -> None:
        """Commit what is answered (of ``tps``; default: every partition)."""
        if self._session is not None:
            await self._session.delivery.commit(tps)

    async def release(self, revoked: set[TopicPartition]) -> None:
        """Drain revoked partitions (bounded), commit what is answered, then let go."""
        if not revoked:
            return
        await self._drain(revoked)
        abandoned = self.tracker.in_flight(revoked)
        if self._session is not None:
            await self._session.delivery.release(revoked)
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

    async def _announce(self, publisher: Publisher, capabilities: Capabilities) -> None:
        """Tell the general pool, every ``pool_check_interval_s``, which models this
        pinned pool serves (workers/serving/pools.py). A transactional worker announces
        through a plain producer of its own: its own sends only inside transactions."""
        settings = self.settings
        own = None
        if self.transactional_id:
            own = AIOKafkaProducer(**self.kafka.producer(capabilities, linger_ms=0))
            await own.start()
        try:
            while True:
                event = announcement(settings.models, settings.worker_id)
                value, key = encode(event), event.model.encode()
                try:
                    if own is not None:
                        await own.send_and_wait(self.kafka.topics.control, value, key=key)
                    elif errors := [
                        e
                        for e in await publisher.send_many(
                            [Outgoing(self.kafka.topics.control, value, key)]
                        )
                        if e is not None
                    ]:
                        raise errors[0]
                except (KafkaError, PublishFailed) as exc:
                    log.warning("pinned pool not announced", error=str(exc))
                await asyncio.sleep(settings.pool_check_interval_s)
        finally:
            if own is not None:
                await own.stop()

    def _on_control(self, event: ControlEvent) -> None:
        if event.event == "pool":  # a pinned pool is alive
            if self.pinned is not None:
                self.pinned.saw(event)
            return
        if event.event == "monitor":  # a capture policy changed
            self.capture.invalidate()
            return
        from_another_registry(event, self.settings.registry)
        self.models.invalidate(event.model)

    async def _wind_down(self, session: Session, helpers: list[asyncio.Task[None]]) -> None:
        """Stop polling, drain (bounded), commit what is answered, stop the helpers."""
        session.consumer.pause(*session.consumer.assignment())
        await self._drain(list(self._tasks))
        await session.delivery.commit()
        leftover = [task for tasks in self._tasks.values() for task in tasks]
        for task in [*helpers, *leftover]:
            task.cancel()
        for task in helpers:
            with contextlib.suppress(asyncio.CancelledError, Exception):
                await task
