"""What the sync and asyncio clients share: everything but the I/O.

As httpx's ``BaseClient`` sits under ``Client`` and ``AsyncClient``, :class:`BaseClient`
builds the jobs, tracks the handles that wait for replies by ``job_id``, decodes the
replies, raises the typed errors and keeps the lifecycle rules.
:class:`producer.client.Client` (kafka-python, a reader thread) and
:class:`producer.aio.AsyncClient` (aiokafka, a reader task) only move records and wait.
"""

from __future__ import annotations

import contextlib
import threading
import time
import uuid
from collections.abc import Callable, Coroutine, Iterable, Iterator, Mapping, Sequence
from dataclasses import dataclass
from enum import Enum
from typing import Any, ClassVar, TypedDict, TypeVar

import msgspec
import structlog

from producer.capabilities import Capabilities
from producer.contract.messages import (
    DEFAULT_ALIAS,
    DecodeError,
    Feedback,
    Label,
    PredictJob,
    Result,
    RetrainJob,
    RetrainResult,
    decode_any_reply,
    decode_feedback,
    encode,
)
from producer.errors import ClientError, InvalidFeedback, JobTimeout, JobTooLarge, ServiceError
from producer.handles import BaseHandle, Reply
from producer.kafka import CLIENT_REFUSED_S, KafkaSettings, detect_capabilities, ensure_topics
from producer.oip import ENCODINGS, Encoding, is_response, request_record, result_of

log = structlog.get_logger(__name__)

POLL_MS = 100  # a reader's poll: how long it waits for replies, so how soon it sees close()
# How the clients read replies: from now on, and only what committed transactions hold
# (an exactly-once worker's answers once their transaction commits, never an aborted
# one's; other records at once).
REPLY_READING: Mapping[str, str] = {
    "auto_offset_reset": "latest",
    "isolation_level": "read_committed",
}

R = TypeVar("R", Result, RetrainResult)


class JobOptions(TypedDict, total=False):
    """The optional fields of a PredictJob, as ``submit``, ``predict`` and
    ``submit_many`` take them; ``key`` is the record key (default: the job id);
    ``encoding`` how the job travels: ``"json"`` a maas.predict/v1 job, ``"oip"`` an
    Open Inference Protocol request in JSON, ``"binary"`` one in the binary layout
    (tensors as raw bytes: pass numpy arrays of the model's dtype)."""

    version: int | None
    alias: str
    deadline_ms: int | None
    priority: int
    metadata: Mapping[str, Any] | None
    key: bytes | None
    encoding: Encoding


_JOB_OPTIONS = frozenset(JobOptions.__optional_keys__)
_NOT_IN_OIP = ("deadline_ms", "priority", "metadata")  # no place in an OIP request


@dataclass(frozen=True, slots=True)
class Outgoing:
    """One record to publish for a job whose reply will be awaited."""

    topic: str
    value: bytes
    key: bytes
    job_id: str
    headers: tuple[tuple[str, bytes], ...] = ()


class _State(Enum):
    NEW = "not started"
    STARTING = "starting"
    OPEN = "open"
    CLOSED = "closed"


