"""Publishing answers: results with retries and backoff, dead letters with error headers.

A record maas publishes always fits: :meth:`Publisher.fits` tells whether an answer is
within the producer's ``max_request_size`` (``max_record_bytes``) so that the caller
can answer ``TOO_LARGE`` instead, and a dead letter is cut to fit, saying so in its
``maas.error.truncated`` header. The ``maas.error.*`` and ``maas.source.*`` headers
are maas's own: a client's are removed from whatever maas publishes, so a dead
letter's reason and origin cannot be forged. Waiting for a topic's metadata never
holds the lock that orders enqueueing, and is bounded (``metadata_timeout_s``).
"""

from __future__ import annotations

import asyncio
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass
from typing import Any, Protocol

import msgspec
import structlog
from aiokafka import AIOKafkaClient, AIOKafkaProducer
from aiokafka.errors import KafkaError, KafkaTimeoutError
from prometheus_client import Counter

from producer.aiokafka_internals import BatchBuilder
from producer.contract.messages import DecodeError, ErrorCode, JobEnvelope, decode_envelope, encode
from workers import defaults
from workers.errors import WorkerError
from workers.kafka.partitioning import partitions_of

log = structlog.get_logger(__name__)

Headers = Sequence[tuple[str, bytes]]

DEAD_LETTERS = Counter("maas_dead_letters", "Records sent to the dead-letter topic", ["code"])
for _code in ErrorCode:  # every series from the start, so that rate() sees the first one
    DEAD_LETTERS.labels(_code.value)
DEFAULT_MAX_RECORD_BYTES = defaults.MAX_RECORD_BYTES  # Kafka's default record limit
# Room left in a record for the record batch's own header and the length fields.
RECORD_OVERHEAD = 1024
_MAX_REASON_BYTES = 4096
# A dead letter the broker refused as too large (its limit below the producer's) is
# sent again cut to this size, which any broker takes.
BARE_DEAD_LETTER_BYTES = 64 * 1024
_OWN_HEADERS = ("maas.error.", "maas.source.")


def without_own_headers(headers: Headers) -> Headers:
    """``headers`` less the ``maas.error.*`` / ``maas.source.*`` ones, which only maas sets."""
    if not headers:
        return ()
    return tuple(h for h in headers if not h[0].startswith(_OWN_HEADERS))


def _headers_bytes(headers: Headers) -> int:
    return sum(len(key.encode()) + len(value or b"") for key, value in headers)


def record_bytes(message: Outgoing) -> int:
    """What ``message`` weighs against a producer's ``max_request_size``, less the
    record batch's overhead."""
    size = len(message.value) + len(message.key or b"")
    return size + _headers_bytes(message.headers) if message.headers else size


@dataclass(frozen=True, slots=True)
class Source:
    """Where a record came from, for dead-letter headers."""

    topic: str
    partition: int
    offset: int
    key: bytes | None
    value: bytes | None
    headers: Headers


class Record(Protocol):
    """The fields of an aiokafka ConsumerRecord that the workers use (read-only)."""

    @property
    def topic(self) -> str: ...

    @property
    def partition(self) -> int: ...

    @property
    def offset(self) -> int: ...

    @property
    def key(self) -> bytes | None: ...

    @property
    def value(self) -> bytes | None: ...

    @property
    def headers(self) -> Sequence[tuple[str, bytes]]: ...


def source_of(record: Record) -> Source:
    return Source(
        topic=record.topic,
        partition=record.partition,
        offset=record.offset,
        key=record.key,
        value=record.value,
        headers=tuple(record.headers),
    )


class PublishFailed(WorkerError):
    """A record could not be published after every retry. ``retriable`` is False when
    the broker refused it for good (too large for the topic, a topic the producer may
    not write): the record is poison, not the broker, and trying again cannot help."""

    def __init__(self, message: str, *, retriable: bool = True) -> None:
        super().__init__(message)
        self.retriable = retriable


@dataclass(frozen=True, slots=True)
class Outgoing:
    """A record to publish."""

    topic: str
    value: bytes
    key: bytes | None
    headers: Headers = ()


@dataclass(frozen=True, slots=True)
class _Cut:
    """A dead letter's parts, cut to fit; ``truncated`` says what was cut, and from what."""

    key: bytes | None
    value: bytes
    headers: Headers
    truncated: str


