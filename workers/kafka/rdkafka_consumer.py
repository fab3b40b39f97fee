"""A librdkafka group member with the asyncio face the serving loop polls.

:class:`RdkafkaConsumer` wraps ``confluent_kafka.Consumer`` in the part of
``AIOKafkaConsumer``'s interface that the loop, its flow control and its delivery use
(``getmany``, ``pause``/``resume``/``paused``, ``assignment``, ``seek``, ``commit``,
``partitions_for_topic``, and ``highwater``/``position`` for the probes' lag gauge), keyed by aiokafka's ``TopicPartition`` so that the offset
bookkeeping is the same for both transports.

librdkafka fetches in its own threads; its ``consume()`` blocks, so each poll runs it
in one thread of this consumer's own (a thread hop per poll, not per record) and its
records come back as :class:`RdRecord`. Rebalance callbacks run inside ``consume()``:
a revocation is handed to the listener's coroutine on the event loop (which drains and
commits the revoked partitions, :meth:`~workers.serving.loop.Worker.release`) and the
consume thread waits for it, so partitions are let go only after their commit.
Pausing is the loop's flow control, toggled often; librdkafka drops what it fetched
ahead for a partition it pauses and fetches it again on resume, so a pause here first
only holds back the records that keep coming (returned on resume, in order) and pauses
librdkafka too once ``HOLD_RECORDS`` are held for a partition. Commits are synchronous in a worker thread: an offset is marked committed only once the
broker said so. Errors become aiokafka's, which the shared code already classifies.
"""

from __future__ import annotations

import asyncio
import re
import threading
from collections.abc import Mapping
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from typing import Any

import confluent_kafka
import structlog
from aiokafka import ConsumerRebalanceListener, TopicPartition
from aiokafka.errors import CommitFailedError, KafkaError

log = structlog.get_logger(__name__)

_REVOKE_TIMEOUT_S = 120.0  # the listener drains within its own bound (drain_timeout_s)
_CLOSE_TIMEOUT_S = 10.0
# Records held for a paused partition before librdkafka is told to stop fetching it.
HOLD_RECORDS = 2000


@dataclass(frozen=True, slots=True)
class RdRecord:
    """A consumed record: the fields of aiokafka's ConsumerRecord the workers read."""

    topic: str
    partition: int
    offset: int
    timestamp: int
    key: bytes | None
    value: bytes | None
    headers: tuple[tuple[str, bytes], ...]


def posix_pattern(pattern: str) -> str:
    """``pattern`` (a Python regular expression) in the POSIX extended syntax librdkafka
    compiles: its non-capturing groups become plain groups."""
    return pattern.replace("(?:", "(")


def _record(message: confluent_kafka.Message) -> RdRecord:
    headers = message.headers()
    return RdRecord(
        topic=message.topic() or "",
        partition=message.partition() or 0,
        offset=message.offset() or 0,
        timestamp=message.timestamp()[1],
        key=message.key(),
        value=message.value(),
        headers=_headers(headers) if headers else (),
    )


def _headers(headers: Any) -> tuple[tuple[str, bytes], ...]:
    """librdkafka's header list, values as bytes (a header without a value: empty)."""
    return tuple((key, value if isinstance(value, bytes) else b"") for key, value in headers)


def _tp(partition: confluent_kafka.TopicPartition) -> TopicPartition:
    return TopicPartition(partition.topic, partition.partition)