class BaseClient:
    """Request/reply over Kafka, without the I/O. Subclasses open the producer and a
    consumer that reads ``reply_topic`` from now on, and pass each poll to
    :meth:`_deliver`."""

    _usage: ClassVar[str]  # how to open one, for the "not started" error

    def __init__(
        self,
        settings: KafkaSettings,
        *,
        tenant: str | None = None,
        reply_topic: str | None = None,
        timeout_s: float = 30.0,
        create_topics: bool = True,
    ) -> None:
        """``tenant``: whose topics the jobs go to and the replies come from (None: the
        default tenant's; :func:`producer.contract.tenancy.tenant_from_env` reads
        ``MAAS_TENANT``); ``reply_topic``: where replies are read (default: the
        tenant's results topic; a tenant's own must start with it)."""
        self.settings = settings
        self.topics = settings.topics.namespace(tenant)
        self.reply_topic = reply_topic or self.topics.results
        self.timeout_s = timeout_s
        self._create_topics = create_topics
        self._waiting: dict[str, BaseHandle] = {}
        self._lock = threading.Lock()  # the reader, the senders and close() share the table
        self._state = _State.NEW

    # ---- lifecycle ----------------------------------------------------------------------

    @property
    def is_closed(self) -> bool:
        """True once ``close()`` has begun; the reader stops at its next poll."""
        return self._state is _State.CLOSED

    def _starting(self) -> None:
        with self._lock:
            if self._state is not _State.NEW:
                raise RuntimeError(f"a client starts once; this one is {self._state.value}")
            self._state = _State.STARTING

    def _started(self) -> None:
        with self._lock:
            if self._state is _State.STARTING:
                self._state = _State.OPEN

    def _closing(self) -> bool:
        """Mark the client closed; False when it already was (``close()`` is idempotent)."""
        with self._lock:
            if self._state is _State.CLOSED:
                return False
            self._state = _State.CLOSED
            return True

    def _connect(self) -> Coroutine[Any, Any, Capabilities]:
        """What ``start()`` waits for first: the broker, asked what it supports (and the
        topics created, unless told not to); each client waits for it its own way."""
        if self._create_topics:
            return ensure_topics(self.settings, refused_s=CLIENT_REFUSED_S)
        return detect_capabilities(self.settings)

    def _abandon_waiting(self) -> None:
        """Fail every handle still waiting: nothing reads their replies any more."""
        with self._lock:
            waiting, self._waiting = self._waiting, {}
        for job_id, handle in waiting.items():
            handle._settle(None, ClientError(f"client closed before job {job_id} ended"))

    # ---- jobs ---------------------------------------------------------------------------

    def _predict_job(
        self, model: str, inputs: Mapping[str, Any], job_id: str | None, options: JobOptions
    ) -> Outgoing:
        if unknown := options.keys() - _JOB_OPTIONS:
            raise TypeError(f"unexpected job options: {', '.join(sorted(unknown))}")
        encoding = options.get("encoding", "json")
        if encoding != "json":
            return self._oip_job(model, inputs, job_id or uuid.uuid4().hex, options)
        job = PredictJob(
            job_id=job_id or uuid.uuid4().hex,
            model=model,
            inputs=dict(inputs),
            version=options.get("version"),
            alias=options.get("alias", DEFAULT_ALIAS),
            reply_to=self.reply_topic,
            deadline_ms=options.get("deadline_ms"),
            priority=options.get("priority", 0),
            metadata=dict(options.get("metadata") or {}),
        )
        key = options.get("key") or job.job_id.encode()
        return Outgoing(self.topics.predict, encode(job), key, job.job_id)

    def _feedback(
        self, job_id: str, labels: Sequence[Label] | None, row: int | None, label: Label | None
    ) -> Outgoing:
        """The Feedback record for ``job_id`` on this tenant's feedback topic: ``labels``
        one per input row, or ``label`` for input row ``row``. Checked as the monitor
        checks it; :class:`InvalidFeedback` says what is wrong."""
        feedback = Feedback(
            job_id=job_id,
            labels=None if labels is None else list(labels),
            row=row,
            label=label,
            ts_ms=int(time.time() * 1000),
        )
        value = encode(feedback)
        try:
            decode_feedback(value)
        except DecodeError as exc:
            raise InvalidFeedback(f"feedback for job {job_id!r}: {exc}") from exc
        return Outgoing(self.topics.feedback, value, job_id.encode(), job_id)

    def _oip_job(
        self, model: str, inputs: Mapping[str, Any], job_id: str, options: JobOptions
    ) -> Outgoing:
        encoding = options.get("encoding")
        if encoding not in ENCODINGS:
            raise ValueError(f"encoding must be one of {', '.join(ENCODINGS)}, got {encoding!r}")
        if unsent := [name for name in _NOT_IN_OIP if options.get(name)]:
            raise TypeError(
                f"{', '.join(unsent)} travel only in maas.predict/v1 jobs; drop them or "
                'use encoding="json"'
            )
        value, headers = request_record(
            job_id,
            model,
            inputs,
            target=(options.get("version"), options.get("alias", DEFAULT_ALIAS)),
            reply_to=self.reply_topic,
            binary=encoding == "binary",
        )
        key = options.get("key") or job_id.encode()
        return Outgoing(self.topics.predict, value, key, job_id, headers)

    def _retrain_job(self, job: RetrainJob) -> Outgoing:
        if job.reply_to is None:
            job = msgspec.structs.replace(job, reply_to=self.reply_topic)
        return Outgoing(self.topics.retrain, encode(job), job.model.encode(), job.job_id)

    def _track(self, handle: BaseHandle) -> None:
        """Wait for ``handle``'s reply; raises RuntimeError unless the client is open."""
        with self._lock:
            if self._state is not _State.OPEN:
                raise RuntimeError(f"the client is {self._state.value}: use `{self._usage}`")
            self._waiting[handle.job_id] = handle

    @contextlib.contextmanager
    def _sending(self, message: Outgoing, too_large: type[BaseException]) -> Iterator[None]:
        """Hand ``message`` to the producer inside this block. If the producer refuses it
        (``too_large``: bigger than one record may be), its handle fails with
        :class:`JobTooLarge`, which is raised; any other error fails the handle and
        propagates as it is."""
        try:
            yield
        except too_large as exc:
            error = JobTooLarge(message.job_id, len(message.value), str(exc))
            self._send_failed(message.job_id, error)
            raise error from exc
        except BaseException as exc:
            self._send_failed(message.job_id, exc)
            raise

    def _send_failed(self, job_id: str, error: BaseException) -> None:
        """The broker did not take the job: its handle raises ``error``."""
        self._settle(job_id, None, error)

    # ---- replies ------------------------------------------------------------------------

    def _deliver(self, batch: Mapping[Any, Iterable[Any]]) -> None:
        """Settle the handles that a poll's records answer; other clients' replies pass."""
        for records in batch.values():
            for record in records:
                try:
                    reply = self._reply(record)
                except DecodeError as exc:
                    log.warning("undecodable reply ignored", error=str(exc))
                    continue
                self._settle(reply.job_id, reply, None)

    @staticmethod
    def _reply(record: Any) -> Reply:
        """A reply record's Result or RetrainResult (OIP answers read as Results)."""
        if is_response(record.headers):
            return result_of(record.key, record.value or b"", record.headers)
        return decode_any_reply(record.value or b"")

    def _settle(self, job_id: str, reply: Reply | None, error: BaseException | None) -> None:
        with self._lock:
            handle = self._waiting.pop(job_id, None)
        if handle is not None:
            handle._settle(reply, error)

    # ---- errors -------------------------------------------------------------------------

    @staticmethod
    def _expect(reply: Reply, kind: type[R]) -> R:
        if not isinstance(reply, kind):
            raise ClientError(
                f"job {reply.job_id} was answered with a {type(reply).__name__}, not a "
                f"{kind.__name__}: two clients used the same job id"
            )
        return reply

    @classmethod
    def _result(cls, reply: Reply) -> Result:
        """A prediction's Result; an error Result raises :class:`ServiceError`."""
        result = cls._expect(reply, Result)
        if result.error is not None:
            raise ServiceError(result.error.code, result.error.message, result=result)
        return result

    def _wait_s(self, timeout_s: float | None) -> float:
        return self.timeout_s if timeout_s is None else timeout_s

    def _timed_out(self, job_id: str, waited_s: float) -> JobTimeout:
        return JobTimeout(job_id, waited_s, self.settings.bootstrap_servers)

    def _window(self, max_in_flight: int, timeout_s: float | None) -> Window:
        return Window(self, max_in_flight, self._wait_s(timeout_s))


