"""The reader: answers read back in the benchmark's own process, timed from their ids."""

from __future__ import annotations

import time
import uuid
from typing import Any

from bench.measure import _read_result
from bench.steady.pacer import job_body, producer_options, sent_ns

WARM_UP_ID = "steady-warm-up"


class Reader:
    """A librdkafka consumer of the results topic from its start (``fetch_wait_ms``: how
    long the broker may hold a fetch); counts each job once
    and keeps, for every steady job, when it was sent and how long its answer took."""

    def __init__(self, bootstrap: str, topic: str, fetch_wait_ms: int) -> None:
        from confluent_kafka import Consumer

        self._bootstrap = bootstrap
        self._consumer = Consumer(
            {
                "bootstrap.servers": bootstrap,
                "group.id": f"steady-reader-{uuid.uuid4().hex[:8]}",
                "auto.offset.reset": "earliest",
                "enable.auto.commit": False,
                # As maas's own consumers wait on this broker: the embedded one holds a
                # fetch for about half of it even when data is there.
                "fetch.wait.max.ms": fetch_wait_ms,
            }
        )
        self._consumer.subscribe([topic])
        self.answered: set[str] = set()
        self.timed: list[tuple[int, int]] = []  # (sent, latency), ns

    @property
    def count(self) -> int:
        return len(self.answered)

    def read(self, timeout_s: float) -> None:
        """Wait up to ``timeout_s`` for an answer, then take every one already fetched."""
        first = self._consumer.poll(timeout_s)
        if first is None:
            return
        now = time.monotonic_ns()
        for record in [first, *self._consumer.consume(num_messages=10000, timeout=0)]:
            if record.error() is None:
                self._seen(_read_result(record.value() or b"{}").job_id, now)

    def _seen(self, job_id: str, now: int) -> None:
        if job_id in self.answered:  # at-least-once: a duplicate counts once
            return
        self.answered.add(job_id)
        if (sent := sent_ns(job_id)) is not None:
            self.timed.append((sent, now - sent))

    def warm_up(self, topic: str, model: str, inputs: str, timeout_s: float = 120.0) -> None:
        """One job answered: the worker has joined its group and loaded the model."""
        from confluent_kafka import Producer

        producer: Any = Producer(producer_options(self._bootstrap))
        producer.produce(topic, job_body(WARM_UP_ID, model, inputs), key=WARM_UP_ID.encode())
        producer.flush(30)
        deadline = time.monotonic() + timeout_s
        while WARM_UP_ID not in self.answered:
            if time.monotonic() > deadline:
                raise TimeoutError(f"no answer to the warm-up job in {timeout_s:g} s")
            self.read(0.2)
        self.answered.discard(WARM_UP_ID)

    def close(self) -> None:
        self._consumer.close()
