"""The training worker: consume retrain jobs, train, gate, register, answer.

One job at a time per trainer. While a job trains (in a thread), the consumer's
partitions are paused and ``getmany`` keeps being called, so the member stays in
its group however long training takes. The offset is committed only after the
RetrainResult is acknowledged by the broker. A job that fails because the registry
is unreachable (a retriable error) is tried again after a backoff, a bounded number
of times (``TrainerSettings.retry``), before it is answered INTERNAL.

Retraining is idempotent by ``job_id``: a redelivered job whose run already finished
is answered from the stored run without training again; a run left "running" by a
crashed trainer is trained again (at most ``budget.max_attempts`` starts in all, then
answered INTERNAL), and the registry finishes a run at most once (in the same
transaction that registers its version), so a race never makes two versions. What a
job may spend (time, steps * parameters) and how a run is cancelled:
:mod:`~workers.training.budget`.
"""

from __future__ import annotations

import asyncio
import tempfile
import threading
import time
from dataclasses import dataclass, field, replace
from functools import partial
from pathlib import Path

import structlog
from aiokafka import AIOKafkaConsumer, TopicPartition
from prometheus_client import Counter

from producer.cluster import TRAINER_GROUP
from producer.contract.messages import (
    DecodeError,
    ErrorCode,
    RetrainJob,
    RetrainResult,
    decode_retrain,
    encode,
)
from producer.kafka import KafkaSettings, ensure_topics
from registry import Draft
from registry.entities import ModelVersion
from registry.errors import AliasNotFound, ConflictError, ModelNotFound, RegistryError
from registry.runs import RunOutcome
from workers.kafka.clients import (
    Clients,
    RetrySettings,
    commit,
    connected,
    dead_letter_unanswered,
    with_worker_id,
)
from workers.kafka.publisher import Publisher, PublishFailed, Record
from workers.optimize.retrain import Plan, Quantize, split_params
from workers.recipes import (
    ParamsError,
    Recipe,
    TrainRequest,
    recipe_for,
)
from workers.tenancy.grants import Denial
from workers.tenancy.guard import Access, Guard, TenancySettings, TenantStore
from workers.training.allowed import Allowed, Refused
from workers.training.answers import (
    error_result,
    from_run,
    ok_result,
    outside_namespace,
    reply_topic_and_denial,
)
from workers.training.budget import TrainBudget, cancel_watch, without_budget
from workers.training.evidence import check_split, judge
from workers.training.gate import GatePolicy, keep_clients
from workers.training.steps import Failure, plan_int8, train
from workers.training.stores import Registrar, RunLog

log = structlog.get_logger(__name__)


ANSWERED = Counter(
    "maas_retrain_jobs",
    "Retrain jobs answered, by status and by whether the version was promoted (the gate)",
    ["model", "status", "promoted"],
)


@dataclass(frozen=True, slots=True)
class TrainerSettings:
    """How one training worker runs. Built once at the entrypoint."""

    group_id: str = TRAINER_GROUP
    keepalive_s: float = 0.5  # how often getmany is called while a job trains
    min_improvement: float = 0.0  # the gate's required margin on the recipe's metric
    worker_id: str = ""  # default: host:pid
    retry: RetrySettings = field(default_factory=RetrySettings)
    allowed: Allowed = field(default_factory=Allowed)  # what jobs may ask for
    budget: TrainBudget = field(default_factory=TrainBudget)  # what one job may spend
    tenancy: TenancySettings = field(default_factory=TenancySettings)

    @property
    def actor(self) -> str:
        return f"trainer@{self.worker_id}"


def recipe_name(job: RetrainJob) -> str:
    """The job's recipe; else the model's name if it is a built-in recipe; else tabular."""
    return recipe_for(job.model, job.recipe)


