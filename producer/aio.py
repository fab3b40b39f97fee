"""The asyncio client (aiokafka): publish jobs, await their results by ``job_id``.

    async with AsyncClient(KafkaSettings.from_env()) as client:
        result = await client.predict("digits", {"x": rows})

Results are read from the reply topic without a consumer group, from the moment the
client starts, and matched to waiting futures by ``job_id``.
"""

from __future__ import annotations

import asyncio
import contextlib
import uuid
from collections.abc import AsyncIterator, Iterable, Mapping
from types import TracebackType
from typing import Any

import msgspec
import structlog
from aiokafka import AIOKafkaConsumer, AIOKafkaProducer, TopicPartition

from producer.errors import JobTimeout, ServiceError
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


class AsyncClient:
    """Request/reply over Kafka. Use as ``async with``; safe for many concurrent calls."""

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
        self._producer: AIOKafkaProducer | None = None
        self._consumer: AIOKafkaConsumer | None = None
        self._reader: asyncio.Task[None] | None = None
        self._waiting: dict[str, asyncio.Future[Reply]] = {}
        self._enqueue = asyncio.Lock()  # concurrent aiokafka send() calls thrash its accumulator

    async def __aenter__(self) -> AsyncClient:
        await self.start()
        return self

    async def __aexit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        await self.close()

    async def start(self) -> None:
        if self._create_topics:
            await ensure_topics(self.settings)
        self._producer = AIOKafkaProducer(**self.settings.producer())
        await self._producer.start()
        self._consumer = AIOKafkaConsumer(
            **self.settings.consumer(None, auto_offset_reset="latest")
        )
        await self._consumer.start()
        partitions = await self._reply_partitions(self._consumer)
        self._consumer.assign(partitions)
        await self._consumer.seek_to_end(*partitions)
        for tp in partitions:  # fix the start position before any job is sent
            await self._consumer.position(tp)
        self._reader = asyncio.create_task(self._read(self._consumer))

    async def _reply_partitions(self, consumer: AIOKafkaConsumer) -> list[TopicPartition]:
        for _ in range(100):
            partitions = consumer.partitions_for_topic(self.reply_topic)
            if partitions:
                return [TopicPartition(self.reply_topic, p) for p in sorted(partitions)]
            await consumer._client.force_metadata_update()
            await asyncio.sleep(0.05)
        raise ServiceError(
            "INTERNAL", f"reply topic {self.reply_topic!r} does not exist; create it first"
        )

    async def close(self) -> None:
        if self._reader is not None:
            self._reader.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._reader
        for future in self._waiting.values():
            if not future.done():
                future.cancel()
        self._waiting.clear()
        if self._consumer is not None:
            await self._consumer.stop()
        if self._producer is not None:
            await self._producer.stop()

    async def _read(self, consumer: AIOKafkaConsumer) -> None:
        while True:
            batch = await consumer.getmany(timeout_ms=200)
            for records in batch.values():
                for record in records:
                    self._deliver(record.value)

    def _deliver(self, raw: bytes | None) -> None:
        try:
            reply = decode_any_reply(raw or b"")
        except DecodeError as exc:
            log.warning("undecodable reply ignored", error=str(exc))
            return
        future = self._waiting.pop(reply.job_id, None)
        if future is not None and not future.done():
            future.set_result(reply)

    async def _send(
        self, topic: str, payload: bytes, job_id: str, key: bytes
    ) -> asyncio.Future[Reply]:
        """Enqueue a job; its future fails if the broker does not take it, else waits for the reply."""
        if self._producer is None:
            raise RuntimeError("the client is not started: use `async with AsyncClient(...)`")
        future: asyncio.Future[Reply] = asyncio.get_running_loop().create_future()
        self._waiting[job_id] = future
        try:
            async with self._enqueue:
                ack = await self._producer.send(topic, payload, key=key)
        except BaseException:
            self._waiting.pop(job_id, None)
            raise
        ack.add_done_callback(lambda sent: self._acked(job_id, sent))
        return future

    def _acked(self, job_id: str, sent: asyncio.Future[Any]) -> None:
        if sent.cancelled() or sent.exception() is None:
            return
        future = self._waiting.pop(job_id, None)
        if future is not None and not future.done():
            future.set_exception(sent.exception() or RuntimeError("publish failed"))

    async def submit(
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
    ) -> asyncio.Future[Reply]:
        """Publish a job; the returned future resolves to its Result."""
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
        return await self._send(
            self.settings.topics.predict, encode(job), job.job_id, key or job.job_id.encode()
        )

    async def wait(
        self, future: asyncio.Future[Reply], *, job_id: str = "", timeout_s: float | None = None
    ) -> Reply:
        """Await a submitted job's reply, with a timeout that says what to check."""
        timeout = self.timeout_s if timeout_s is None else timeout_s
        try:
            return await asyncio.wait_for(asyncio.shield(future), timeout)
        except TimeoutError as exc:
            raise JobTimeout(job_id, timeout, self.settings.bootstrap_servers) from exc

    async def predict(
        self,
        model: str,
        inputs: Mapping[str, list[Any]],
        *,
        timeout_s: float | None = None,
        **options: Any,
    ) -> Result:
        """Publish a job and return its Result; raises :class:`ServiceError` on an error."""
        job_id = options.pop("job_id", None) or uuid.uuid4().hex
        future = await self.submit(model, inputs, job_id=job_id, **options)
        reply = await self.wait(future, job_id=job_id, timeout_s=timeout_s)
        assert isinstance(reply, Result)
        if reply.error is not None:
            raise ServiceError(reply.error.code, reply.error.message, result=reply)
        return reply

    async def submit_many(
        self,
        jobs: Iterable[tuple[str, Mapping[str, Any]]],
        model: str,
        *,
        max_in_flight: int = 256,
        timeout_s: float | None = None,
        **options: Any,
    ) -> AsyncIterator[Reply]:
        """Stream ``(job_id, inputs)`` jobs with at most ``max_in_flight`` outstanding;
        yields replies as they arrive (error Results included, never raised)."""
        pending: set[asyncio.Task[Reply]] = set()
        for job_id, inputs in jobs:
            if len(pending) >= max_in_flight:
                done, pending = await asyncio.wait(pending, return_when=asyncio.FIRST_COMPLETED)
                for task in done:
                    yield task.result()
            future = await self.submit(model, inputs, job_id=job_id, **options)
            pending.add(
                asyncio.ensure_future(self.wait(future, job_id=job_id, timeout_s=timeout_s))
            )
        while pending:
            done, pending = await asyncio.wait(pending, return_when=asyncio.FIRST_COMPLETED)
            for task in done:
                yield task.result()

    async def retrain(self, job: RetrainJob, *, timeout_s: float | None = None) -> RetrainResult:
        """Publish a retrain job and wait for its RetrainResult."""
        if job.reply_to is None:
            job = msgspec.structs.replace(job, reply_to=self.reply_topic)
        future = await self._send(
            self.settings.topics.retrain, encode(job), job.job_id, job.model.encode()
        )
        reply = await self.wait(future, job_id=job.job_id, timeout_s=timeout_s)
        assert isinstance(reply, RetrainResult)
        return reply
