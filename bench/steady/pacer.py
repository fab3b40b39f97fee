"""The independent producer: one-row jobs at a fixed rate, from librdkafka in a process
of its own, so that neither the worker nor the reader pays for sending.

Pacing is a token bucket without a cap on the burst: job ``i`` is due at
``start + i / rate``; the loop sends every job that is due, then sleeps until the next
one, so that a late wake-up is made up at once and the rate over the run is the one
asked. Each job's id carries the time it was handed to librdkafka (CLOCK_MONOTONIC,
the same clock in every process of the machine), so that the reader needs nothing but
the answer to time it.
"""

from __future__ import annotations

import json
import time
from dataclasses import dataclass
from multiprocessing.sharedctypes import Synchronized
from typing import Any

_SEQ_DIGITS = 8  # then 24 hex digits of the send time: 32 characters, as the SDK's ids


@dataclass(frozen=True)
class Pace:
    """What the producer sends: ``rate`` jobs/s of ``model`` over ``seconds``."""

    bootstrap: str
    topic: str
    model: str
    inputs: tuple[str, ...]  # each job's inputs, as JSON, used in turn
    rate: float
    seconds: float


def steady_id(seq: int, sent_ns: int) -> str:
    return f"{seq:0{_SEQ_DIGITS}x}{sent_ns:024x}"


def sent_ns(job_id: str) -> int | None:
    """When the job was sent (``time.monotonic_ns()``), or None for another kind of id."""
    if len(job_id) != 32:
        return None
    try:
        return int(job_id[_SEQ_DIGITS:], 16)
    except ValueError:
        return None


def job_body(job_id: str, model: str, inputs: str) -> bytes:
    return f'{{"job_id":"{job_id}","model":{json.dumps(model)},"inputs":{inputs}}}'.encode()


def producer_options(bootstrap: str) -> dict[str, Any]:
    """A client sending jobs one at a time: acks from every in-sync replica, no linger."""
    return {"bootstrap.servers": bootstrap, "acks": "all", "linger.ms": 0}


def pace(job: Pace, sent: Synchronized[int], started_ns: Synchronized[int]) -> None:
    """Send ``job.rate`` jobs/s for ``job.seconds``; ``sent`` counts them as they go,
    ``started_ns`` is when the first was due. Run in a process of its own."""
    from confluent_kafka import Producer

    producer = Producer(producer_options(job.bootstrap))
    total = int(job.rate * job.seconds)
    start = time.monotonic_ns()
    started_ns.value = start
    i = 0
    while i < total:
        now = time.monotonic_ns()
        due = min(total, int((now - start) * job.rate / 1e9) + 1)
        while i < due:
            job_id = steady_id(i, time.monotonic_ns())
            body = job_body(job_id, job.model, job.inputs[i % len(job.inputs)])
            _produce(producer, job.topic, body, job_id.encode())
            i += 1
        sent.value = i
        producer.poll(0)
        wait_ns = start + int(i * 1e9 / job.rate) - time.monotonic_ns()
        if wait_ns > 0:
            time.sleep(wait_ns / 1e9)
    producer.flush(60)


def _produce(producer: Any, topic: str, body: bytes, key: bytes) -> None:
    while True:
        try:
            producer.produce(topic, body, key=key)
            return
        except BufferError:  # librdkafka's queue is full: let it send
            producer.poll(0.01)
