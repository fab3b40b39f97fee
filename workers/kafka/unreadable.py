"""Records that aiokafka cannot hand over: a header key that is not valid UTF-8.

aiokafka decodes record header keys inside ``getmany()``. One record with a key that
is not UTF-8 makes every poll that reaches it raise ``UnicodeDecodeError``, for ever:
the consumer never gets past it, and the records of other partitions drained in the
same call are lost with the exception. :func:`salvage` reads each assigned partition
again itself, as raw record batches (one Fetch request through a client of the
caller's) parsed here without decoding header keys. Where it finds such a record, the
caller gets the partition's records through the end of that record's batch (the
unreadable ones marked, to dead-letter) and the partition is sought past the batch;
every other partition is sought back to where the caller goes on reading, so
nothing drained and lost with the exception is skipped.
"""

from __future__ import annotations

import asyncio
import struct
from collections.abc import Callable, Iterator
from dataclasses import dataclass, replace

import structlog
from aiokafka import AIOKafkaClient, AIOKafkaConsumer, TopicPartition
from aiokafka.errors import KafkaError, for_code

from producer.aiokafka_internals import (
    decode_varint,
    fetch_request,
    gzip_decode,
    lz4_decode,
    snappy_decode,
    zstd_decode,
)

log = structlog.get_logger(__name__)

__all__ = ["RawBatch", "RawRecord", "parse_batches", "read_raw", "salvage"]

# Record batch v2: base offset, length, leader epoch, magic, crc, attributes, last
# offset delta, first and max timestamps, producer id and epoch, base sequence, count.
_BATCH = struct.Struct(">qiibIhiqqqhii")
_LENGTH_PREFIX = 12  # base offset and length: the length counts the bytes after them
_DECOMPRESS: dict[int, Callable[[bytes], bytes]] = {
    1: gzip_decode,
    2: snappy_decode,
    3: lz4_decode,
    4: zstd_decode,
}
_CONTROL = 0x20
_LOG_APPEND_TIME = 0x08


@dataclass(frozen=True, slots=True)
class RawRecord:
    """A record as :func:`parse_batches` reads it: the fields the workers use, header
    keys that are not UTF-8 decoded with backslash escapes, and ``unreadable`` set
    for a record that has one (aiokafka would raise on it)."""

    topic: str
    partition: int
    offset: int
    timestamp: int
    key: bytes | None
    value: bytes | None
    headers: tuple[tuple[str, bytes], ...]
    unreadable: bool


class _Reader:
    """Reads the fields of one record after another from a batch's records section."""

    def __init__(self, data: bytes) -> None:
        self.data, self.pos = data, 0

    def varint(self) -> int:
        value: int
        value, self.pos = decode_varint(self.data, self.pos)
        return value

    def take(self, size: int) -> bytes | None:
        if size < 0:
            return None
        start, self.pos = self.pos, self.pos + size
        if self.pos > len(self.data):
            raise ValueError("record runs past the end of its batch")
        return self.data[start : self.pos]


def _header_key(raw: bytes) -> tuple[str, bool]:
    try:
        return raw.decode(), True
    except UnicodeDecodeError:
        return raw.decode("utf-8", "backslashreplace"), False


def _records(
    body: bytes, count: int, base: int, first_ts: int, tp: TopicPartition
) -> Iterator[RawRecord]:
    reader = _Reader(body)
    for _ in range(count):
        reader.varint()  # the record's length
        reader.pos += 1  # attributes, unused
        timestamp = first_ts + reader.varint()
        offset = base + reader.varint()
        key = reader.take(reader.varint())
        value = reader.take(reader.varint())
        headers, readable = [], True
        for _ in range(reader.varint()):
            name, ok = _header_key(reader.take(reader.varint()) or b"")
            headers.append((name, reader.take(reader.varint()) or b""))
            readable = readable and ok
        yield RawRecord(
            tp.topic, tp.partition, offset, timestamp, key, value, tuple(headers), not readable
        )


@dataclass(frozen=True, slots=True)
class RawBatch:
    """The records of one record batch, and the offset after it."""

    records: list[RawRecord]
    next_offset: int


