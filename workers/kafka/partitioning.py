"""Kafka's default partitioning of keyed records, as aiokafka's ``DefaultPartitioner`` does it.

A key's partition is ``murmur2(key) & 0x7fffffff`` modulo the partition count, over the
topic's partitions sorted by id: the Java client's and aiokafka's rule, so that results
land where any Kafka client would put them. aiokafka hashes in pure Python byte by
byte (about 10 µs for a 32-byte job id, a tenth or more of a worker's CPU per job);
here a key is read four bytes at a time, and the keys of a large batch that share a
length (job ids usually do) are hashed together with numpy, well under a µs each.
"""

from __future__ import annotations

import random
import struct
from collections.abc import Sequence

import numpy as np
import numpy.typing as npt

_SEED = 0x9747B28C
_M = 0x5BD1E995
_MASK = 0xFFFFFFFF
# Below this many keys of one length, numpy's per-call overhead costs more than it saves.
_VECTOR_MIN = 16
_WORDS = struct.Struct("<I")


def murmur2(data: bytes) -> int:
    """Kafka's murmur2 hash of ``data``, unsigned (``Utils.murmur2`` in the Java client)."""
    length = len(data)
    h = _SEED ^ length
    whole = length & ~3
    for (k,) in _WORDS.iter_unpack(data[:whole]):
        k = (k * _M) & _MASK
        k ^= k >> 24
        h = ((h * _M) & _MASK) ^ ((k * _M) & _MASK)
    return _finish(h, data, length, whole)


def _finish(h: int, data: bytes, length: int, whole: int) -> int:
    """The hash's tail bytes and final mix."""
    extra = length & 3
    if extra >= 3:
        h ^= data[whole + 2] << 16
    if extra >= 2:
        h ^= data[whole + 1] << 8
    if extra >= 1:
        h = ((h ^ data[whole]) * _M) & _MASK
    h ^= h >> 13
    h = (h * _M) & _MASK
    return h ^ (h >> 15)


def _murmur2_many(keys: Sequence[bytes], length: int) -> npt.NDArray[np.uint32]:
    """:func:`murmur2` of each of ``keys``, all ``length`` bytes long, with numpy."""
    raw = np.frombuffer(b"".join(keys), dtype=np.uint8).reshape(len(keys), length)
    whole = length & ~3
    m = np.uint32(_M)
    h = np.full(len(keys), _SEED ^ length, dtype=np.uint32)
    with np.errstate(over="ignore"):  # uint32 arithmetic wraps, as the hash wants
        k = np.ascontiguousarray(raw[:, :whole]).view("<u4") * m
        k ^= k >> np.uint32(24)
        k *= m
        for word in range(whole // 4):
            h *= m
            h ^= k[:, word]
        extra = length & 3
        if extra >= 3:
            h ^= raw[:, whole + 2].astype(np.uint32) << np.uint32(16)
        if extra >= 2:
            h ^= raw[:, whole + 1].astype(np.uint32) << np.uint32(8)
        if extra >= 1:
            h ^= raw[:, whole].astype(np.uint32)
            h *= m
        h ^= h >> np.uint32(13)
        h *= m
        h ^= h >> np.uint32(15)
    return h


def partition_of(key: bytes | None, partitions: Sequence[int]) -> int:
    """The partition of ``key`` among ``partitions`` (sorted ids): a random one for no key."""
    if key is None:
        return random.choice(partitions)
    return partitions[(murmur2(key) & 0x7FFFFFFF) % len(partitions)]


def partitions_of(keys: Sequence[bytes | None], partitions: Sequence[int]) -> list[int]:
    """:func:`partition_of` each of ``keys``; large groups of same-length keys in one go."""
    found = [0] * len(keys)
    by_length: dict[int, list[int]] = {}
    for index, key in enumerate(keys):
        if key is None:
            found[index] = random.choice(partitions)
        else:
            by_length.setdefault(len(key), []).append(index)
    count = len(partitions)
    for length, indices in by_length.items():
        if len(indices) < _VECTOR_MIN or not length:
            for index in indices:
                found[index] = partition_of(keys[index], partitions)
            continue
        hashes = _murmur2_many([keys[i] or b"" for i in indices], length)
        for index, slot in zip(indices, ((hashes & 0x7FFFFFFF) % count).tolist(), strict=True):
            found[index] = partitions[slot]
    return found
