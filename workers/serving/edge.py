"""The serving worker's edge: a poll's records in, jobs out; outcomes in, records out.

Everything a client controls is checked here, before it costs the worker anything,
and a check that fails answers its own record alone:

- the record's size, before it is decoded: over ``max_job_bytes`` it is answered
  ``TOO_LARGE``, naming the limit; a record over ``OFF_LOOP_BYTES`` is decoded in a
  thread, so that a big one never holds up the event loop;
- its JSON (:mod:`producer.contract.messages`): a PredictJob, or ``INVALID_INPUT`` naming the
  field; a record without a ``job_id`` to answer is dead-lettered;
- its tenant (the topic it came from, :mod:`workers.tenancy.guard`): a reply topic outside the
  tenant's namespace, a tenant the registry does not know or a model it is not granted
  is answered ``UNAUTHORIZED`` on the tenant's results topic, and audited;
- its reply topic: a legal topic name, of a topic that exists (:class:`ClusterTopics`);
  else the job is answered ``INVALID_INPUT`` on the tenant's results topic; when that
  topic is missing too (deleted), the job is dead-lettered and logged;
- what would be echoed: metadata over ``MAX_METADATA_BYTES`` is ``TOO_LARGE``, and an
  answer too big for one record is replaced by a ``TOO_LARGE`` one.

A job's answer carries the job's record headers, less the ``maas.error.*`` and
``maas.source.*`` ones, which only maas sets. Records in the Open Inference Protocol
(:mod:`workers.serving.oip`) pass the same checks and are answered in their own format.
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import Sequence
from dataclasses import dataclass, replace
from typing import Any, ClassVar

import msgspec
import structlog
from aiokafka.errors import KafkaError

from producer.contract.messages import (
    DecodeError,
    ErrorCode,
    JobEnvelope,
    PredictJob,
    Result,
    decode_address,
    decode_envelope,
    decode_predict,
    encode,
    error_result,
)
from producer.contract.oip import is_inference_request
from workers.kafka.publisher import (
    Outgoing,
    Publisher,
    Record,
    record_bytes,
    source_of,
    without_own_headers,
)
from workers.kafka.topics import ClusterTopics, topic_name_problem
from workers.serving import oip
from workers.serving.pools import PoolShare
from workers.tenancy.guard import Access, Guard

__all__ = [
    "MAX_METADATA_BYTES",
    "OFF_LOOP_BYTES",
    "Accepted",
    "Admitted",
    "DeadLetter",
    "Edge",
    "Passed",
    "Refused",
]

log = structlog.get_logger(__name__)

OFF_LOOP_BYTES = 256 * 1024  # records bigger than this are decoded in a thread
MAX_METADATA_BYTES = 64 * 1024  # the most metadata a Result echoes


@dataclass(frozen=True, slots=True)
class Accepted:
    """A record whose job goes to the handler."""

    record: Record
    job: PredictJob


@dataclass(frozen=True, slots=True)
class _Answered:
    """A record answered at the edge: ``reply`` is the record that answers it."""

    record: Record
    reply: Outgoing


class Refused(_Answered):
    """A job answered at the edge: ``reply`` is its error Result's record."""

    __slots__ = ()


class DeadLetter(_Answered):
    """A record that is no job to answer: ``reply`` is its dead letter."""

    __slots__ = ()


@dataclass(frozen=True, slots=True)
class Passed:
    """Another pool's job: nothing to send, and nothing more to do with it here."""

    record: Record
    reply: ClassVar[None] = None


# What the edge makes of each record of a poll, in the records' order.
Admitted = Accepted | Refused | DeadLetter | Passed


@dataclass(frozen=True, slots=True)
class _Unverified:
    """A job (or refusal) whose reply topic is yet to be looked for in the cluster."""

    record: Record
    item: _Item


@dataclass(frozen=True, slots=True)
class _Refusal:
    """A job answered at the edge with an error: where to, and why."""

    envelope: JobEnvelope
    code: ErrorCode
    message: str

    @property
    def reply_to(self) -> str | None:
        return self.envelope.reply_to


_Item = PredictJob | _Refusal


def _address(item: _Item) -> PredictJob | JobEnvelope:
    """Who a job's answer goes to: the job, or the envelope of one refused."""
    return item if isinstance(item, PredictJob) else item.envelope


