"""The asyncio client (aiokafka): publish jobs, await their results by ``job_id``.

    async with AsyncClient(KafkaSettings.from_env()) as client:
        result = await client.predict("digits", {"x": rows})

A reader task reads the reply topic from now on (no consumer group) and settles
waiting :class:`AsyncHandle` objects by ``job_id``. The same methods, arguments,
errors and lifecycle as :class:`producer.client.Client`, all from
:class:`producer.core.BaseClient`; this module only does aiokafka's I/O.
"""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import AsyncIterator, Iterable, Mapping, Sequence
from typing import Any, Unpack

from aiokafka import AIOKafkaConsumer, AIOKafkaProducer
from aiokafka.errors import MessageSizeTooLargeError

from producer.cluster import require_tenant
from producer.contract.messages import Label, Result, RetrainJob, RetrainResult
from producer.core import POLL_MS, REPLY_READING, BaseClient, JobOptions, Outgoing, Window
from producer.handles import BaseHandle, Reply
from producer.tail import tail_async

__all__ = ["AsyncClient", "AsyncHandle", "Reply"]


class AsyncHandle(BaseHandle):
    """A submitted job. ``await handle.result()`` waits until its reply arrives."""

    def __init__(self, job_id: str, client: BaseClient) -> None:
        super().__init__(job_id, client)
        self._event = asyncio.Event()

    def _wake(self) -> None:
        self._event.set()

    async def result(self, timeout: float | None = None) -> Reply:  # noqa: ASYNC109 as Handle's
        """The reply (error Results included); raises :class:`JobTimeout` after
        ``timeout`` seconds (default: the client's), or the error that failed the send."""
        if not self._event.is_set():  # a settled handle answers even a zero timeout
            wait_s = self._wait_s(timeout)
            try:
                await asyncio.wait_for(self._event.wait(), wait_s)
            except TimeoutError:
                raise self._timed_out(wait_s) from None
        return self._outcome()


class AsyncClient(BaseClient):
    """Request/reply over Kafka. Use as ``async with``; safe for many concurrent calls."""

    _usage = "async with AsyncClient(...)"
    _producer: AIOKafkaProducer | None = None
    _consumer: AIOKafkaConsumer | None = None
    _reader: asyncio.Task[None] | None = None
    _enqueue: asyncio.Lock | None = None  # concurrent send() calls thrash aiokafka's accumulator

    async def __aenter__(self) -> AsyncClient:
        await self.start()
        return self

    async def __aexit__(self, *exc_info: object) -> None:
        await self.close()

    async def start(self) -> None:
        """Create the topics (unless told not to), read the reply topic from now on."""
        self._starting()
        try:
            capabilities = await self._connect()
            await require_tenant(self.settings, self.topics)
            producer = AIOKafkaProducer(**self.settings.producer(capabilities))
            await producer.start()
            self._producer = producer
            consumer = AIOKafkaConsumer(
                **self.settings.consumer(capabilities, None, **REPLY_READING)
            )
            await consumer.start()
            self._consumer = consumer
            await tail_async(consumer, self.reply_topic)
        except BaseException:
            await self.close()
            raise
        self._enqueue = asyncio.Lock()
        self._reader = asyncio.create_task(self._read(consumer))
        self._started()

    async def close(self) -> None:
        """Wait for the jobs still being sent, stop reading, fail the handles still
        waiting (:class:`ClientError`), close the producer and consumer. Idempotent."""
        if not self._closing():
            return
        if self._producer is not None:
            await self._producer.flush()
        if self._reader is not None:
            self._reader.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._reader
        self._abandon_waiting()
        if self._producer is not None:
            await self._producer.stop()
        if self._consumer is not None:
            await self._consumer.stop()

    async def _read(self, consumer: AIOKafkaConsumer) -> None:
        while not self.is_closed:
            self._deliver(await consumer.getmany(timeout_ms=POLL_MS))

    async def _send(self, message: Outgoing) -> AsyncHandle:
        handle = AsyncHandle(message.job_id, self)
        self._track(handle)
        assert self._producer is not None
        assert self._enqueue is not None
        with self._sending(message, MessageSizeTooLargeError):
            async with self._enqueue:
                sent = await self._producer.send(
                    message.topic, message.value, key=message.key, headers=list(message.headers)
                )
        sent.add_done_callback(lambda ack: self._acked(message.job_id, ack))
        return handle

    def _acked(self, job_id: str, ack: asyncio.Future[Any]) -> None:
        if not ack.cancelled() and (error := ack.exception()) is not None:
            self._send_failed(job_id, error)

    async def submit(
        self,
        model: str,
        inputs: Mapping[str, Any],
        *,
        job_id: str | None = None,
        **options: Unpack[JobOptions],
    ) -> AsyncHandle:
        """Publish a job without waiting; ``await handle.result(timeout)`` for its Result."""
        return await self._send(self._predict_job(model, inputs, job_id, options))

    async def predict(
        self,
        model: str,
        inputs: Mapping[str, Any],
        *,
        timeout_s: float | None = None,
        job_id: str | None = None,
        **options: Unpack[JobOptions],
    ) -> Result:
        """Publish a job and return its Result; raises :class:`ServiceError` on an error."""
        handle = await self.submit(model, inputs, job_id=job_id, **options)
        return self._result(await handle.result(timeout_s))

    async def submit_many(
        self,
        jobs: Iterable[tuple[str, Mapping[str, Any]]],
        model: str,
        *,
        max_in_flight: int = 256,
        timeout_s: float | None = None,
        **options: Unpack[JobOptions],
    ) -> AsyncIterator[Reply]:
        """Stream ``(job_id, inputs)`` jobs with at most ``max_in_flight`` outstanding;
        yields replies as they arrive (error Results included, never raised)."""
        window = self._window(max_in_flight, timeout_s)
        done: asyncio.Queue[BaseHandle] = asyncio.Queue()
        for job_id, inputs in jobs:
            while window.full():
                yield await self._next_done(done, window)
            window.add(await self.submit(model, inputs, job_id=job_id, **options), done.put_nowait)
        while window:
            yield await self._next_done(done, window)

    @staticmethod
    async def _next_done(done: asyncio.Queue[BaseHandle], window: Window) -> Reply:
        try:
            handle = await asyncio.wait_for(done.get(), window.wait_s())
        except TimeoutError:
            raise window.expired() from None
        return window.take(handle)

    async def feedback(
        self,
        job_id: str,
        labels: Sequence[Label] | None = None,
        *,
        row: int | None = None,
        label: Label | None = None,
        timeout_s: float = 30.0,
    ) -> None:
        """Publish the ground truth for an answered job and wait (at most ``timeout_s``)
        for the broker's ack: ``labels`` one per input row, or ``row`` and ``label``."""
        message = self._feedback(job_id, labels, row, label)
        assert self._producer is not None
        assert self._enqueue is not None
        async with asyncio.timeout(timeout_s):
            async with self._enqueue:
                sent = await self._producer.send(message.topic, message.value, key=message.key)
            await sent

    async def retrain(self, job: RetrainJob, *, timeout_s: float | None = None) -> RetrainResult:
        """Publish a retrain job and wait for its RetrainResult (an error one included)."""
        handle = await self._send(self._retrain_job(job))
        return self._expect(await handle.result(timeout_s), RetrainResult)
