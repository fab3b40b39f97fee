"""Exactly-once's correctness rule, without a broker: a transaction carries only the
answers to records whose offsets it commits (workers/serving/transactions.py)."""

from __future__ import annotations

import asyncio
from dataclasses import dataclass
from typing import Any

from aiokafka import TopicPartition

from workers.kafka.publisher import Outgoing
from workers.serving.offsets import OffsetTracker
from workers.serving.transactions import ExactlyOnce, transactional_id

TP = TopicPartition("maas.predict", 0)


@dataclass(frozen=True)
class _Record:
    offset: int
    topic: str = TP.topic
    partition: int = TP.partition
    key: bytes | None = None
    value: bytes | None = b"{}"
    headers: tuple[Any, ...] = ()


def answer(offset: int) -> Outgoing:
    return Outgoing("maas.results", f"answer {offset}".encode(), None)


def delivery(offsets: range) -> tuple[ExactlyOnce, OffsetTracker[TopicPartition]]:
    tracker: OffsetTracker[TopicPartition] = OffsetTracker()
    for offset in offsets:
        tracker.track(TP, offset)
    return ExactlyOnce(None, tracker, "maas-workers", asyncio.Event()), tracker  # type: ignore[arg-type]


async def test_an_answer_beyond_the_answered_prefix_waits_for_a_later_transaction() -> None:
    held, tracker = delivery(range(3))
    await held.deliver(TP, [(_Record(2), answer(2)), (_Record(1), None)])
    assert tracker.commit_points() == {}  # offset 0 unanswered: nothing may go yet

    await held.deliver(TP, [(_Record(0), answer(0))])
    points = tracker.commit_points()
    assert points == {TP: 3}
    due = held._due(points)
    assert [h.message for _, _, h in due] == [answer(0), answer(2)]  # in offset order; 1 needs none


async def test_answers_of_a_revoked_partition_are_dropped_not_sent_later() -> None:
    held, tracker = delivery(range(2))
    await held.deliver(TP, [(_Record(1), answer(1))])
    await held.release({TP})  # offset 0 unanswered: nothing to commit, all let go
    await held.deliver(TP, [(_Record(0), answer(0))])  # a late answer from a drained task
    assert held._due({TP: 2}) == []
    tracker.track(TP, 5)  # the partition comes back, read on from its committed offset
    await held.deliver(TP, [(_Record(0), answer(0))])
    assert tracker.commit_points() == {}
    assert held._due({TP: 6}) == []


def test_transactional_ids_are_per_slot_and_stable() -> None:
    first = transactional_id("maas.", "maas-workers", "worker-a", 0)
    assert first == transactional_id("maas.", "maas-workers", "worker-a", 0)
    assert first != transactional_id("maas.", "maas-workers", "worker-a", 1)
    assert first != transactional_id("other.", "maas-workers", "worker-a", 0)


async def test_a_capture_record_travels_in_the_transaction_of_its_answer() -> None:
    held, tracker = delivery(range(3))
    captured = Outgoing("maas.capture", b"capture 1", b"j1")
    held.attach(TP, 1, captured)
    await held.deliver(TP, [(_Record(1), answer(1))])
    await held.deliver(TP, [(_Record(2), answer(2))])
    assert held._due({TP: 1}) == []  # offset 0 unanswered: neither the answer nor its capture
    await held.deliver(TP, [(_Record(0), answer(0))])
    due = held._due(tracker.commit_points())
    assert [h.message for _, _, h in due] == [answer(0), answer(1), answer(2), captured]
    held._drop({TP: 3})
    assert held._due({TP: 3}) == []  # committed: never sent again


async def test_a_capture_of_a_revoked_partition_is_dropped_with_its_answer() -> None:
    held, _ = delivery(range(2))
    held.attach(TP, 1, Outgoing("maas.capture", b"capture 1", b"j1"))
    await held.release({TP})
    assert held._due({TP: 2}) == []
    held.attach(TP, 1, Outgoing("maas.capture", b"late", b"j1"))  # no longer ours: ignored
    assert held._due({TP: 2}) == []


def _raised_from(outer: Exception, inner: Exception) -> Exception:
    try:
        try:
            raise inner
        except Exception as exc:
            raise outer from exc
    except Exception as chained:
        return chained


def test_a_fence_is_known_however_deep_aiokafka_wraps_it() -> None:
    from aiokafka.errors import InvalidProducerEpoch, KafkaError, ProducerFenced

    from workers.kafka.publisher import PublishFailed
    from workers.serving.transactions import _fenced

    assert _fenced(ProducerFenced())
    assert _fenced(_raised_from(PublishFailed("send failed", retriable=False), ProducerFenced()))
    # aiokafka's sender: KafkaError("Unexpected error during batch delivery") from the
    # produce answer's INVALID_PRODUCER_EPOCH, under the send's own failure
    delivery = _raised_from(
        KafkaError("Unexpected error during batch delivery"), InvalidProducerEpoch()
    )
    assert _fenced(_raised_from(PublishFailed("send failed", retriable=False), delivery))
    assert not _fenced(_raised_from(KafkaError("Unexpected error"), ConnectionError("reset")))
    assert not _fenced(PublishFailed("too large", retriable=False))