class RdkafkaConsumer:
    """A ``confluent_kafka.Consumer`` subscribed to ``topic`` (a compiled pattern: every
    topic it matches), polled from asyncio. :meth:`start` on the running loop first."""

    def __init__(
        self,
        config: Mapping[str, Any],
        topic: str | re.Pattern[str],
        *,
        listener: ConsumerRebalanceListener | None = None,
        max_records: int = 1000,
    ) -> None:
        self._consumer = confluent_kafka.Consumer(dict(config))
        self._topic = posix_pattern(topic.pattern) if isinstance(topic, re.Pattern) else topic
        self._listener = listener
        self._max_records = max_records
        self._poller = ThreadPoolExecutor(1, thread_name_prefix="rdkafka-consume")
        self._loop: asyncio.AbstractEventLoop | None = None
        self._assigned: set[TopicPartition] = set()
        self._paused: set[TopicPartition] = set()  # as the loop paused them
        self._stopped: set[TopicPartition] = set()  # paused in librdkafka too
        self._held: dict[TopicPartition, list[RdRecord]] = {}  # read while paused
        self._lock = threading.Lock()  # the sets change in the consume thread
        self._closed = False

    async def start(self) -> None:
        """Subscribe; the group is joined by the first polls."""
        self._loop = asyncio.get_running_loop()
        self._consumer.subscribe(
            [self._topic], on_assign=self._on_assign, on_revoke=self._on_revoke
        )

    def _on_assign(self, _: Any, partitions: list[confluent_kafka.TopicPartition]) -> None:
        assigned = {_tp(p) for p in partitions}
        with self._lock:
            self._assigned |= assigned
        if self._listener is not None and self._loop is not None:
            self._call(self._listener.on_partitions_assigned(assigned))

    def _on_revoke(self, _: Any, partitions: list[confluent_kafka.TopicPartition]) -> None:
        revoked = {_tp(p) for p in partitions}
        log.info("partitions revoked", partitions=sorted(tp.partition for tp in revoked))
        if self._listener is not None and self._loop is not None and not self._loop.is_closed():
            self._call(self._listener.on_partitions_revoked(revoked))
        with self._lock:
            stopped = self._stopped & revoked
            self._assigned -= revoked
            self._paused -= revoked
            self._stopped -= revoked
            for tp in revoked:
                self._held.pop(tp, None)
        if stopped:  # librdkafka keeps a partition's pause past its revocation
            self._consumer.resume([confluent_kafka.TopicPartition(t, p) for t, p in stopped])

    def _call(self, coroutine: Any) -> None:
        """Run a listener's coroutine on the loop and wait for it (in the consume thread)."""
        assert self._loop is not None
        future = asyncio.run_coroutine_threadsafe(coroutine, self._loop)
        try:
            future.result(_REVOKE_TIMEOUT_S)
        except Exception:
            log.exception("rebalance listener failed")

    async def getmany(self, timeout_ms: int = 0) -> dict[TopicPartition, list[RdRecord]]:
        """Records of one ``consume()`` by partition, waiting up to ``timeout_ms``."""
        loop = asyncio.get_running_loop()
        return await loop.run_in_executor(self._poller, self._consume, timeout_ms / 1000)

    def _consume(self, timeout_s: float) -> dict[TopicPartition, list[RdRecord]]:
        if self._closed:
            return {}
        with self._lock:
            ready = {tp: self._held.pop(tp) for tp in list(self._held) if tp not in self._paused}
            all_paused = bool(self._assigned) and self._assigned <= self._paused
        if ready:  # held while paused, now resumed: these come first
            return ready
        batch: dict[TopicPartition, list[RdRecord]] = {}
        for message in self._messages(1 if all_paused else self._max_records, timeout_s):
            error = message.error()
            if error is not None:
                if error.code() != confluent_kafka.KafkaError._PARTITION_EOF:
                    log.warning("consume error", error=error.str(), retriable=error.retriable())
                continue
            record = _record(message)
            tp = TopicPartition(record.topic, record.partition)
            if tp in self._paused:
                self._hold(tp, record)
            else:
                batch.setdefault(tp, []).append(record)
        return batch

    def _messages(self, most: int, timeout_s: float) -> list[confluent_kafka.Message]:
        """Up to ``most`` records: those there now, else the first to come within
        ``timeout_s`` with those that came with it (``consume(n, timeout)`` itself waits
        for ``n`` records or the whole timeout). Rebalance callbacks run in here."""
        messages = self._consumer.consume(most, 0)
        if messages:
            return messages
        first = self._consumer.poll(timeout_s)
        if first is None:
            return []
        return [first, *self._consumer.consume(most - 1, 0)] if most > 1 else [first]

    def _hold(self, tp: TopicPartition, record: RdRecord) -> None:
        """Keep ``record`` of paused ``tp`` for its resumption; past ``HOLD_RECORDS``,
        stop librdkafka fetching more of it."""
        with self._lock:
            held = self._held.setdefault(tp, [])
            held.append(record)
            stop = len(held) >= HOLD_RECORDS and tp not in self._stopped
            if stop:
                self._stopped.add(tp)
        if stop:
            self._consumer.pause([confluent_kafka.TopicPartition(tp.topic, tp.partition)])

    def assignment(self) -> set[TopicPartition]:
        with self._lock:
            return set(self._assigned)

    def paused(self) -> set[TopicPartition]:
        with self._lock:
            return set(self._paused)

    def pause(self, *partitions: TopicPartition) -> None:
        with self._lock:
            self._paused |= set(partitions) & self._assigned

    def resume(self, *partitions: TopicPartition) -> None:
        with self._lock:
            resumed = set(partitions)
            stopped = self._stopped & resumed
            self._paused -= resumed
            self._stopped -= stopped
        if stopped:
            self._consumer.resume([confluent_kafka.TopicPartition(t, p) for t, p in stopped])

    def seek(self, partition: TopicPartition, offset: int) -> None:
        topic, number = partition
        with self._lock:
            self._held.pop(partition, None)  # read again from ``offset``
        self._consumer.seek(confluent_kafka.TopicPartition(topic, number, offset))

    def highwater(self, partition: TopicPartition) -> int | None:
        """The log's end as of the last fetch (the probes' lag gauge)."""
        topic, number = partition
        try:
            _, high = self._consumer.get_watermark_offsets(
                confluent_kafka.TopicPartition(topic, number), cached=True
            )
        except confluent_kafka.KafkaException:
            return None
        return int(high) if high >= 0 else None

    async def position(self, partition: TopicPartition) -> int | None:
        """The offset of the next record to consume from ``partition`` (None: unknown)."""
        topic, number = partition
        try:
            [found] = self._consumer.position([confluent_kafka.TopicPartition(topic, number)])
        except confluent_kafka.KafkaException:
            return None
        return int(found.offset) if found.offset >= 0 else None

    def group_metadata(self) -> Any:
        """The group's generation and member id, for a transaction's offsets (KIP-447)."""
        return self._consumer.consumer_group_metadata()

    async def commit(self, offsets: Mapping[TopicPartition, int]) -> None:
        """Commit ``offsets`` and wait for the broker's answer; raises aiokafka's
        CommitFailedError when it refuses (the group moved on) or cannot be reached."""
        wanted = [confluent_kafka.TopicPartition(t, p, o) for (t, p), o in offsets.items()]
        log.debug("committing", offsets=len(wanted))
        try:
            await asyncio.to_thread(self._consumer.commit, offsets=wanted, asynchronous=False)
        except confluent_kafka.KafkaException as exc:
            raise CommitFailedError(str(exc.args[0] if exc.args else exc)) from exc

    def partitions_for_topic(self, topic: str) -> set[int]:
        """``topic``'s partitions as the cluster says now (briefly blocking: rare use)."""
        try:
            metadata = self._consumer.list_topics(topic, timeout=0.5)
        except confluent_kafka.KafkaException:
            return set()
        found = metadata.topics.get(topic)
        return set(found.partitions) if found is not None and found.error is None else set()

    async def stop(self) -> None:
        """Leave the group (revoking: the listener commits) and close."""
        if self._closed:
            return
        loop = asyncio.get_running_loop()
        try:
            await asyncio.wait_for(
                loop.run_in_executor(self._poller, self._close), _CLOSE_TIMEOUT_S
            )
        except (TimeoutError, KafkaError, confluent_kafka.KafkaException) as exc:
            log.warning("consumer did not close cleanly", error=str(exc))
        self._poller.shutdown(wait=False)

    def _close(self) -> None:
        self._consumer.close()
        self._closed = True
