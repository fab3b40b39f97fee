"""The synchronous client (kafka-python): publish jobs, block for their results.

    with Client(KafkaSettings.from_env()) as client:
        result = client.predict("digits", {"x": rows})

A background thread reads the reply topic without a consumer group (every
partition assigned, positioned at its end before anything is sent) and resolves
waiting :class:`Handle` objects by ``job_id``. Safe to share between threads.
"""

from __future__ import annotations

import asyncio
import queue
import threading
import time
import uuid
import warnings
from collections.abc import Callable, Iterable, Iterator, Mapping
from types import TracebackType
from typing import Any

import msgspec
import structlog

with warnings.catch_warnings():  # kafka-python 3.0 reads its schemas with a deprecated API
    warnings.simplefilter("ignore", DeprecationWarning)
    from kafka import KafkaConsumer, KafkaProducer, TopicPartition

from producer.errors import ClientError, JobTimeout, ServiceError
from producer.kafka import KafkaSettings, ensure_topics
from producer.messages import (
    DEFAULT_ALIAS,
    DecodeError,
    PredictJob,
    Result,
    RetrainJob,
    RetrainResult,
    decode_any_reply,
    encode,
)

log = structlog.get_logger(__name__)

Reply = Result | RetrainResult


class Handle:
    """A submitted job. :meth:`result` blocks until its reply arrives."""

    def __init__(self, job_id: str, client: Client) -> None:
        self.job_id = job_id
        self._client = client
        self._event = threading.Event()
        self._reply: Reply | None = None
        self._error: BaseException | None = None
        self._callbacks: list[Callable[[Handle], None]] = []
        self._lock = threading.Lock()

    def done(self) -> bool:
        return self._event.is_set()

    def result(self, timeout: float | None = None) -> Reply:
        """The reply (error Results included); raises :class:`JobTimeout` after ``timeout``."""
        wait = self._client.timeout_s if timeout is None else timeout
        if not self._event.wait(wait):
            raise JobTimeout(self.job_id, wait, self._client.settings.bootstrap_servers)
        if self._error is not None:
            raise self._error
        assert self._reply is not None
        return self._reply

    def add_done_callback(self, callback: Callable[[Handle], None]) -> None:
        with self._lock:
            if not self._event.is_set():
                self._callbacks.append(callback)
                return
        callback(self)

    def _resolve(self, reply: Reply | None, error: BaseException | None = None) -> None:
        with self._lock:
            if self._event.is_set():
                return
            self._reply, self._error = reply, error
            self._event.set()
            callbacks, self._callbacks = self._callbacks, []
        for callback in callbacks:
            callback(self)


def _ensure_topics_blocking(settings: KafkaSettings) -> None:
    """Run the asyncio topic creation on a private loop, even under a running one."""
    errors: list[BaseException] = []

    def target() -> None:
        try:
            asyncio.run(ensure_topics(settings))
        except BaseException as exc:  # re-raised in the caller's thread
            errors.append(exc)

    thread = threading.Thread(target=target, name="maas-ensure-topics")
    thread.start()
    thread.join()
    if errors:
        raise errors[0]


