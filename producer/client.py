"""The synchronous client (kafka-python): publish jobs, block for their results.

    with Client(KafkaSettings.from_env()) as client:
        result = client.predict("digits", {"x": rows})

A background thread reads the reply topic from now on (no consumer group) and settles
waiting :class:`Handle` objects by ``job_id``. Safe to share between threads. Jobs,
replies, errors and the lifecycle rules come from :class:`producer.core.BaseClient`;
this module only does kafka-python's I/O.
"""

from __future__ import annotations

import queue
import threading
import warnings
from collections.abc import Iterable, Iterator, Mapping, Sequence
from typing import Any, Unpack

with warnings.catch_warnings():  # kafka-python 3.0 reads its schemas with a deprecated API
    warnings.simplefilter("ignore", DeprecationWarning)
    from kafka import KafkaConsumer, KafkaProducer
    from kafka.errors import MessageSizeTooLargeError

from producer.capabilities import run_blocking
from producer.cluster import require_tenant
from producer.contract.messages import Label, Result, RetrainJob, RetrainResult
from producer.core import POLL_MS, REPLY_READING, BaseClient, JobOptions, Outgoing, Window
from producer.handles import BaseHandle, Reply
from producer.tail import tail

__all__ = ["Client", "Handle", "Reply"]


class Handle(BaseHandle):
    """A submitted job. :meth:`result` blocks until its reply arrives."""

    def __init__(self, job_id: str, client: BaseClient) -> None:
        super().__init__(job_id, client)
        self._event = threading.Event()

    def _wake(self) -> None:
        self._event.set()

    def result(self, timeout: float | None = None) -> Reply:
        """The reply (error Results included); raises :class:`JobTimeout` after
        ``timeout`` seconds (default: the client's), or the error that failed the send."""
        wait_s = self._wait_s(timeout)
        if not self._event.wait(wait_s):
            raise self._timed_out(wait_s)
        return self._outcome()


class Client(BaseClient):
    """Request/reply over Kafka with blocking calls. Use as a context manager."""

    _usage = "with Client(...)"
    _producer: KafkaProducer | None = None
    _consumer: KafkaConsumer | None = None
    _reader: threading.Thread | None = None

    def __enter__(self) -> Client:
        self.start()
        return self

    def __exit__(self, *exc_info: object) -> None:
        self.close()

    def start(self) -> None:
        """Create the topics (unless told not to), read the reply topic from now on."""
        self._starting()
        try:
            capabilities = run_blocking(self._connect)
            run_blocking(lambda: require_tenant(self.settings, self.topics))
            consumer = KafkaConsumer(**self.settings.consumer(capabilities, None, **REPLY_READING))
            self._consumer = consumer
            tail(consumer, self.reply_topic)
            self._producer = KafkaProducer(**self.settings.producer(capabilities))
        except BaseException:
            self.close()
            raise
        self._reader = threading.Thread(target=self._read, name="maas-replies", daemon=True)
        self._reader.start()
        self._started()

    def close(self) -> None:
        """Wait for the jobs still being sent, stop reading, fail the handles still
        waiting (:class:`ClientError`), close the producer and consumer. Idempotent."""
        if not self._closing():
            return
        if self._producer is not None:
            self._producer.flush()
        if self._reader is not None:
            self._reader.join()
        self._abandon_waiting()
        if self._producer is not None:
            self._producer.close()
        if self._consumer is not None:
            self._consumer.close()

    def _read(self) -> None:
        assert self._consumer is not None
        while not self.is_closed:
            self._deliver(self._consumer.poll(timeout_ms=POLL_MS))

    def _send(self, message: Outgoing) -> Handle:
        handle = Handle(message.job_id, self)
        self._track(handle)
        assert self._producer is not None
        with self._sending(message, MessageSizeTooLargeError):
            sent = self._producer.send(
                message.topic, message.value, key=message.key, headers=list(message.headers)
            )
        sent.add_errback(lambda exc: self._send_failed(message.job_id, exc))
        return handle

    def submit(
        self,
        model: str,
        inputs: Mapping[str, Any],
        *,
        job_id: str | None = None,
        **options: Unpack[JobOptions],
    ) -> Handle:
        """Publish a job without waiting; ``handle.result(timeout)`` blocks for its Result."""
        return self._send(self._predict_job(model, inputs, job_id, options))

    def predict(
        self,
        model: str,
        inputs: Mapping[str, Any],
        *,
        timeout_s: float | None = None,
        job_id: str | None = None,
        **options: Unpack[JobOptions],
    ) -> Result:
        """Publish a job and return its Result; raises :class:`ServiceError` on an error."""
        return self._result(self.submit(model, inputs, job_id=job_id, **options).result(timeout_s))

    def submit_many(
        self,
        jobs: Iterable[tuple[str, Mapping[str, Any]]],
        model: str,
        *,
        max_in_flight: int = 256,
        timeout_s: float | None = None,
        **options: Unpack[JobOptions],
    ) -> Iterator[Reply]:
        """Stream ``(job_id, inputs)`` jobs with at most ``max_in_flight`` outstanding;
        yields replies as they arrive (error Results included, never raised)."""
        window = self._window(max_in_flight, timeout_s)
        done: queue.SimpleQueue[BaseHandle] = queue.SimpleQueue()
        for job_id, inputs in jobs:
            while window.full():
                yield self._next_done(done, window)
            window.add(self.submit(model, inputs, job_id=job_id, **options), done.put)
        while window:
            yield self._next_done(done, window)

    @staticmethod
    def _next_done(done: queue.SimpleQueue[BaseHandle], window: Window) -> Reply:
        try:
            handle = done.get(timeout=window.wait_s())
        except queue.Empty:
            raise window.expired() from None
        return window.take(handle)

    def feedback(
        self,
        job_id: str,
        labels: Sequence[Label] | None = None,
        *,
        row: int | None = None,
        label: Label | None = None,
        timeout_s: float = 30.0,
    ) -> None:
        """Publish the ground truth for an answered job and wait for the broker's ack:
        ``labels`` one per input row, or ``row`` and ``label`` for one row."""
        message = self._feedback(job_id, labels, row, label)
        assert self._producer is not None
        self._producer.send(message.topic, message.value, key=message.key).get(timeout_s)

    def retrain(self, job: RetrainJob, *, timeout_s: float | None = None) -> RetrainResult:
        """Publish a retrain job and wait for its RetrainResult (an error one included)."""
        reply = self._send(self._retrain_job(job)).result(timeout_s)
        return self._expect(reply, RetrainResult)