class Trainer:
    """One member of the trainer group. ``run`` returns after ``stop`` is set."""

    def __init__(
        self,
        kafka: KafkaSettings,
        models: Registrar,
        runs: RunLog,
        settings: TrainerSettings,
        *,
        tenants: TenantStore | None = None,
    ) -> None:
        """``tenants``: the registry's tenants (None: only the default tenant's jobs run)."""
        settings = with_worker_id(settings)
        settings.allowed.load_recipes()
        self.kafka = kafka
        self.guard = Guard.of(kafka, tenants, settings.tenancy, settings.actor)
        self.models = models
        self.runs = runs
        self.settings = settings
        self.ready = asyncio.Event()
        self._publisher: Publisher | None = None
        # Runs this trainer started: starting one again is its own retry (the registry
        # failed), not a trainer that stopped, and never counts toward max_attempts.
        self._started: set[str] = set()

    async def readiness(self) -> str | None:
        """Why the trainer is not ready (None: it has joined its group and owns partitions)."""
        return None if self.ready.is_set() else "no retrain partitions assigned yet"

    async def run(self, stop: asyncio.Event) -> None:
        """Run every tenant's retrain jobs until ``stop`` is set."""
        settings = self.settings
        clients = Clients(self.guard.job_topics("retrain"), group=settings.group_id)
        capabilities = await ensure_topics(self.kafka)
        async with connected(self.kafka, capabilities, clients) as (consumer, publisher):
            self._publisher = publisher
            log.info("trainer started", worker=settings.worker_id, group=settings.group_id)
            guarding = asyncio.create_task(self.guard.run(self.kafka, capabilities))
            try:
                while not stop.is_set():
                    batch = await consumer.getmany(timeout_ms=200, max_records=1)
                    if consumer.assignment():
                        self.ready.set()
                    for tp, records in batch.items():
                        for record in records:
                            await self._handle(consumer, tp, record)
            finally:  # said only of a trainer that started: one that never did says why
                guarding.cancel()
                await asyncio.gather(guarding, return_exceptions=True)
                log.info("trainer stopped", worker=settings.worker_id)

    async def _handle(self, consumer: AIOKafkaConsumer, tp: TopicPartition, record: Record) -> None:
        """Process one record with the partitions paused, polling on; then commit it."""
        work = asyncio.create_task(self._process(record))
        consumer.pause(*consumer.assignment())
        try:
            while not work.done():
                await asyncio.wait({work}, timeout=self.settings.keepalive_s)
                if not work.done():
                    await _keep_alive(consumer)
        finally:
            consumer.resume(*consumer.paused())
        # A failed commit (the group moved on) leaves the job to be read again and
        # answered from its stored run, without training again.
        if work.result():
            await commit(consumer, {tp: record.offset + 1})

    async def _process(self, record: Record) -> bool:
        """Answer one record (or dead-letter it). True when it may be committed."""
        assert self._publisher is not None
        try:
            await self._answer(record)
        except PublishFailed as exc:
            return await dead_letter_unanswered(self._publisher, record, exc)
        return True

    async def _answer(self, record: Record) -> None:
        assert self._publisher is not None
        access = await self.guard.access(record.topic)
        try:
            job = decode_retrain(record.value or b"")
        except DecodeError as exc:
            await self._reject(record, exc, access)
            return
        with structlog.contextvars.bound_contextvars(
            job_id=job.job_id, model=job.model, partition=record.partition, offset=record.offset
        ):
            reply_to, denial = reply_topic_and_denial(job, access)
            try:
                if denial is not None:
                    result = self._refuse(job, access, denial)
                else:
                    result = await self._execute_retrying(job, access)
            except Exception:  # this job's failure (a bug, a refusing database), not the trainer's
                log.exception("retrain job failed unexpectedly")
                message = "the trainer failed on this job; its log says why"
                result = error_result(job.job_id, job.model, ErrorCode.INTERNAL, message)
            await self._publisher.send(
                reply_to,
                encode(result),
                key=job.job_id.encode(),
                headers=record.headers,
            )
            log.info(
                "retrain job answered",
                status=result.status,
                version=result.version,
                promoted=result.promoted,
            )
            ANSWERED.labels(job.model, result.status, str(result.promoted).lower()).inc()

    def _refuse(self, job: RetrainJob, access: Access, denial: Denial) -> RetrainResult:
        """The answer to a job refused before it ran; audited."""
        self.guard.refused(access, denial, model=job.model, job_id=job.job_id)
        return error_result(job.job_id, job.model, denial.code, denial.message)

    async def _reject(self, record: Record, exc: DecodeError, access: Access) -> None:
        """Answer a record that is no RetrainJob (INVALID_INPUT), or dead-letter it."""
        assert self._publisher is not None
        if refused := outside_namespace(record, access):
            answer, denial, envelope = refused
            self.guard.refused(access, denial, model=envelope.model, job_id=envelope.job_id)
        else:
            answer = self._publisher.rejection(
                record,
                exc,
                expected="RetrainJob",
                answer=lambda envelope: error_result(
                    envelope.job_id, envelope.model, ErrorCode.INVALID_INPUT, str(exc)
                ),
                results_topic=access.namespace.results,
            )
        await self._publisher.publish(answer)

    async def _execute_retrying(self, job: RetrainJob, access: Access) -> RetrainResult:
        """:meth:`execute`, tried again after a backoff while the registry fails with a
        retriable error (its record stays uncommitted meanwhile: read again should the
        trainer stop); after ``retry.attempts`` more tries, answered INTERNAL."""
        limits = self.settings.retry
        attempt = 0
        try:
            while True:
                try:
                    return await self.execute(job, access)
                except RegistryError as exc:
                    if not exc.retriable:
                        raise
                    attempt += 1
                    if attempt > limits.attempts:
                        message = f"the registry failed {attempt} times: {exc}"
                        return error_result(job.job_id, job.model, ErrorCode.INTERNAL, message)
                    log.warning("registry unavailable; trying the job again", error=str(exc))
                    await asyncio.sleep(limits.delay_s(attempt))
        finally:
            self._started.discard(job.job_id)

    # -- one job: run → train → gate → register -------------------------------------------

    async def execute(self, job: RetrainJob, access: Access | None = None) -> RetrainResult:
        """Run ``job`` of ``access``'s tenant (default: the default one) once (idempotent
        by ``job_id``) and return its RetrainResult.

        A job asking for what the operator did not allow is answered with the refusal,
        before anything is imported, read or recorded, and audited."""
        access = access or Access(self.kafka.topics.namespace())
        if expired := _expired(job):  # unless it ran before its deadline: that answer holds
            stored = await asyncio.to_thread(self.runs.get_run, job.job_id)
            return (
                expired if stored is None or stored.status == "running" else from_run(job, stored)
            )
        try:
            recipe, request, quantize = await asyncio.to_thread(self._admit, job, access)
        except Refused as refusal:
            reason = f"retrain-{refusal.code.lower().replace('_', '-')}"
            return self._refuse(job, access, Denial(reason, refusal.message, refusal.code))
        run, created = await asyncio.to_thread(
            self.runs.start_run,
            job.job_id,
            job.model,
            trigger=job.trigger,
            params=dict(job.params),
        )
        if run.status != "running":
            log.info("retrain job already ran; answering from the stored run", status=run.status)
            return from_run(job, run)
        retry = job.job_id in self._started
        self._started.add(job.job_id)
        if not created and not retry:
            if run.attempts > self.settings.budget.max_attempts:
                return await self._fail(job, _crashed_too_often(run.attempts - 1))
            log.warning(
                "run left running by a stopped trainer; training it again", attempt=run.attempts
            )
        stop, every_s = request.limits.stop, self.settings.budget.cancel_poll_s
        assert stop is not None  # _admit gives every request its own
        with tempfile.TemporaryDirectory(prefix="maas-train-") as workdir:
            try:
                async with cancel_watch(partial(self._still_running, job.job_id), stop, every_s):
                    work = self._train_and_register(job, recipe, request, quantize, Path(workdir))
                    return await work
            except Failure as failure:
                return await self._fail(job, failure)

    def _still_running(self, job_id: str) -> bool:
        """False once the run was finished elsewhere (``maas runs cancel``)."""
        run = self.runs.get_run(job_id)
        return run is not None and run.status == "running"

    def _admit(
        self, job: RetrainJob, access: Access
    ) -> tuple[Recipe, TrainRequest, Quantize | None]:
        """The job's recipe, training request and quantisation (``params.quantize``), if
        it asks only for what is allowed; else :class:`Refused`. A named tenant's
        ``promote: "always"`` was allowed by its grant (:func:`check_promote`)."""
        allowed = self.settings.allowed
        if access.namespace.tenant is None:
            allowed.check_promote(job.promote)
        recipe = allowed.recipe(recipe_name(job))
        check_split(job, recipe)
        dataset = allowed.dataset(job.dataset)
        try:
            params, quantize = split_params(job.params)
            limits = self.settings.budget.limits(params, threading.Event())
        except ParamsError as exc:
            raise Refused(ErrorCode.INVALID_INPUT, exc.public) from exc
        request = TrainRequest(
            model=job.model, dataset=dataset, params=without_budget(params), limits=limits
        )
        return recipe, request, quantize

    async def _train_and_register(
        self,
        job: RetrainJob,
        recipe: Recipe,
        request: TrainRequest,
        quantize: Quantize | None,
        workdir: Path,
    ) -> RetrainResult:
        production = await asyncio.to_thread(self._production, job.model)
        if production is not None:  # the new version keeps the names its clients use
            request = replace(request, replaces=production.signature)
        trained = await asyncio.to_thread(train, recipe, request, workdir)
        int8 = None
        if quantize is not None:
            int8 = await asyncio.to_thread(plan_int8, request, trained, quantize, workdir)
        judged = replace(trained, metrics=int8.metrics) if int8 and int8.judged else trained
        policy = GatePolicy(metric=recipe.metric, min_improvement=self.settings.min_improvement)
        decision = await asyncio.to_thread(
            judge, job.promote, recipe, request, judged, production, policy
        )
        if production is not None:
            decision = keep_clients(decision, production, trained.signature)
        reason = decision.reason if int8 is None else f"{int8.note}: {decision.reason}"
        draft = Draft(
            trained.artifact,
            reason,  # also the run's reason: redeliveries answer alike
            promote=decision.promote,
            parent_version=None if production is None else production.version,
            dataset_hash=trained.dataset_hash,
            params={"recipe": trained.recipe, **trained.params},
            metrics={**trained.metrics, "duration_s": round(trained.duration_s, 3)},
            reference=trained.reference,
        )
        try:
            version = await asyncio.to_thread(self._register, job, draft, int8)
        except ConflictError:  # another trainer finished this run first
            stored = await asyncio.to_thread(self.runs.get_run, job.job_id)
            assert stored is not None
            return from_run(job, stored)
        except RegistryError as exc:
            if exc.retriable:
                raise  # the whole job is tried again (see _execute_retrying)
            raise Failure(
                ErrorCode.INTERNAL, f"registering the trained model failed: {exc}"
            ) from exc
        return ok_result(job.job_id, version, promoted=decision.promote, reason=reason)

    def _production(self, model: str) -> ModelVersion | None:
        try:
            return self.models.resolve(model)
        except (ModelNotFound, AliasNotFound):
            return None

    def _register(self, job: RetrainJob, draft: Draft, int8: Plan | None) -> ModelVersion:
        """Register the trained version (and its int8 one); the version the run records:
        the promoted one, else the trained one."""
        actor = self.settings.actor
        if int8 is None:
            return self.models.register(job.model, draft, actor=actor, run_job_id=job.job_id)
        base, derived = int8.drafts(draft)
        trained, quantized = self.models.register_derived(
            job.model, base, derived, actor=actor, run_job_id=job.job_id
        )
        return quantized if derived.promote else trained

    async def _fail(self, job: RetrainJob, failure: Failure) -> RetrainResult:
        log.warning("retrain job failed", code=failure.code, error=failure.message)
        try:
            await asyncio.to_thread(
                self.runs.finish_run,
                job.job_id,
                # the code is kept so that a redelivery answers alike
                RunOutcome("error", reason=failure.message, error_code=str(failure.code)),
            )
        except ConflictError:
            stored = await asyncio.to_thread(self.runs.get_run, job.job_id)
            assert stored is not None
            return from_run(job, stored)
        return error_result(job.job_id, job.model, failure.code, failure.message)


