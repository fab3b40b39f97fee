"""``maas monitor``: the join of captures and feedback as a process.

One consumer group (``maas-monitor``) over every tenant's capture and feedback topics,
range-assigned: the two topics of a namespace have the same partition count and are
keyed by ``job_id``, so one member owns both sides of a job. The join's state lives in
memory and is rebuilt from the topics: on each assignment the monitor reads its
partitions from their beginning (the capture topic's retention should be the join
window), so offsets are never committed. The rows it joins go to the registry in
batches (:meth:`~registry.quality.QualityStore.add_joined`), which counts a row only if
it was never counted: after a SIGKILL, the rows joined again are passed over and those
not yet written are written. The keys of counted rows are forgotten once their
captures can no longer be read again (:mod:`~workers.monitor.pruning`). Feedback that
cannot be decoded or scored goes to the dead-letter topic with the reason; no record
stops the monitor.
"""

from __future__ import annotations

import asyncio
import contextlib
import math
import re
import time
from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Protocol

import structlog
from aiokafka import AIOKafkaConsumer, ConsumerRebalanceListener, TopicPartition
from prometheus_client import Counter, Gauge

from producer.aiokafka_internals import RangePartitionAssignor
from producer.contract.messages import (
    DecodeError,
    ErrorCode,
    decode_capture,
    decode_feedback,
    encode,
)
from producer.contract.tenancy import monitor_topic_pattern, tenant_of_topic
from producer.kafka import KafkaSettings, ensure_topics
from registry.policy import AliasRollbacks
from registry.quality import Joined
from workers.kafka.clients import Clients, Stopped, connected, poll, unless_stopped
from workers.kafka.publisher import Outgoing, Publisher, Record, source_of
from workers.kafka.topics import ClusterTopics, keep_service_topics
from workers.monitor.drifting import DriftWatch
from workers.monitor.join import JoinSettings, JoinState, Labelled, Refused
from workers.monitor.pruning import JoinsStore, PruneSettings, keep_pruning
from workers.monitor.rollback import AccuracyPolicy, QualityReader, check_accuracy
from workers.monitor.scoring import contribution
from workers.tenancy.audit import RefusalAudit, RefusalLog

log = structlog.get_logger(__name__)

LABELLED = Counter(
    "maas_quality_labelled_rows",
    "Labelled rows counted, by model and version",
    ["model", "version"],
)
CORRECT = Counter(
    "maas_quality_correct_rows", "Labelled rows predicted right (classifiers)", ["model", "version"]
)
FEEDBACK = Counter(
    "maas_monitor_rows",
    "What became of labelled rows and captures: joined, duplicate, unmatched, overflow, "
    "refused, ...",
    ["outcome"],
)
PENDING = Gauge("maas_monitor_pending", "Captures and labelled jobs waiting to be joined")
DEAD_LETTERED = Counter("maas_monitor_dead_letters", "Records the monitor dead-lettered")


class QualityWriter(QualityReader, JoinsStore, Protocol):
    """What the monitor asks of the registry's quality store."""

    def add_joined(self, joined: Sequence[Joined]) -> list[Joined]: ...


@dataclass(frozen=True, slots=True)
class MonitorSettings:
    """How the monitor joins and writes. Built once at the entrypoint."""

    group_id: str = "maas-monitor"
    join: JoinSettings = field(default_factory=JoinSettings)
    window_s: int = 3600  # quality windows: one per model, version and hour
    flush_s: float = 1.0  # joined rows are written at least this often
    flush_rows: int = 5000  # or as soon as this many wait
    # Roll back a promoted version on labelled accuracy (None: never).
    rollback: AccuracyPolicy | None = field(default_factory=AccuracyPolicy)
    rollback_check_s: float = 5.0  # how often each model with new labelled rows is judged
    actor: str = "quality-rollback"
    topic_check_interval_s: float = 10.0  # how often missing service topics are looked for
    # Counted joins past their horizon forgotten (None: kept for ever).
    prune: PruneSettings | None = field(default_factory=PruneSettings)


class _Rebalance(ConsumerRebalanceListener):  # type: ignore[misc]
    def __init__(self, monitor: Monitor) -> None:
        self._monitor = monitor

    async def on_partitions_revoked(self, revoked: set[TopicPartition]) -> None:
        await self._monitor.flush()

    async def on_partitions_assigned(self, assigned: set[TopicPartition]) -> None:
        await self._monitor.rewind(assigned)


