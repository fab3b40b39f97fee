"""The training worker: consume retrain jobs, train, gate, register, answer.

One job at a time per trainer. While a job trains (in a thread), the consumer's
partitions are paused and ``getmany`` keeps being called, so the member stays in
its group however long training takes. The offset is committed only after the
RetrainResult is acknowledged by the broker.

Retraining is idempotent by ``job_id``: a redelivered job whose run already finished
is answered from the stored run without training again; a run left "running" by a
crashed trainer is trained again, and the registry finishes a run at most once (in
the same transaction that registers its version), so a race never makes two
versions. A job whose ``params.quantize`` asks for an int8 version too registers both
in that one transaction (see :mod:`workers.optimize.retrain`).
"""

from __future__ import annotations

import asyncio
import tempfile
import time
from dataclasses import dataclass, replace
from pathlib import Path

import structlog
from aiokafka import AIOKafkaConsumer, AIOKafkaProducer, TopicPartition
from aiokafka.errors import CommitFailedError, IllegalStateError, KafkaError

from producer.kafka import KafkaSettings, ensure_topics
from producer.messages import (
    DecodeError,
    ErrorCode,
    ErrorInfo,
    RetrainJob,
    RetrainResult,
    decode_retrain,
    encode,
)
from registry import Draft
from registry.entities import ModelVersion, RetrainRun
from registry.errors import AliasNotFound, ConflictError, ModelNotFound, RegistryError
from registry.store import Store
from workers.gate import GatePolicy, decide
from workers.loop import default_worker_id
from workers.optimize import OptimizeError
from workers.optimize.retrain import Plan, Quantize, plan, split_params
from workers.recipes import (
    BUILTIN_RECIPES,
    DatasetRef,
    Recipe,
    RecipeError,
    TrainedModel,
    TrainRequest,
    get_recipe,
)
from workers.replies import Publisher, PublishFailed, Record, source_of

log = structlog.get_logger(__name__)

DEFAULT_RECIPE = "tabular"


@dataclass(frozen=True, slots=True)
class TrainerSettings:
    """How one training worker runs. Built once at the entrypoint."""

    group_id: str = "maas-trainers"
    keepalive_s: float = 0.5  # how often getmany is called while a job trains
    min_improvement: float = 0.0  # the gate's required margin on the recipe's metric
    worker_id: str = ""  # default: host:pid

    @property
    def actor(self) -> str:
        return f"trainer@{self.worker_id}"


class _Failure(Exception):
    """A job that cannot produce a version: answered with ``code`` and ``message``."""

    def __init__(self, code: ErrorCode, message: str) -> None:
        super().__init__(message)
        self.code = code
        self.message = message


def recipe_name(job: RetrainJob) -> str:
    """The job's recipe; else the model's name if it is a built-in recipe; else tabular."""
    if job.recipe:
        return job.recipe
    return job.model if job.model in BUILTIN_RECIPES else DEFAULT_RECIPE


