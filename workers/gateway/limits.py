"""Per-tenant admission: at most ``concurrency`` requests in flight, ``rate`` per second.

A request over either limit is refused at once with :class:`TooManyRequests` and a
``Retry-After`` (whole seconds, at least 1), never queued: the caller decides whether to
wait. The rate is a token bucket of ``burst`` tokens refilled at ``rate`` per second.
Counts are per gateway process; N gateways admit N times as much.
"""

from __future__ import annotations

import math
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field

from workers.gateway.errors import TooManyRequests
from workers.gateway.settings import Limits


@dataclass
class _Bucket:
    tokens: float
    stamp: float
    in_flight: int = field(default=0)


class Admission:
    """The limits of every tenant (None: the default tenant), applied per request."""

    def __init__(self, limits: Limits, *, clock: Callable[[], float] = time.monotonic) -> None:
        self._limits = limits
        self._clock = clock
        self._buckets: dict[str | None, _Bucket] = {}

    def in_flight(self, tenant: str | None) -> int:
        bucket = self._buckets.get(tenant)
        return 0 if bucket is None else bucket.in_flight

    @contextmanager
    def admit(self, tenant: str | None) -> Iterator[None]:
        """Hold one of ``tenant``'s places while the block runs; raise
        :class:`TooManyRequests` when none is free."""
        bucket = self._bucket(tenant)
        self._take_place(tenant, bucket)
        self._take_token(tenant, bucket)
        bucket.in_flight += 1
        try:
            yield
        finally:
            bucket.in_flight -= 1

    def _bucket(self, tenant: str | None) -> _Bucket:
        bucket = self._buckets.get(tenant)
        if bucket is None:
            bucket = self._buckets[tenant] = _Bucket(float(self._limits.burst), self._clock())
        return bucket

    def _take_place(self, tenant: str | None, bucket: _Bucket) -> None:
        limit = self._limits.concurrency
        if limit and bucket.in_flight >= limit:
            raise TooManyRequests(
                f"{_whose(tenant)} has {limit} requests in flight, its limit; retry when "
                "one has been answered",
                retry_after_s=1,
            )

    def _take_token(self, tenant: str | None, bucket: _Bucket) -> None:
        rate = self._limits.rate
        if not rate:
            return
        now = self._clock()
        bucket.tokens = min(float(self._limits.burst), bucket.tokens + (now - bucket.stamp) * rate)
        bucket.stamp = now
        if bucket.tokens < 1.0:
            wait_s = (1.0 - bucket.tokens) / rate
            raise TooManyRequests(
                f"{_whose(tenant)} is over its rate of {rate:g} requests/s; retry after "
                f"{math.ceil(wait_s)} s",
                retry_after_s=max(1, math.ceil(wait_s)),
            )
        bucket.tokens -= 1.0


def _whose(tenant: str | None) -> str:
    return "the default tenant" if tenant is None else f"tenant {tenant!r}"
