"""The retraining scheduler: turns due schedules and bad metrics into retrain jobs.

Every ``interval_s`` a tick does two things:

* **Schedules.** ``RunStore.claim_due(now)`` hands each due time of each schedule to
  exactly one caller, however many schedulers race (the claim is a committed row).
  The claimer then publishes one RetrainJob with ``trigger="schedule"`` and
  ``job_id = schedule.job_id(due)``. Publishing happens after the claim commits: if
  the broker refuses the job, the fire is logged as lost (loudly) and not retried;
  the next due time fires normally. A duplicate publish is harmless because the
  trainer is idempotent by ``job_id``.
* **Metric trigger.** For each model with a production version, its metric windows of
  the last ``window_s`` are summed; when they hold at least ``min_jobs`` jobs and the
  error rate exceeds ``max_error_rate``, a RetrainJob with ``trigger="metric"`` is
  published. At most one per model per ``cooldown_s``, remembered in this process's
  memory only (a restarted scheduler, or each of several, may fire once more).
"""

from __future__ import annotations

import asyncio
import contextlib
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from typing import Protocol

import structlog
from aiokafka import AIOKafkaProducer
from aiokafka.errors import KafkaError
from prometheus_client import Counter

from producer.contract.messages import Dataset, RetrainJob, encode
from producer.kafka import KafkaSettings, ensure_topics
from registry.entities import MetricWindow, Schedule
from registry.errors import RegistryError
from registry.policy import Totals

log = structlog.get_logger(__name__)

Clock = Callable[[], datetime]

FIRES = Counter(
    "maas_scheduler_fires",
    "Retrain jobs the scheduler published (outcome=published) or claimed and lost",
    ["model", "trigger", "outcome"],
)


class DueSchedules(Protocol):
    """What the scheduler asks of the run store: claim the schedules due now."""

    def claim_due(self, now: datetime) -> list[tuple[Schedule, datetime]]: ...


class AliasWindows(Protocol):
    """What the metric trigger asks of the metric store: what production served lately."""

    def alias_windows(
        self, alias: str, since: datetime
    ) -> dict[tuple[str, int], list[MetricWindow]]: ...


def utc_now() -> datetime:
    return datetime.now(UTC)


@dataclass(frozen=True, slots=True)
class MetricTrigger:
    """When a production version's recent serving metrics call for a retrain."""

    max_error_rate: float = 0.05
    min_jobs: int = 20
    window_s: float = 300.0
    cooldown_s: float = 3600.0


@dataclass(frozen=True, slots=True)
class SchedulerSettings:
    """How one scheduler process runs. Built once at the entrypoint."""

    interval_s: float = 5.0
    metric: MetricTrigger | None = field(default_factory=MetricTrigger)


def schedule_job(schedule: Schedule, due: datetime) -> RetrainJob:
    """The RetrainJob of ``schedule``'s fire due at ``due`` (same id in every scheduler)."""
    dataset = None
    if schedule.dataset:
        dataset = Dataset(uri=schedule.dataset.get("uri"), name=schedule.dataset.get("name"))
    promote = schedule.promote if schedule.promote in ("gate", "never", "always") else "gate"
    return RetrainJob(
        job_id=schedule.job_id(due),
        model=schedule.model,
        dataset=dataset,
        params=dict(schedule.params),
        trigger="schedule",
        promote=promote,  # type: ignore[arg-type]
    )


class Scheduler:
    """Publishes retrain jobs for due schedules and breached metrics; see the module doc."""

    def __init__(
        self,
        kafka: KafkaSettings,
        schedules: DueSchedules,
        metrics: AliasWindows,
        settings: SchedulerSettings,
        *,
        clock: Clock = utc_now,
    ) -> None:
        self.kafka = kafka
        self.schedules = schedules
        self.metrics = metrics
        self.settings = settings
        self.clock = clock
        self._last_metric_fire: dict[str, float] = {}  # model -> monotonic time
        self.ticked_at: float | None = None  # monotonic time of the last tick that worked

    async def readiness(self) -> str | None:
        """Why the scheduler is not ready: no tick reached the registry lately (three
        intervals, 30 s at least). None when it is ready."""
        if self.ticked_at is None:
            return "no tick has reached the registry yet"
        late = time.monotonic() - self.ticked_at
        if late > max(3 * self.settings.interval_s, 30.0):
            return f"no tick has reached the registry for {late:.0f} s"
        return None

    async def run(self, stop: asyncio.Event) -> None:
        capabilities = await ensure_topics(self.kafka)
        producer = AIOKafkaProducer(**self.kafka.producer(capabilities))
        await producer.start()
        log.info("scheduler started", interval_s=self.settings.interval_s)
        try:
            while not stop.is_set():
                try:
                    await self.tick(producer)
                    self.ticked_at = time.monotonic()
                except RegistryError as exc:
                    log.error("scheduler tick failed; retrying next tick", error=str(exc))
                with contextlib.suppress(TimeoutError):
                    await asyncio.wait_for(stop.wait(), self.settings.interval_s)
        finally:
            await producer.stop()
            log.info("scheduler stopped")

    async def tick(self, producer: AIOKafkaProducer) -> list[RetrainJob]:
        """One round: claim due schedules, check metrics; returns the jobs published."""
        now = self.clock()
        jobs = [
            schedule_job(s, due)
            for s, due in await asyncio.to_thread(self.schedules.claim_due, now)
        ]
        if self.settings.metric is not None:
            jobs += await asyncio.to_thread(self.metric_jobs, self.settings.metric, now)
        published = []
        for job in jobs:
            if await self._publish(producer, job):
                published.append(job)
        return published

    def metric_jobs(self, trigger: MetricTrigger, now: datetime) -> list[RetrainJob]:
        """Retrain jobs for models whose production version breaches ``trigger``."""
        jobs = []
        since = now - timedelta(seconds=trigger.window_s)
        served = self.metrics.alias_windows("production", since)
        for (model, version), windows in served.items():
            if self._cooling_down(model, trigger):
                continue
            totals = Totals.of(windows)
            if totals.jobs < trigger.min_jobs or totals.error_rate <= trigger.max_error_rate:
                continue
            log.warning(
                "error rate over the limit; publishing a retrain job",
                model=model,
                version=version,
                error_rate=round(totals.error_rate, 4),
                jobs=totals.jobs,
            )
            self._last_metric_fire[model] = time.monotonic()
            jobs.append(
                RetrainJob(
                    job_id=f"metric-{model}-{now.strftime('%Y%m%dT%H%M%SZ')}",
                    model=model,
                    trigger="metric",
                )
            )
        return jobs

    def _cooling_down(self, model: str, trigger: MetricTrigger) -> bool:
        last = self._last_metric_fire.get(model)
        return last is not None and time.monotonic() - last < trigger.cooldown_s

    async def _publish(self, producer: AIOKafkaProducer, job: RetrainJob) -> bool:
        try:
            await producer.send_and_wait(
                self.kafka.topics.retrain, encode(job), key=job.model.encode()
            )
        except KafkaError as exc:
            log.error(
                "RETRAIN JOB LOST: claimed but not published; it will not be retried",
                job_id=job.job_id,
                model=job.model,
                error=str(exc),
            )
            FIRES.labels(job.model, job.trigger, "lost").inc()
            return False
        log.info("retrain job published", job_id=job.job_id, model=job.model, trigger=job.trigger)
        FIRES.labels(job.model, job.trigger, "published").inc()
        return True