def parse_batches(data: bytes, tp: TopicPartition) -> Iterator[RawBatch]:
    """The v2 record batches in ``data`` (a Fetch response's records for ``tp``),
    control batches left out; a partial batch at the end is ignored. Raises
    ValueError on a batch that does not parse."""
    pos = 0
    while pos + _BATCH.size <= len(data):
        (base, length, _, magic, _, attributes, last_delta, first_ts, max_ts, *_, count) = (
            _BATCH.unpack_from(data, pos)
        )
        end = pos + _LENGTH_PREFIX + length
        if length <= 0 or end > len(data):  # corrupt, or the rest is in the next fetch
            return
        if magic == 2 and not attributes & _CONTROL:
            body = data[pos + _BATCH.size : end]
            codec = attributes & 0x07
            if codec:
                body = _DECOMPRESS[codec](body)
            records = list(_records(body, count, base, first_ts, tp))
            if attributes & _LOG_APPEND_TIME:
                records = [replace(r, timestamp=max_ts) for r in records]
            yield RawBatch(records, base + last_delta + 1)
        pos = end


async def read_raw(
    client: AIOKafkaClient, tp: TopicPartition, offset: int, *, max_bytes: int
) -> list[RawBatch]:
    """The record batches of ``tp`` from the one holding ``offset`` on, as far as one
    Fetch of ``max_bytes`` reaches (at least one whole batch), read from its leader
    through ``client``."""
    await client.add_topic(tp.topic)
    leader = client.cluster.leader_for_partition(tp)
    if leader is None or leader < 0:
        raise KafkaError(f"no leader known for {tp}")
    # Wait up to 100 ms for data: the embedded broker answers a wait of 0 with nothing.
    request = fetch_request(tp.topic, tp.partition, offset, max_bytes=max_bytes, max_wait_ms=100)
    response = await client.send(leader, request)
    batches: list[RawBatch] = []
    for _, partitions in response.topics:
        for _, error_code, _, *data in partitions:
            if error_code:
                raise for_code(error_code)(f"fetching {tp} at offset {offset}")
            batches.extend(parse_batches(bytes(data[-1]), tp))
    return batches


async def salvage(
    consumer: AIOKafkaConsumer,
    client: AIOKafkaClient,
    resume_at: Callable[[TopicPartition], int | None],
    *,
    max_bytes: int,
) -> dict[TopicPartition, list[RawRecord]]:
    """After ``consumer.getmany()`` raised UnicodeDecodeError: read every assigned
    partition raw from ``resume_at(tp)`` (where the caller goes on reading; None: the
    group's committed offset, else the beginning). Where a batch holds an unreadable
    record, return that partition's records up to the end of that batch (aiokafka
    decodes a whole batch, so it cannot read past the bad record within it) and seek
    past it; seek every other partition back to where the caller goes on. When there
    is nothing to get past (or the partitions could not be read), wait a second before
    returning nothing, so that a caller polling again does not spin."""
    try:
        found = await _salvage(consumer, client, resume_at, max_bytes)
    except (KafkaError, ValueError) as exc:
        log.error("partitions not read raw after a header decoding error", error=repr(exc))
        found = {}
    if not found:
        await asyncio.sleep(1.0)
    for tp, records in found.items():
        bad = [record.offset for record in records if record.unreadable]
        log.warning("records with undecodable header keys", partition=tp.partition, offsets=bad)
    return found


async def _salvage(
    consumer: AIOKafkaConsumer,
    client: AIOKafkaClient,
    resume_at: Callable[[TopicPartition], int | None],
    max_bytes: int,
) -> dict[TopicPartition, list[RawRecord]]:
    found: dict[TopicPartition, list[RawRecord]] = {}
    for tp in sorted(consumer.assignment()):
        start = resume_at(tp)
        if start is None:
            start = await consumer.committed(tp)
        if start is None:
            start = (await consumer.beginning_offsets([tp]))[tp]
        records: list[RawRecord] = []
        for batch in await read_raw(client, tp, start, max_bytes=max_bytes):
            records.extend(r for r in batch.records if r.offset >= start)
            if any(r.unreadable for r in batch.records):
                found[tp] = records
                consumer.seek(tp, batch.next_offset)
                break
        else:
            consumer.seek(tp, start)
    return found