class Monitor:
    """One member of the monitor group. ``run`` returns after ``stop`` is set."""

    def __init__(
        self,
        kafka: KafkaSettings,
        store: QualityWriter,
        settings: MonitorSettings,
        *,
        models: AliasRollbacks | None = None,
        refusals: RefusalLog | None = None,
        drift: DriftWatch | None = None,
    ) -> None:
        """``models``: the model store that rolls an alias back (None: no rollbacks);
        ``refusals``: the audit log of refused feedback (None: only logged); ``drift``:
        drift windows and the policies acting on them (None: no drift)."""
        self.kafka, self.store, self.settings, self.models = kafka, store, settings, models
        self.drift = drift
        self._judged_at: dict[str, float] = {}  # model → when its accuracy was last judged
        self._unjudged: set[str] = set()  # models with rows counted since
        self.audit = RefusalAudit(refusals, actor=settings.actor)
        self.state = JoinState(settings.join)
        self._joined: list[Joined] = []
        self._flushed_at = time.monotonic()
        self._consumer: AIOKafkaConsumer | None = None
        self._publisher: Publisher | None = None
        self.ready = asyncio.Event()

    async def run(self, stop: asyncio.Event) -> None:
        clients = Clients(
            re.compile(monitor_topic_pattern(self.kafka.topics.prefix)),
            group=self.settings.group_id,
            listener=_Rebalance(self),
            consumer_options={
                "partition_assignment_strategy": (RangePartitionAssignor,),
                "isolation_level": "read_committed",
                "max_poll_records": 5000,
            },
        )
        try:
            capabilities = await unless_stopped(ensure_topics(self.kafka), stop)
            async with connected(self.kafka, capabilities, clients, stop=stop) as (
                consumer,
                publisher,
            ):
                self._consumer, self._publisher = consumer, publisher
                log.info("monitor started", group=self.settings.group_id)
                cluster = ClusterTopics(publisher.client)
                interval = self.settings.topic_check_interval_s
                helpers = [
                    asyncio.create_task(self.audit.run()),
                    # a capture or feedback topic deleted is created again
                    asyncio.create_task(
                        keep_service_topics(self.kafka, cluster, interval_s=interval)
                    ),
                ]
                if self.settings.prune is not None:
                    window_ms = self.settings.join.window_ms
                    pruning = keep_pruning(self.store, window_ms, self.settings.prune)
                    helpers.append(asyncio.create_task(pruning))
                try:
                    await self._poll(consumer, stop)
                    await self.flush()
                finally:
                    for task in helpers:
                        task.cancel()
                    for task in helpers:
                        with contextlib.suppress(asyncio.CancelledError):
                            await task
        except Stopped:
            log.info("monitor stopped while starting")
        log.info("monitor stopped")

    async def _poll(self, consumer: AIOKafkaConsumer, stop: asyncio.Event) -> None:
        stopping = asyncio.ensure_future(stop.wait())
        try:
            while not stop.is_set():
                batch = await poll(consumer, stopping, timeout_ms=200)
                if consumer.assignment():
                    self.ready.set()
                for records in batch.values():
                    await self.take(records)
                if (
                    len(self._joined) >= self.settings.flush_rows
                    or time.monotonic() - self._flushed_at >= self.settings.flush_s
                ):
                    await self.flush()
        finally:
            stopping.cancel()

    async def rewind(self, assigned: set[TopicPartition]) -> None:
        """Start the join again from the beginning of the partitions now assigned."""
        self.state = JoinState(self.settings.join)
        if self.drift is not None:
            self.drift.reset()
        if assigned and self._consumer is not None:
            await self._consumer.seek_to_beginning(*assigned)
        log.info("partitions assigned; reading them from the start", partitions=len(assigned))

    async def take(self, records: Sequence[Record]) -> None:
        """Join a partition's share of a poll; dead-letter what cannot be scored."""
        letters = []
        for record in records:
            outcome = self._one(record)
            if isinstance(outcome, Refused):
                letters.append((record, outcome.reason))
                if outcome.audit is not None:
                    tenant = tenant_of_topic(self.kafka.topics.prefix, record.topic)
                    self.audit.refused(tenant, outcome.audit, job_id=_key(record))
            else:
                self._joined.extend(contribution(row, self.settings.window_s) for row in outcome)
        PENDING.set(len(self.state))
        if letters:
            await self._dead_letter(letters)

    def _one(self, record: Record) -> list[Labelled] | Refused:
        prefix = self.kafka.topics.prefix
        tenant = tenant_of_topic(prefix, record.topic)
        try:
            if record.topic.endswith("capture"):
                capture = decode_capture(record.value or b"")
                if self.drift is not None:
                    self.drift.tracker.capture(capture)
                return self.state.capture(capture)
            feedback = decode_feedback(record.value or b"")
        except DecodeError as exc:
            return Refused(f"not a valid {record.topic.rsplit('.', 1)[-1]} record: {exc}")
        ts = getattr(record, "timestamp", 0) or feedback.ts_ms
        return self.state.feedback(tenant, feedback, ts)

    async def _dead_letter(self, letters: list[tuple[Record, str]]) -> None:
        assert self._publisher is not None
        publisher = self._publisher
        out = [
            publisher.dead_letter_of(source_of(r), code=ErrorCode.INVALID_INPUT, reason=why)
            for r, why in letters
        ]
        DEAD_LETTERED.inc(len(out))
        errors = await publisher.send_many(out)
        for error in errors:
            if error is not None:
                log.warning("dead letter not published", error=str(error))

    async def flush(self) -> None:
        """Write the joined rows to the registry (kept for the next try if it is away)."""
        self._flushed_at = time.monotonic()
        self._count_outcomes()
        if self._joined:
            await self._write()
        await self.judge()
        await self._close_drift_windows()

    async def _close_drift_windows(self) -> None:
        """Write the drift windows that closed; publish the retrain jobs policies fire."""
        if self.drift is None:
            return
        try:
            jobs = await asyncio.to_thread(self.drift.close_windows)
        except Exception as exc:  # the registry away: the windows are judged again later
            log.warning("drift windows not written", error=str(exc))
            return
        if jobs and self._publisher is not None:
            topic = self.kafka.topics.retrain
            out = [Outgoing(topic, encode(job), job.model.encode()) for job in jobs]
            for error in await self._publisher.send_many(out):
                if error is not None:
                    log.error("policy retrain job not published", error=str(error))

    async def _write(self) -> None:
        pending, self._joined = self._joined, []
        try:
            counted = await asyncio.to_thread(self.store.add_joined, pending)
        except Exception as exc:
            log.warning("joined rows not written; trying again", error=str(exc), rows=len(pending))
            self._joined = pending + self._joined
            return
        for item in counted:
            labels = (item.window.model, str(item.window.version))
            LABELLED.labels(*labels).inc()
            if item.window.correct:
                CORRECT.labels(*labels).inc()
            self._unjudged.add(item.window.model)

    async def judge(self) -> None:
        """Judge the labelled accuracy of each model with new rows (at most every
        ``rollback_check_s``): roll its alias back if the policy says so."""
        policy, models = self.settings.rollback, self.models
        if policy is None or models is None:
            return
        now = time.monotonic()
        for name in sorted(self._unjudged):
            if now - self._judged_at.get(name, -math.inf) < self.settings.rollback_check_s:
                continue
            self._judged_at[name] = now
            self._unjudged.discard(name)
            try:
                move = await asyncio.to_thread(
                    check_accuracy,
                    models,
                    self.store,
                    name,
                    policy=policy,
                    actor=self.settings.actor,
                )
            except Exception as exc:
                log.warning("labelled accuracy not judged", model=name, error=str(exc))
                continue
            if move is not None:
                log.warning(
                    "rolled back on labelled accuracy",
                    model=name,
                    alias=move.alias,
                    version=move.version,
                    previous_version=move.previous_version,
                    reason=move.reason,
                )

    def _count_outcomes(self) -> None:
        for outcome, count in self.state.counts.items():
            FEEDBACK.labels(outcome).inc(count)
        self.state.counts.clear()


def _key(record: Record) -> str | None:
    return None if record.key is None else record.key.decode(errors="replace")


async def readiness(monitor: Monitor) -> str | None:
    """Why ``monitor`` is not ready (no partitions yet), or None."""
    return None if monitor.ready.is_set() else "the monitor has no partitions yet"
