"""The raw record-batch reader that gets the worker past records aiokafka cannot decode:
it must read every batch as aiokafka does, compressed or not, and mark, not fail on,
header keys that are not UTF-8. (Through the broker: tests/faults/test_poison.py.)"""

from __future__ import annotations

import struct

import pytest
from aiokafka import TopicPartition
from aiokafka.record.default_records import DefaultRecordBatchBuilder
from aiokafka.record.memory_records import MemoryRecords
from aiokafka.record.util import calc_crc32c

from workers.kafka.unreadable import parse_batches

TP = TopicPartition("t", 0)
GZIP, NONE = 1, 0


def batch(
    base: int, records: list[tuple[bytes | None, bytes | None, list[tuple[str, bytes]]]], codec: int
) -> bytes:
    builder = DefaultRecordBatchBuilder(2, codec, 0, -1, -1, -1, 1024 * 1024)
    for delta, (key, value, headers) in enumerate(records):
        builder.append(delta, 1_700_000_000_000 + delta, key, value, headers)
    built = bytearray(builder.build())
    struct.pack_into(">q", built, 0, base)
    return bytes(built)


RECORDS = [
    (b"k1", b'{"job_id": "a"}', [("trace", b"1")]),
    (None, b"\x00\xff", []),
    (b"k3", None, [("a", b""), ("b", b"x" * 300)]),
]


@pytest.mark.parametrize("codec", [NONE, GZIP])
def test_batches_read_as_aiokafka_reads_them(codec: int) -> None:
    data = batch(10, RECORDS, codec) + batch(13, RECORDS[:1], codec)
    expected = []
    records = MemoryRecords(data)
    while (next_batch := records.next_batch()) is not None:
        expected += [(r.offset, r.timestamp, r.key, r.value, tuple(r.headers)) for r in next_batch]

    batches = list(parse_batches(data, TP))

    assert [b.next_offset for b in batches] == [13, 14]
    got = [(r.offset, r.timestamp, r.key, r.value, r.headers) for b in batches for r in b.records]
    assert got == expected
    assert not any(r.unreadable for b in batches for r in b.records)


def test_a_header_key_that_is_not_utf8_is_marked_and_escaped() -> None:
    data = bytearray(batch(0, [(None, b"v", [("\x01\x01", b"1"), ("ok", b"2")])], NONE))
    at = data.index(b"\x01\x01")
    data[at : at + 2] = b"\xff\xfe"
    struct.pack_into(">I", data, 17, calc_crc32c(bytes(data[21:])))
    with pytest.raises(UnicodeDecodeError):  # what aiokafka does with it
        list(MemoryRecords(bytes(data)).next_batch())

    [parsed] = list(parse_batches(bytes(data), TP))

    [record] = parsed.records
    assert record.unreadable
    assert record.headers == (("\\xff\\xfe", b"1"), ("ok", b"2"))
    assert (record.value, record.offset) == (b"v", 0)


def test_a_partial_batch_at_the_end_of_a_fetch_is_left_for_the_next() -> None:
    whole = batch(0, RECORDS, NONE)
    assert [b.next_offset for b in parse_batches(whole + whole[:40], TP)] == [3]
