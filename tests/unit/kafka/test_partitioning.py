"""Kafka's default partitioning: the same hash and partition as aiokafka and the Java client."""

from __future__ import annotations

import random

import pytest
from aiokafka.partitioner import DefaultPartitioner
from aiokafka.partitioner import murmur2 as aiokafka_murmur2

from workers.kafka.partitioning import murmur2, partition_of, partitions_of

# Utils.murmur2 in the Java client (its UtilsTest), as signed 32-bit ints.
JAVA = {
    b"21": -973932308,
    b"foobar": -790332482,
    b"a-little-bit-long-string": -985981536,
    b"a-little-bit-longer-string": -1486304829,
    b"lkjh234lh9fiuh90y23oiuhsafujhadof229phr9h19h89h8": -58897971,
    b"abc": 479470107,
}


@pytest.mark.parametrize(("key", "expected"), JAVA.items())
def test_murmur2_matches_the_java_client(key: bytes, expected: int) -> None:
    assert murmur2(key) == expected & 0xFFFFFFFF


def test_murmur2_matches_aiokafka_for_every_length() -> None:
    rng = random.Random(7)
    for length in range(70):
        for _ in range(20):
            key = rng.randbytes(length)
            assert murmur2(key) == aiokafka_murmur2(key)


@pytest.mark.parametrize("size", [1, 15, 16, 300])
def test_partitions_of_a_batch_are_aiokafkas(size: int) -> None:
    rng = random.Random(size)
    partitions = [0, 1, 2, 3, 5, 8, 13]
    keys: list[bytes | None] = [rng.randbytes(rng.choice([0, 3, 32, 36])) for _ in range(size)]
    expected = [DefaultPartitioner()(key, partitions, partitions) for key in keys]
    assert partitions_of(keys, partitions) == expected
    assert [partition_of(key, partitions) for key in keys] == expected


def test_a_record_without_a_key_goes_to_any_partition() -> None:
    found = partitions_of([None, b"job", None], [4, 6])
    assert found[0] in (4, 6) and found[2] in (4, 6)
    assert found[1] == DefaultPartitioner()(b"job", [4, 6], [4, 6])
