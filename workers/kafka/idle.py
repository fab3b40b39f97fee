"""A consumer's fetch wait that grows while its polls come back empty.

The embedded broker (Tansu) holds every fetch for about half of its maximum wait,
records or not, so the job consumer there asks with a wait of a few milliseconds: under
load that keeps latency low, and idle it spins, an empty fetch every few milliseconds
(an idle worker and the broker took 8% of a core each). :class:`IdleBackoff` lets the
wait grow with the quiet spell, to a tenth of it and at most ``slowest_ms``, and drops
it back to the consumer's own the moment a poll brings records. A job that ends a quiet
spell of ``T`` seconds thus waits at most ``T/20`` (and ``slowest_ms/2``) longer on that
broker. Apache Kafka answers a fetch as soon as records arrive, so a long wait costs
nothing there: its consumers are built with one (``KafkaSettings.consumer``), which is
already the slowest, and the backoff leaves it as it is.

aiokafka takes the fetch wait only when a consumer is built, and reads it from its
fetcher for every fetch request; there is no public way to change it, so this sets the
fetcher's attribute through :mod:`producer.aiokafka_internals`, whose tests check that it
is still there and read.
"""

from __future__ import annotations

import time
from collections.abc import Callable

from aiokafka import AIOKafkaConsumer

from producer.aiokafka_internals import fetch_wait_ms, set_fetch_wait_ms

# The longest fetch wait while idle: the embedded broker then answers ~8 empty fetches
# a second, and holds the job that ends the quiet spell at most ~125 ms.
SLOWEST_MS = 250
# The fetch wait while idle, as a share of the quiet spell so far.
SHARE_OF_QUIET = 0.1


class IdleBackoff:
    """Adjusts a started consumer's fetch wait after each of its polls."""

    def __init__(
        self,
        consumer: AIOKafkaConsumer,
        *,
        slowest_ms: int = SLOWEST_MS,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        self._consumer = consumer
        self.fast_ms: int = fetch_wait_ms(consumer)
        self.slowest_ms: int = max(slowest_ms, self.fast_ms)
        self._clock = clock
        self._quiet_since = clock()

    def wait_ms(self, quiet_s: float) -> int:
        """The fetch wait after ``quiet_s`` seconds without records."""
        return min(max(int(quiet_s * 1000 * SHARE_OF_QUIET), self.fast_ms), self.slowest_ms)

    def polled(self, records: bool) -> None:
        """After a poll: ``records`` whether it brought any. Polls while partitions are
        paused (backpressure) bring none and do not count as quiet."""
        now = self._clock()
        if records or self._consumer.paused():
            self._quiet_since = now
        set_fetch_wait_ms(self._consumer, self.wait_ms(now - self._quiet_since))