class Window:
    """``submit_many``'s bookkeeping: at most ``limit`` jobs out, each with its deadline.

    Handles report to ``done`` (a queue's put) when settled; the caller waits on that
    queue for at most :meth:`wait_s`, then calls :meth:`expired`.
    """

    def __init__(self, client: BaseClient, limit: int, timeout_s: float) -> None:
        self._client = client
        self._limit = max(1, limit)
        self._timeout_s = timeout_s
        self._deadlines: dict[str, float] = {}  # job_id -> deadline, oldest first

    def __bool__(self) -> bool:
        return bool(self._deadlines)

    def full(self) -> bool:
        return len(self._deadlines) >= self._limit

    def add(self, handle: BaseHandle, done: Callable[[BaseHandle], object]) -> None:
        self._deadlines[handle.job_id] = time.monotonic() + self._timeout_s
        handle.add_done_callback(done)

    def wait_s(self) -> float:
        """How long the oldest job may still take."""
        return max(0.0, next(iter(self._deadlines.values())) - time.monotonic())

    def expired(self) -> JobTimeout:
        return self._client._timed_out(next(iter(self._deadlines)), self._timeout_s)

    def take(self, handle: BaseHandle) -> Reply:
        """A settled handle's reply; a failed send raises its error."""
        self._deadlines.pop(handle.job_id, None)
        return handle._outcome()