def _envelope(item: _Item) -> JobEnvelope:
    if isinstance(item, oip.OipJob):
        return oip.OipEnvelope(item.job_id, item.model, item.reply_to)
    if isinstance(item, PredictJob):
        return JobEnvelope(item.job_id, item.model, item.reply_to, item.metadata)
    return item.envelope


class Edge:
    """Admits a poll's records (:meth:`admit`) and turns outcomes into the records
    that answer them (:meth:`answer`)."""

    def __init__(
        self,
        publisher: Publisher,
        topics: ClusterTopics,
        guard: Guard,
        *,
        models: tuple[str, ...] | PoolShare,
        max_job_bytes: int,
        worker: str,
    ) -> None:
        """``models``: the models this pool serves (empty: all), or its
        :class:`PoolShare` (the general pool's leaves pinned pools' models to them);
        ``worker``: who answers."""
        self._publisher = publisher
        self._topics = topics
        self._guard = guard
        self._share = models if isinstance(models, PoolShare) else PoolShare(frozenset(models))
        self._max_job_bytes = max_job_bytes
        self._worker = worker

    async def admit(self, records: Sequence[Record]) -> list[Admitted]:
        """What each of ``records`` is, in order: a job for the handler, a job refused
        with its answer, a dead letter, or another pool's job. Jobs whose reply topic
        is not known yet wait for one shared read of the cluster's topic list (at most
        ``ClusterTopics.min_refresh_s`` away)."""
        since = time.monotonic()
        if not records:
            return []
        access = await self._guard.access(records[0].topic)  # a partition's: one topic
        routed = [self._route(record, await self._read(record), access) for record in records]
        pending = any(isinstance(each, _Unverified) for each in routed)
        unreadable = await self._refresh(since) if pending else ""
        return [
            self._verify(each, unreadable) if isinstance(each, _Unverified) else each
            for each in routed
        ]

    def _route(
        self, record: Record, read: _Item | Outgoing | None, access: Access
    ) -> Admitted | _Unverified:
        """What ``record``, read, is once its tenant's rules and its reply topic's name
        are checked; :class:`_Unverified` when its reply topic is to be looked for."""
        if read is None:
            return Passed(record)
        if isinstance(read, Outgoing):
            return DeadLetter(record, read)
        address = _address(read)
        if denial := access.outside(read.reply_to):
            self._guard.refused(access, denial, model=address.model, job_id=address.job_id)
            result = self._error(address, denial.code, denial.message)
            topic = access.namespace.results  # never where the job pointed
            return Refused(record, self.answer(record, address, result, topic=topic))
        if denial := access.denial(address.model or None):
            self._guard.refused(access, denial, model=address.model, job_id=address.job_id)
            read = _Refusal(_envelope(read), denial.code, denial.message)
        own = access.namespace.results  # checked too: a deleted one must not eat answers
        reply_to = read.reply_to or own
        if reply_to in self._topics.listed or (reply_to != own and reply_to in self._topics.known):
            return self._settled(record, read)
        if problem := topic_name_problem(reply_to):
            return Refused(record, self._misdirected(record, read, problem))
        return _Unverified(record, read)

    def answer(
        self, record: Record, job: PredictJob | JobEnvelope, result: Result, *, topic: str = ""
    ) -> Outgoing:
        """The record that answers ``job`` with ``result``, on ``topic`` (default: its
        reply topic), with the job's headers; ``TOO_LARGE`` instead if it would not fit."""
        if isinstance(job, oip.OipJob | oip.OipEnvelope):
            return self._answer_oip(record, job, result, topic)
        try:
            value = encode(result)
        except Exception as exc:  # outputs JSON cannot hold: the model's fault, not the job's
            log.error("result not encodable", job_id=job.job_id, error=repr(exc))
            value = encode(self._error(job, ErrorCode.INTERNAL, _UNENCODABLE, result))
        headers = record.headers
        outgoing = Outgoing(
            topic or job.reply_to or self._guard.namespace(record.topic).results,
            value,
            job.job_id.encode(),
            without_own_headers(headers) if headers else (),
        )
        if self._publisher.fits(outgoing):
            return outgoing
        message = (
            f"the Result would be {record_bytes(outgoing)} bytes, over the "
            f"{self._publisher.max_record_bytes}-byte limit of a record this worker "
            "publishes; send fewer rows per job, or raise the limit (maas worker "
            "--max-job-bytes, with the broker's message.max.bytes)"
        )
        too_large = self._error(job, ErrorCode.TOO_LARGE, message, result)
        smaller = replace(outgoing, value=encode(too_large))
        return smaller if self._publisher.fits(smaller) else replace(smaller, headers=())

    def _answer_oip(
        self, record: Record, job: oip.OipJob | oip.OipEnvelope, result: Result, topic: str
    ) -> Outgoing:
        namespace = self._guard.namespace(record.topic)
        topic = topic or job.reply_to or namespace.results
        outgoing = oip.answer(record, job, result, topic, namespace.tenant or "default")
        if self._publisher.fits(outgoing):
            return outgoing
        message = (
            f"the InferenceResponse would be {record_bytes(outgoing)} bytes, over the "
            f"{self._publisher.max_record_bytes}-byte limit of a record this worker publishes; "
            "send fewer rows per request, or raise the limit (maas worker --max-job-bytes)"
        )
        too_large = self._error(job, ErrorCode.TOO_LARGE, message, result)
        return oip.answer(record, job, too_large, topic, namespace.tenant or "default")

    def unreadable(self, record: Record) -> Outgoing:
        """The dead letter for a record whose header keys are not all UTF-8."""
        return self._publisher.dead_letter_of(
            source_of(record),
            code=ErrorCode.INVALID_INPUT,
            reason="a header key is not valid UTF-8 (here with backslash escapes): the "
            "record cannot be read as a job",
        )

    async def _read(self, record: Record) -> _Item | Outgoing | None:
        """The record's job; or its refusal, or dead letter; None: another pool's job.
        A big record is decoded off the event loop."""
        raw = record.value or b""
        if len(raw) > OFF_LOOP_BYTES:
            return await asyncio.to_thread(self._decode, record, raw)
        return self._decode(record, raw)

    def _decode(self, record: Record, raw: bytes) -> _Item | Outgoing | None:
        """:meth:`_read`'s work, on or off the event loop."""
        if len(raw) > self._max_job_bytes:
            return self._too_large(record, raw)
        if oip.marked(record.headers):
            return self._read_oip(record, raw)
        try:
            job = decode_predict(raw)
        except DecodeError as exc:
            if is_inference_request(raw):  # an OIP request without the headers saying so
                return self._read_oip(record, raw)
            return self._rejected(record, raw, exc)
        if not self._share.serves(job.model):
            return None
        if len(raw) > MAX_METADATA_BYTES and _too_much(job.metadata):
            envelope = JobEnvelope(job.job_id, job.model, job.reply_to)
            return _Refusal(envelope, ErrorCode.TOO_LARGE, _METADATA_TOO_LARGE)
        return job

    def _read_oip(self, record: Record, raw: bytes) -> _Item | Outgoing | None:
        """An OIP record's job; or its refusal, or dead letter; None: another pool's."""
        try:
            job = oip.read(record, raw)
        except oip.OipRefusal as refused:
            return self._refusal(refused.envelope, refused.code, refused.message)
        except oip.OipUnreadable as exc:
            return self._dead_letter(record, ErrorCode.INVALID_INPUT, str(exc))
        if not self._share.serves(job.model):
            return None
        return job

    def _too_large(self, record: Record, raw: bytes) -> _Refusal | Outgoing | None:
        limit = (
            f"over this worker's limit of {self._max_job_bytes} bytes (maas worker --max-job-bytes)"
        )
        if oip.marked(record.headers):
            message = f"the request is {len(raw)} bytes, {limit}; send fewer rows per request"
            return self._refusal(oip.envelope_of(record), ErrorCode.TOO_LARGE, message)
        try:
            envelope = decode_address(raw)
        except DecodeError:
            return self._dead_letter(
                record, ErrorCode.TOO_LARGE, f"a record of {len(raw)} bytes, {limit}, not a job"
            )
        message = f"the job is {len(raw)} bytes, {limit}; send fewer rows per job"
        return self._refusal(envelope, ErrorCode.TOO_LARGE, message)

    def _rejected(self, record: Record, raw: bytes, exc: DecodeError) -> _Refusal | Outgoing | None:
        try:
            envelope = decode_envelope(raw)
        except DecodeError:
            return self._dead_letter(record, ErrorCode.INVALID_INPUT, f"not a PredictJob: {exc}")
        if len(raw) > MAX_METADATA_BYTES and _too_much(envelope.metadata):
            envelope = replace(envelope, metadata={})
        return self._refusal(envelope, ErrorCode.INVALID_INPUT, str(exc))

    def _refusal(self, envelope: JobEnvelope, code: ErrorCode, message: str) -> _Refusal | None:
        """None when the job names a model another pool serves: that pool answers it."""
        if envelope.model and not self._share.serves(envelope.model):
            return None
        return _Refusal(envelope, code, message)

    def _dead_letter(self, record: Record, code: ErrorCode, reason: str) -> Outgoing:
        return self._publisher.dead_letter_of(source_of(record), code=code, reason=reason)

    def _settled(self, record: Record, item: _Item) -> Accepted | Refused:
        """A job for the handler; a refusal answered now, on its reply topic."""
        if isinstance(item, PredictJob):
            return Accepted(record, item)
        result = self._error(item.envelope, item.code, item.message)
        return Refused(record, self.answer(record, item.envelope, result))

    def _misdirected(self, record: Record, item: _Item, problem: str) -> Outgoing:
        """``INVALID_INPUT`` on the results topic: ``problem`` with the job's reply_to."""
        address = _address(item)
        message = problem if isinstance(item, PredictJob) else f"{item.message}; {problem}"
        result = self._error(address, ErrorCode.INVALID_INPUT, message)
        return self.answer(
            record, address, result, topic=self._guard.namespace(record.topic).results
        )

    async def _refresh(self, since: float) -> str:
        """Read the cluster's topic list (unless read since ``since``); what to add to
        the answer to a job whose reply topic is missing: why the list may be stale."""
        try:
            await self._topics.refresh(since)
        except KafkaError as exc:
            log.warning("topic list not read; reply topics not checked", error=str(exc))
            return f" (the broker's topic list could not be read: {type(exc).__name__})"
        return ""

    def _verify(self, unverified: _Unverified, unreadable: str) -> Accepted | Refused | DeadLetter:
        """Settle a job whose reply topic the cluster has; answer the others, and
        dead-letter one whose own results topic is missing (deleted)."""
        record, item = unverified.record, unverified.item
        own = self._guard.namespace(record.topic).results
        topic = item.reply_to or own
        present = topic in (self._topics.known if unreadable else self._topics.listed)
        if present or (unreadable and topic == own):
            return self._settled(record, item)
        if topic == own:
            return DeadLetter(record, self._results_missing(record, topic))
        problem = (
            f"reply_to topic {topic!r} does not exist{unreadable}; maas answers only on "
            "existing topics: create it before sending jobs that name it"
        )
        return Refused(record, self._misdirected(record, item, problem))

    def _results_missing(self, record: Record, topic: str) -> Outgoing:
        """The dead letter of a job whose tenant's results topic is missing (deleted):
        logged, never lost; the worker creates the topic again within seconds."""
        log.error(
            "results topic missing; dead-lettering the job",
            topic=topic,
            job_topic=record.topic,
            partition=record.partition,
            offset=record.offset,
        )
        reason = (
            f"the results topic {topic!r} does not exist (deleted?); the worker creates it "
            "again within seconds: send the job again then"
        )
        return self._dead_letter(record, ErrorCode.INTERNAL, reason)

    def _error(
        self,
        job: PredictJob | JobEnvelope,
        code: ErrorCode,
        message: str,
        result: Result | None = None,
    ) -> Result:
        """An error Result for ``job``, echoing its metadata only where that is safe."""
        return error_result(
            job.job_id,
            code,
            message,
            model=job.model,
            version=None if result is None else result.version,
            metadata=None if code == ErrorCode.TOO_LARGE else job.metadata,
            worker=self._worker,
        )


_UNENCODABLE = "internal error: the model's outputs could not be written as JSON"
_METADATA_TOO_LARGE = (
    f"the job's metadata is over {MAX_METADATA_BYTES} bytes, the most a Result echoes; "
    "keep bulky data out of metadata"
)


def _too_much(metadata: dict[str, Any]) -> bool:
    return bool(metadata) and len(msgspec.json.encode(metadata)) > MAX_METADATA_BYTES
