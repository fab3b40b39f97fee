"""A small time-to-live cache of registry answers, so a request rarely waits on the database.

An entry is trusted for ``ttl_s``; after that the next lookup asks again. That bound is
the gateway's promise: a revoked token, a moved alias or a taken grant is seen by every
gateway within ``ttl_s``.
"""

from __future__ import annotations

import time
from collections.abc import Callable
from typing import Generic, TypeVar

K = TypeVar("K")
V = TypeVar("V")


class TtlCache(Generic[K, V]):
    """Answers by key, each kept for ``ttl_s``; at most ``size`` keys (oldest dropped)."""

    def __init__(
        self, ttl_s: float, *, size: int = 10_000, clock: Callable[[], float] = time.monotonic
    ) -> None:
        self._ttl_s = ttl_s
        self._size = size
        self._clock = clock
        self._entries: dict[K, tuple[float, V]] = {}

    def get(self, key: K) -> V | None:
        entry = self._entries.get(key)
        if entry is None:
            return None
        if entry[0] <= self._clock():
            del self._entries[key]
            return None
        return entry[1]

    def put(self, key: K, value: V) -> V:
        if len(self._entries) >= self._size and key not in self._entries:
            del self._entries[next(iter(self._entries))]
        self._entries[key] = (self._clock() + self._ttl_s, value)
        return value
