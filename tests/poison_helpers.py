"""Writing records no well-behaved client writes: header keys that are not UTF-8.

aiokafka's producer takes header keys as ``str`` only, so records are built with a
placeholder key of the same length (``\\x01`` bytes, which JSON text never holds), and
the built batch is patched and its CRC computed again before it is sent.
"""

from __future__ import annotations

import struct
from dataclasses import dataclass, field

from aiokafka import AIOKafkaProducer
from aiokafka.record.util import calc_crc32c

from producer.kafka import KafkaSettings

_CRC_AT, _CRC_FROM = 17, 21  # where a v2 batch's CRC lies, and where what it covers starts
_PLACEHOLDER = 1


@dataclass(frozen=True)
class Raw:
    """A record to write: header keys are bytes, any bytes."""

    value: bytes | None
    key: bytes | None = None
    headers: list[tuple[bytes, bytes]] = field(default_factory=list)


def _placeholder(key: bytes) -> str:
    return key.decode() if _valid(key) else chr(_PLACEHOLDER) * len(key)


async def send_raw(
    kafka: KafkaSettings, topic: str, partition: int, records: list[Raw]
) -> list[int]:
    """Write ``records`` in order to one partition, in as few record batches as fit in
    1 MiB each; returns the offset of each record."""
    producer = AIOKafkaProducer(
        bootstrap_servers=kafka.bootstrap_servers,
        max_batch_size=1024 * 1024,
        max_request_size=64 * 1024 * 1024,
    )
    await producer.start()
    offsets: list[int] = []
    try:
        pending = list(records)
        while pending:
            batch, patches, count = producer.create_batch(), list[bytes](), 0
            while pending:
                record = pending[0]
                headers = [(_placeholder(k), v) for k, v in record.headers]
                appended = batch.append(
                    key=record.key, value=record.value, timestamp=None, headers=headers
                )
                if appended is None:  # full: the first record always fits an empty one
                    break
                patches += [k for k, _ in record.headers if not _valid(k)]
                pending.pop(0)
                count += 1
            _patch(batch, patches)
            sent = await producer.send_batch(batch, topic, partition=partition)
            base = (await sent).offset
            offsets += range(base, base + count)
    finally:
        await producer.stop()
    return offsets


def _valid(key: bytes) -> bool:
    try:
        key.decode()
    except UnicodeDecodeError:
        return False
    return True


def _patch(batch: object, keys: list[bytes]) -> None:
    """Put the real bytes of ``keys`` (in order) where their placeholders are."""
    if not keys:
        return
    buffer: bytearray = batch._build()  # type: ignore[attr-defined]
    at = 0
    for key in keys:
        at = buffer.index(bytes([_PLACEHOLDER]) * len(key), at)
        buffer[at : at + len(key)] = key
        at += len(key)
    struct.pack_into(">I", buffer, _CRC_AT, calc_crc32c(bytes(buffer[_CRC_FROM:])))