def _crashed_too_often(starts: int) -> Failure:
    return Failure(
        ErrorCode.INTERNAL,
        f"this run was started {starts} times and each time its trainer stopped before it "
        "finished (a crash, or a restart); it is not trained again (maas trainer "
        "--max-attempts, env MAAS_TRAIN_MAX_ATTEMPTS). Send it again with a new job_id, "
        "asking for less (fewer epochs, a smaller hidden) if it is what made the trainer stop",
    )


def _expired(job: RetrainJob) -> RetrainResult | None:
    """The answer to a job whose caller stopped waiting (its ``deadline_ms`` passed):
    EXPIRED, nothing trained or recorded; None for a job still in time."""
    if job.deadline_ms is None or time.time() * 1000 <= job.deadline_ms:
        return None
    log.info("retrain job expired before it ran; not training it", deadline_ms=job.deadline_ms)
    message = (
        "the job's deadline passed before a trainer took it (its caller stopped waiting); "
        "nothing was trained: send it again to retrain"
    )
    return error_result(job.job_id, job.model, ErrorCode.EXPIRED, message)


async def _keep_alive(consumer: AIOKafkaConsumer) -> None:
    """Poll while a job trains: stay in the group, take nothing new."""
    consumer.pause(*consumer.assignment())  # partitions a rebalance assigned meanwhile
    stray = await consumer.getmany(timeout_ms=0)
    for tp, records in stray.items():
        if records:
            consumer.seek(tp, records[0].offset)  # read again once this job is done