class Client:
    """Request/reply over Kafka with blocking calls. Use as a context manager."""

    def __init__(
        self,
        settings: KafkaSettings,
        *,
        reply_topic: str | None = None,
        timeout_s: float = 30.0,
        create_topics: bool = True,
    ) -> None:
        self.settings = settings
        self.reply_topic = reply_topic or settings.topics.results
        self.timeout_s = timeout_s
        self._create_topics = create_topics
        self._producer: KafkaProducer | None = None
        self._consumer: KafkaConsumer | None = None
        self._reader: threading.Thread | None = None
        self._stop = threading.Event()
        self._waiting: dict[str, Handle] = {}
        self._lock = threading.Lock()

    def __enter__(self) -> Client:
        self.start()
        return self

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        self.close()

    def start(self) -> None:
        if self._create_topics:
            _ensure_topics_blocking(self.settings)
        self._consumer = KafkaConsumer(**self.settings.consumer(None, auto_offset_reset="latest"))
        partitions = self._reply_partitions(self._consumer)
        self._consumer.assign(partitions)
        self._consumer.seek_to_end(*partitions)
        for tp in partitions:  # fix the start position before any job is sent
            self._consumer.position(tp)
        self._producer = KafkaProducer(**self.settings.producer())
        self._reader = threading.Thread(target=self._read, name="maas-replies", daemon=True)
        self._reader.start()

    def _reply_partitions(self, consumer: KafkaConsumer) -> list[TopicPartition]:
        deadline = time.monotonic() + 10
        while time.monotonic() < deadline:
            partitions = consumer.partitions_for_topic(self.reply_topic)
            if partitions:
                return [TopicPartition(self.reply_topic, p) for p in sorted(partitions)]
            time.sleep(0.05)
        raise ServiceError(
            "INTERNAL", f"reply topic {self.reply_topic!r} does not exist; create it first"
        )

    def close(self) -> None:
        self._stop.set()
        if self._reader is not None:
            self._reader.join()
        with self._lock:
            waiting, self._waiting = self._waiting, {}
        for handle in waiting.values():
            handle._resolve(None, ClientError(f"client closed before job {handle.job_id} ended"))
        if self._producer is not None:
            self._producer.close()
        if self._consumer is not None:
            self._consumer.close()

    def _read(self) -> None:
        assert self._consumer is not None
        while not self._stop.is_set():
            batch = self._consumer.poll(timeout_ms=100)
            for records in batch.values():
                for record in records:
                    self._deliver(record.value)

    def _deliver(self, raw: bytes | None) -> None:
        try:
            reply = decode_any_reply(raw or b"")
        except DecodeError as exc:
            log.warning("undecodable reply ignored", error=str(exc))
            return
        with self._lock:
            handle = self._waiting.pop(reply.job_id, None)
        if handle is not None:
            handle._resolve(reply)

    def _send(self, topic: str, payload: bytes, job_id: str, key: bytes) -> Handle:
        if self._producer is None:
            raise RuntimeError("the client is not started: use `with Client(...)`")
        handle = Handle(job_id, self)
        with self._lock:
            self._waiting[job_id] = handle

        def failed(exc: BaseException) -> None:
            with self._lock:
                self._waiting.pop(job_id, None)
            handle._resolve(None, exc)

        self._producer.send(topic, payload, key=key).add_errback(failed)
        return handle

    def submit(
        self,
        model: str,
        inputs: Mapping[str, list[Any]],
        *,
        version: int | None = None,
        alias: str = DEFAULT_ALIAS,
        deadline_ms: int | None = None,
        priority: int = 0,
        metadata: Mapping[str, Any] | None = None,
        job_id: str | None = None,
        key: bytes | None = None,
    ) -> Handle:
        """Publish a job without waiting; ``handle.result(timeout)`` blocks for its Result."""
        job = PredictJob(
            job_id=job_id or uuid.uuid4().hex,
            model=model,
            inputs=dict(inputs),
            version=version,
            alias=alias,
            reply_to=self.reply_topic,
            deadline_ms=deadline_ms,
            priority=priority,
            metadata=dict(metadata or {}),
        )
        return self._send(
            self.settings.topics.predict, encode(job), job.job_id, key or job.job_id.encode()
        )

    def predict(
        self,
        model: str,
        inputs: Mapping[str, list[Any]],
        *,
        timeout_s: float | None = None,
        **options: Any,
    ) -> Result:
        """Publish a job and return its Result; raises :class:`ServiceError` on an error."""
        reply = self.submit(model, inputs, **options).result(timeout_s)
        assert isinstance(reply, Result)
        if reply.error is not None:
            raise ServiceError(reply.error.code, reply.error.message, result=reply)
        return reply

    def submit_many(
        self,
        jobs: Iterable[tuple[str, Mapping[str, Any]]],
        model: str,
        *,
        max_in_flight: int = 256,
        timeout_s: float | None = None,
        **options: Any,
    ) -> Iterator[Reply]:
        """Stream ``(job_id, inputs)`` jobs with at most ``max_in_flight`` outstanding;
        yields replies as they arrive (error Results included, never raised)."""
        timeout = self.timeout_s if timeout_s is None else timeout_s
        done: queue.SimpleQueue[Handle] = queue.SimpleQueue()
        pending: dict[str, float] = {}  # job_id -> deadline, oldest first
        for job_id, inputs in jobs:
            while len(pending) >= max_in_flight:
                yield self._next_done(done, pending, timeout)
            pending[job_id] = time.monotonic() + timeout
            self.submit(model, inputs, job_id=job_id, **options).add_done_callback(done.put)
        while pending:
            yield self._next_done(done, pending, timeout)

    def _next_done(
        self, done: queue.SimpleQueue[Handle], pending: dict[str, float], timeout: float
    ) -> Reply:
        oldest, deadline = next(iter(pending.items()))
        try:
            handle = done.get(timeout=max(0.0, deadline - time.monotonic()))
        except queue.Empty:
            raise JobTimeout(oldest, timeout, self.settings.bootstrap_servers) from None
        pending.pop(handle.job_id, None)
        return handle.result(0)

    def retrain(self, job: RetrainJob, *, timeout_s: float | None = None) -> RetrainResult:
        """Publish a retrain job and wait for its RetrainResult."""
        if job.reply_to is None:
            job = msgspec.structs.replace(job, reply_to=self.reply_topic)
        handle = self._send(
            self.settings.topics.retrain, encode(job), job.job_id, job.model.encode()
        )
        reply = handle.result(timeout_s)
        assert isinstance(reply, RetrainResult)
        return reply