def _cut(source: Source, room: int) -> _Cut:
    """Keep ``source``'s key, headers and value in that order of priority, within
    ``room`` bytes; what does not fit is cut (key, value) or dropped (headers)."""
    key, value, headers = source.key, source.value or b"", without_own_headers(source.headers)
    cuts = []
    if key is not None and len(key) > room // 4:
        cuts.append(f"key={len(key)}")
        key = key[: room // 4]
    room -= len(key or b"")
    if headers and _headers_bytes(headers) > room // 2:
        cuts.append(f"headers={len(headers)}")
        headers = ()
    room -= _headers_bytes(headers)
    if len(value) > room:
        cuts.append(f"value={len(value)}")
        value = value[: max(room, 0)]
    return _Cut(key, value, headers, ",".join(cuts))


def _by_topic(messages: Sequence[Outgoing]) -> dict[str, list[int]]:
    groups: dict[str, list[int]] = {}
    for index, message in enumerate(messages):
        groups.setdefault(message.topic, []).append(index)
    return groups


def _append(batch: BatchBuilder, message: Outgoing) -> bool:
    headers = list(message.headers)
    return (
        batch.append(key=message.key, value=message.value, timestamp=None, headers=headers)
        is not None
    )


@dataclass(frozen=True, slots=True)
class PublishSettings:
    """How a :class:`Publisher` sends: where dead letters go, how often and how long a
    failed send is tried again, and the sizes its producer was made with
    (``batch_bytes``: its ``max_batch_size``; ``max_record_bytes``: its
    ``max_request_size``); ``metadata_timeout_s``: the longest a send waits to learn a
    topic's partitions."""

    dlq_topic: str
    retries: int = 5
    backoff_s: float = 0.1
    max_backoff_s: float = 5.0
    batch_bytes: int = 16384
    max_record_bytes: int = DEFAULT_MAX_RECORD_BYTES
    metadata_timeout_s: float = 10.0


class Publisher:
    """Sends records and waits for the broker's acknowledgement, retrying transient errors."""

    def __init__(self, producer: AIOKafkaProducer, settings: PublishSettings) -> None:
        self._producer = producer
        self._settings = settings
        self.max_record_bytes = settings.max_record_bytes
        self._room = settings.max_record_bytes - RECORD_OVERHEAD
        # aiokafka's accumulator handles one enqueuer well and many concurrent ones badly
        # (they wake and retry together whenever a batch drains): measured 2.2k vs 23k
        # records/s on the embedded broker. Enqueue one at a time; acks are awaited freely.
        self._enqueue = asyncio.Lock()

    @property
    def producer(self) -> AIOKafkaProducer:
        """The producer it sends with (its transactions, when it has a transactional id)."""
        return self._producer

    @property
    def client(self) -> AIOKafkaClient:
        """The producer's client: cluster metadata, requests of one's own."""
        client: AIOKafkaClient = self._producer.client
        return client

    def fits(self, message: Outgoing) -> bool:
        """Whether ``message`` is small enough for the producer to send."""
        if message.headers:
            return record_bytes(message) <= self._room
        return len(message.value) + len(message.key or b"") <= self._room  # the usual case

    async def _partitions(self, topic: str) -> list[int]:
        """``topic``'s partitions, waiting at most ``metadata_timeout_s`` to learn them."""
        try:
            async with asyncio.timeout(self._settings.metadata_timeout_s):
                return sorted(await self._producer.partitions_for(topic))
        except TimeoutError as exc:
            raise KafkaTimeoutError(f"no metadata for topic {topic!r}") from exc

    async def send(
        self, topic: str, value: bytes, *, key: bytes | None, headers: Headers = ()
    ) -> None:
        """Publish and wait for the ack; raises :class:`PublishFailed` after all retries."""
        settings = self._settings
        delay = settings.backoff_s
        for attempt in range(settings.retries + 1):
            try:
                await self._partitions(topic)  # not under the lock: it may wait
                async with self._enqueue:
                    ack = await self._producer.send(topic, value, key=key, headers=list(headers))
                await ack
                return
            except KafkaError as exc:
                retriable = bool(getattr(exc, "retriable", True))
                if attempt == settings.retries or not retriable:
                    message = f"{type(exc).__name__}: {exc}"
                    raise PublishFailed(message, retriable=retriable) from exc
                log.warning(
                    "publish failed, retrying", topic=topic, attempt=attempt + 1, error=str(exc)
                )
                await asyncio.sleep(delay)
                delay = min(delay * 2, settings.max_backoff_s)

    async def send_many(self, messages: Sequence[Outgoing]) -> list[PublishFailed | None]:
        """Publish a whole poll's answers: one record batch per partition, then the acks.

        Records go to the partition aiokafka's default partitioner gives their key, as
        :meth:`send` would. Returns, per message, None once the broker acknowledged it or
        the :class:`PublishFailed` that ended its retries (failures retry one by one).
        """
        one_by_one: list[int] = []  # failed, or too big to share a batch: retried singly
        acks: list[tuple[list[int], asyncio.Future[Any]]] = []
        by_topic = _by_topic(messages)
        known = await asyncio.gather(
            *(self._partitions(topic) for topic in by_topic), return_exceptions=True
        )
        async with self._enqueue:
            for (topic, indices), partitions in zip(by_topic.items(), known, strict=True):
                if isinstance(partitions, BaseException):
                    one_by_one.extend(indices)
                    continue
                await self._send_batches(topic, partitions, messages, indices, acks, one_by_one)
        settled = await asyncio.gather(*(ack for _, ack in acks), return_exceptions=True)
        for (batched, _), outcome in zip(acks, settled, strict=True):
            if isinstance(outcome, BaseException):
                one_by_one.extend(batched)
        errors: list[PublishFailed | None] = [None] * len(messages)
        retried = await asyncio.gather(*(self._retry(messages[i]) for i in one_by_one))
        for index, error in zip(one_by_one, retried, strict=True):
            errors[index] = error
        return errors

    async def _send_batches(
        self,
        topic: str,
        partitions: list[int],
        messages: Sequence[Outgoing],
        indices: list[int],
        acks: list[tuple[list[int], asyncio.Future[Any]]],
        one_by_one: list[int],
    ) -> None:
        by_partition: dict[int, list[int]] = {}
        keys = [messages[index].key for index in indices]
        for index, partition in zip(indices, partitions_of(keys, partitions), strict=True):
            by_partition.setdefault(partition, []).append(index)
        for partition, members in by_partition.items():
            for batch, batched in self._batches(messages, members, one_by_one):
                try:
                    acks.append(
                        (
                            batched,
                            await self._producer.send_batch(batch, topic, partition=partition),
                        )
                    )
                except KafkaError:
                    one_by_one.extend(batched)

    def _batches(
        self, messages: Sequence[Outgoing], indices: list[int], oversized: list[int]
    ) -> Iterator[tuple[BatchBuilder, list[int]]]:
        """Record batches of up to ``batch_bytes`` holding ``indices``; a record bigger
        than that goes to ``oversized``, for :meth:`send` (a batch of its own, or the
        producer's MessageSizeTooLargeError)."""
        batch, batched = self._producer.create_batch(), list[int]()
        for index in indices:
            m = messages[index]
            if len(m.value) + len(m.key or b"") > self._settings.batch_bytes:
                oversized.append(index)
                continue
            if not _append(batch, m):  # full: the first record always fits an empty one
                batch.close()
                yield batch, batched
                batch, batched = self._producer.create_batch(), list[int]()
                _append(batch, m)
            batched.append(index)
        if batched:
            batch.close()
            yield batch, batched

    async def _retry(self, message: Outgoing) -> PublishFailed | None:
        try:
            await self.publish(message)
        except PublishFailed as exc:
            return exc
        return None

    async def publish(self, message: Outgoing) -> None:
        """:meth:`send` an :class:`Outgoing`; raises :class:`PublishFailed`."""
        await self.send(message.topic, message.value, key=message.key, headers=message.headers)

    async def dead_letter(self, source: Source, *, code: str, reason: str) -> None:
        """Send the original bytes to the dead-letter topic with headers saying why."""
        await self.publish(self.dead_letter_of(source, code=code, reason=reason))

    def dead_letter_of(
        self, source: Source, *, code: str, reason: str, max_bytes: int | None = None
    ) -> Outgoing:
        """The dead-letter record for ``source``: its original key, headers and bytes,
        and headers saying why and whence. What would not fit in ``max_bytes`` (default:
        the largest record the producer sends) is cut, and ``maas.error.truncated``
        lists the parts cut with their original sizes (``value=105000000``)."""
        own = [
            ("maas.error.code", code.encode()),
            ("maas.error.message", reason.encode()[:_MAX_REASON_BYTES]),
            ("maas.source.topic", source.topic.encode()),
            ("maas.source.partition", str(source.partition).encode()),
            ("maas.source.offset", str(source.offset).encode()),
        ]
        DEAD_LETTERS.labels(code).inc()
        room = (max_bytes or self.max_record_bytes) - RECORD_OVERHEAD - _headers_bytes(own)
        cut = _cut(source, room - 64)  # 64: the truncated header, if any
        if cut.truncated:
            own.append(("maas.error.truncated", cut.truncated.encode()))
        log.warning(
            "dead-lettering record",
            topic=source.topic,
            partition=source.partition,
            offset=source.offset,
            code=code,
            reason=reason,
            truncated=cut.truncated or None,
        )
        return Outgoing(self._settings.dlq_topic, cut.value, cut.key, (*cut.headers, *own))

    def rejection(
        self,
        record: Record,
        exc: DecodeError,
        *,
        expected: str,
        answer: Callable[[JobEnvelope], msgspec.Struct],
        results_topic: str,
    ) -> Outgoing:
        """What to publish for a record that is not a valid ``expected`` job: the answer
        ``answer(envelope)`` when it names a job_id, else a dead letter."""
        try:
            envelope = decode_envelope(record.value or b"")
        except DecodeError:
            return self.dead_letter_of(
                source_of(record), code=ErrorCode.INVALID_INPUT, reason=f"not a {expected}: {exc}"
            )
        return Outgoing(
            envelope.reply_to or results_topic,
            encode(answer(envelope)),
            envelope.job_id.encode(),
            without_own_headers(record.headers),
        )