class Trainer:
    """One member of the trainer group. ``run`` returns after ``stop`` is set."""

    def __init__(self, kafka: KafkaSettings, store: Store, settings: TrainerSettings) -> None:
        if not settings.worker_id:
            settings = replace(settings, worker_id=default_worker_id())
        self.kafka = kafka
        self.store = store
        self.settings = settings
        self.ready = asyncio.Event()
        self._publisher: Publisher | None = None

    async def run(self, stop: asyncio.Event) -> None:
        await ensure_topics(self.kafka)
        producer = AIOKafkaProducer(**self.kafka.producer())
        consumer = AIOKafkaConsumer(**self.kafka.consumer(self.settings.group_id))
        consumer.subscribe([self.kafka.topics.retrain])
        await producer.start()
        await consumer.start()
        self._publisher = Publisher(producer, dlq_topic=self.kafka.topics.dlq)
        log.info("trainer started", worker=self.settings.worker_id, group=self.settings.group_id)
        try:
            while not stop.is_set():
                batch = await consumer.getmany(timeout_ms=200, max_records=1)
                if consumer.assignment():
                    self.ready.set()
                for tp, records in batch.items():
                    for record in records:
                        await self._handle(consumer, tp, record)
        finally:
            await consumer.stop()
            await producer.stop()
            log.info("trainer stopped", worker=self.settings.worker_id)

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
        if work.result():
            await _commit(consumer, tp, record.offset + 1)

    async def _process(self, record: Record) -> bool:
        """Answer one record (or dead-letter it). True when it may be committed."""
        assert self._publisher is not None
        try:
            await self._answer(record)
        except PublishFailed as exc:
            try:
                await self._publisher.dead_letter(
                    source_of(record),
                    code=ErrorCode.INTERNAL,
                    reason=f"answer not published: {exc}",
                )
            except PublishFailed:
                log.error("retrain job neither answered nor dead-lettered", offset=record.offset)
                return False
        return True

    async def _answer(self, record: Record) -> None:
        assert self._publisher is not None
        try:
            job = decode_retrain(record.value or b"")
        except DecodeError as exc:
            await self._reject(record, exc)
            return
        with structlog.contextvars.bound_contextvars(
            job_id=job.job_id, model=job.model, partition=record.partition, offset=record.offset
        ):
            result = await self.execute(job)
            await self._publisher.send(
                job.reply_to or self.kafka.topics.results,
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

    async def _reject(self, record: Record, exc: DecodeError) -> None:
        assert self._publisher is not None
        rejection = self._publisher.rejection(
            record,
            exc,
            expected="RetrainJob",
            answer=lambda envelope: _error(
                envelope.job_id, envelope.model, ErrorCode.INVALID_INPUT, str(exc)
            ),
            results_topic=self.kafka.topics.results,
        )
        await self._publisher.publish(rejection)

    # -- one job: run → train → gate → register -------------------------------------------

    async def execute(self, job: RetrainJob) -> RetrainResult:
        """Run ``job`` once (idempotent by ``job_id``) and return its RetrainResult."""
        run, created = await asyncio.to_thread(
            self.store.start_run,
            job.job_id,
            job.model,
            trigger=job.trigger,
            params=dict(job.params),
        )
        if run.status != "running":
            log.info("retrain job already ran; answering from the stored run", status=run.status)
            return _from_run(job, run)
        if not created:
            log.warning("run left running by a stopped trainer; training it again")
        with tempfile.TemporaryDirectory(prefix="maas-train-") as workdir:
            try:
                return await self._train_and_register(job, Path(workdir))
            except _Failure as failure:
                return await self._fail(job, failure)

    async def _train_and_register(self, job: RetrainJob, workdir: Path) -> RetrainResult:
        recipe, trained, quantize = await asyncio.to_thread(_train, job, workdir)
        int8 = (
            None
            if quantize is None
            else await asyncio.to_thread(_plan, job, trained, quantize, workdir)
        )
        production = await asyncio.to_thread(self._production, job.model)
        policy = GatePolicy(metric=recipe.metric, min_improvement=self.settings.min_improvement)
        decision = decide(
            job.promote,
            int8.metrics if int8 is not None and int8.judged else trained.metrics,
            None if production is None else production.metrics,
            None if production is None else production.version,
            policy,
        )
        reason = decision.reason if int8 is None else f"{int8.note}: {decision.reason}"
        draft = Draft(
            trained.artifact,
            reason,  # also the run's reason: redeliveries answer alike
            promote=decision.promote,
            parent_version=None if production is None else production.version,
            dataset_hash=trained.dataset_hash,
            params={"recipe": trained.recipe, **trained.params},
            metrics={**trained.metrics, "duration_s": round(trained.duration_s, 3)},
        )
        try:
            version = await asyncio.to_thread(self._register, job, draft, int8)
        except ConflictError:  # another trainer finished this run first
            stored = await asyncio.to_thread(self.store.get_run, job.job_id)
            assert stored is not None
            return _from_run(job, stored)
        except RegistryError as exc:
            raise _Failure(
                ErrorCode.INTERNAL, f"registering the trained model failed: {exc}"
            ) from exc
        return RetrainResult(
            job_id=job.job_id,
            status="ok",
            model=job.model,
            version=version.version,
            metrics=dict(version.metrics),
            promoted=decision.promote,
            reason=reason,
        )

    def _production(self, model: str) -> ModelVersion | None:
        try:
            return self.store.resolve(model)
        except (ModelNotFound, AliasNotFound):
            return None

    def _register(self, job: RetrainJob, draft: Draft, int8: Plan | None) -> ModelVersion:
        """Register the trained version (and its int8 one); the version the run records:
        the promoted one, else the trained one."""
        actor = self.settings.actor
        if int8 is None:
            return self.store.register(
                job.model,
                draft.artifact,
                actor=actor,
                reason=draft.reason,
                promote=draft.promote,
                parent_version=draft.parent_version,
                dataset_hash=draft.dataset_hash,
                params=draft.params,
                metrics=draft.metrics,
                run_job_id=job.job_id,
            )
        base, derived = int8.drafts(draft)
        trained, quantized = self.store.register_derived(
            job.model, base, derived, actor=actor, run_job_id=job.job_id
        )
        return quantized if derived.promote else trained

    async def _fail(self, job: RetrainJob, failure: _Failure) -> RetrainResult:
        log.warning("retrain job failed", code=failure.code, error=failure.message)
        try:
            await asyncio.to_thread(
                self.store.finish_run,
                job.job_id,
                status="error",
                reason=failure.message,
                metrics={"error_code": str(failure.code)},  # so a redelivery answers alike
            )
        except ConflictError:
            stored = await asyncio.to_thread(self.store.get_run, job.job_id)
            assert stored is not None
            return _from_run(job, stored)
        return _error(job.job_id, job.model, failure.code, failure.message)


async def _keep_alive(consumer: AIOKafkaConsumer) -> None:
    """Poll while a job trains: stay in the group, take nothing new."""
    consumer.pause(*consumer.assignment())  # partitions a rebalance assigned meanwhile
    stray = await consumer.getmany(timeout_ms=0)
    for tp, records in stray.items():
        if records:
            consumer.seek(tp, records[0].offset)  # read again once this job is done


async def _commit(consumer: AIOKafkaConsumer, tp: TopicPartition, offset: int) -> None:
    try:
        await consumer.commit({tp: offset})
    except (CommitFailedError, IllegalStateError, KafkaError) as exc:
        # The partition moved on during a rebalance: the job is redelivered and answered
        # from its stored run, without training again.
        log.warning("commit failed; the job will be answered again", error=str(exc))


def _train(job: RetrainJob, workdir: Path) -> tuple[Recipe, TrainedModel, Quantize | None]:
    """Train in this (worker) thread; every failure becomes a :class:`_Failure`."""
    started = time.perf_counter()
    try:
        recipe = get_recipe(recipe_name(job))
        dataset = None
        if job.dataset is not None:
            dataset = DatasetRef(uri=job.dataset.uri, name=job.dataset.name)
        params, quantize = split_params(job.params)
        request = TrainRequest(model=job.model, dataset=dataset, params=params)
        trained = recipe.train(request, workdir)
    except RecipeError as exc:
        raise _Failure(ErrorCode.INVALID_INPUT, str(exc)) from exc
    except Exception as exc:
        log.exception("training crashed")
        raise _Failure(ErrorCode.INTERNAL, f"training failed: {type(exc).__name__}: {exc}") from exc
    log.info(
        "trained",
        recipe=recipe.name,
        seconds=round(time.perf_counter() - started, 2),
        metrics={k: trained.metrics[k] for k in ("accuracy",) if k in trained.metrics},
    )
    return recipe, trained, quantize


def _plan(job: RetrainJob, trained: TrainedModel, quantize: Quantize, workdir: Path) -> Plan:
    """Quantise and measure the trained model; a failure is the job's, as in training."""
    try:
        return plan(trained, quantize, None if job.dataset is None else job.dataset.uri, workdir)
    except (OptimizeError, RecipeError) as exc:
        raise _Failure(
            ErrorCode.INVALID_INPUT, f"quantising the trained model failed: {exc}"
        ) from exc
    except Exception as exc:
        log.exception("quantisation crashed")
        raise _Failure(
            ErrorCode.INTERNAL, f"quantisation failed: {type(exc).__name__}: {exc}"
        ) from exc


def _from_run(job: RetrainJob, run: RetrainRun) -> RetrainResult:
    if run.status == "ok":
        return RetrainResult(
            job_id=job.job_id,
            status="ok",
            model=run.model,
            version=run.version,
            metrics=dict(run.metrics),
            promoted=run.promoted,
            reason=run.reason,
        )
    stored = run.metrics.get("error_code")
    code = ErrorCode(stored) if stored in set(ErrorCode) else ErrorCode.INTERNAL
    return _error(job.job_id, run.model, code, run.reason or "the run failed")


def _error(job_id: str, model: str, code: ErrorCode, message: str) -> RetrainResult:
    return RetrainResult(
        job_id=job_id,
        status="error",
        model=model,
        error=ErrorInfo(code=code, message=message),
        reason=message,
    )
