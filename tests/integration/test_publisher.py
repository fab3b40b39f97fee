"""The Publisher against each real broker: a poll's answers sent together,
failures retried one by one, rejections answered or dead-lettered."""

from __future__ import annotations

import asyncio
import json
from collections.abc import AsyncIterator, Callable
from typing import Any

import pytest
from aiokafka import AIOKafkaProducer
from aiokafka.structs import ConsumerRecord

from maas.broker import EmbeddedBroker
from producer.contract.messages import DecodeError, ErrorCode, decode_predict, error_result
from producer.kafka import KafkaSettings, detect_capabilities, ensure_topics
from tests.kafka_helpers import job, publish, read
from workers.kafka.publisher import Outgoing, Publisher, PublishFailed, PublishSettings, Source

MAX_REQUEST_SIZE = 16_384

PublisherFactory = Callable[..., Publisher]

pytestmark = pytest.mark.both_brokers


@pytest.fixture
async def make_publisher(kafka: KafkaSettings) -> AsyncIterator[PublisherFactory]:
    """``make_publisher(**producer_options)``: a Publisher over a started real producer,
    with short backoffs; every producer is stopped afterwards."""
    capabilities = await ensure_topics(kafka)
    producers: list[AIOKafkaProducer] = []

    async def make(**options: Any) -> Publisher:
        producer = AIOKafkaProducer(**kafka.producer(capabilities, **options))
        await producer.start()
        producers.append(producer)
        return Publisher(
            producer,
            PublishSettings(
                dlq_topic=kafka.topics.dlq,
                retries=3,
                backoff_s=0.01,
                batch_bytes=options.get("max_batch_size", 16384),
            ),
        )

    yield make
    for producer in producers:
        await producer.stop()


def by_key(records: list[ConsumerRecord[bytes, bytes]]) -> dict[bytes | None, Any]:
    return {record.key: record for record in records}


async def test_send_many_publishes_every_message_and_reports_none(
    kafka: KafkaSettings, make_publisher: PublisherFactory
) -> None:
    publisher = await make_publisher()
    messages = [
        Outgoing(kafka.topics.results, f"value-{i}".encode(), f"k-{i}".encode(), [("h", b"%d" % i)])
        for i in range(20)
    ]
    messages.append(Outgoing(kafka.topics.dlq, b"to the other topic", b"k-dlq"))

    assert await publisher.send_many(messages) == [None] * len(messages)
    assert await publisher.send_many([]) == []

    results = await read(kafka, kafka.topics.results, until=lambda r: len(r) >= 20)
    assert len(results) == 20
    for i, record in sorted(by_key(results).items()):
        n = int(i.removeprefix(b"k-"))
        assert record.value == f"value-{n}".encode()
        assert list(record.headers) == [("h", b"%d" % n)]
    dead = await read(kafka, kafka.topics.dlq, until=lambda r: len(r) >= 1)
    assert [(r.key, r.value) for r in dead] == [(b"k-dlq", b"to the other topic")]


async def test_send_many_partitions_by_key_as_send_does_and_splits_full_batches(
    kafka: KafkaSettings, make_publisher: PublisherFactory
) -> None:
    # Small batches: each partition's share of 200 records needs several.
    publisher = await make_publisher(max_batch_size=1024)
    keys = [f"job-{i}".encode() for i in range(200)]
    values = [b"v" * 100 for _ in keys]
    batches: list[int] = []
    real_send_batch = publisher._producer.send_batch

    async def counted(batch: Any, topic: str, **kwargs: Any) -> Any:
        batches.append(batch.record_count())
        return await real_send_batch(batch, topic, **kwargs)

    publisher._producer.send_batch = counted  # type: ignore[method-assign]
    outgoing = [Outgoing(kafka.topics.results, v, k) for k, v in zip(keys, values, strict=True)]
    assert await publisher.send_many(outgoing) == [None] * len(keys)
    # The same keys through a plain producer.send, to a topic as wide as the results.
    plain = AIOKafkaProducer(**kafka.producer(await detect_capabilities(kafka)))
    await plain.start()
    try:
        sent = [await plain.send_and_wait(kafka.topics.predict, b"x", key=k) for k in keys]
    finally:
        await plain.stop()

    results = await read(kafka, kafka.topics.results, until=lambda r: len(r) >= len(keys))
    assert {r.key: r.partition for r in results} == {
        k: meta.partition for k, meta in zip(keys, sent, strict=True)
    }
    assert len({r.partition for r in results}) > 1
    assert sum(batches) == len(keys) and max(batches) < len(keys) / 8


async def test_send_many_reports_the_message_that_failed_and_delivers_the_rest(
    kafka: KafkaSettings, make_publisher: PublisherFactory
) -> None:
    """A message over the producer's max_request_size fails for good
    (MessageSizeTooLargeError, not retriable); the others still go out and ack."""
    publisher = await make_publisher(max_request_size=MAX_REQUEST_SIZE)
    topic = kafka.topics.results
    messages = [
        Outgoing(topic, b"first", b"good-1"),
        Outgoing(topic, b"x" * (2 * MAX_REQUEST_SIZE), b"too-big"),
        Outgoing(topic, b"second", b"good-2"),
        Outgoing(topic, b"y" * (3 * MAX_REQUEST_SIZE), b"too-big-too"),
        Outgoing(topic, b"third", b"good-3"),
    ]

    outcomes = await publisher.send_many(messages)

    assert [outcome is None for outcome in outcomes] == [True, False, True, False, True]
    for failed in (outcomes[1], outcomes[3]):
        assert isinstance(failed, PublishFailed)
        assert "MessageSizeTooLargeError" in str(failed)
    records = await read(kafka, topic, until=lambda r: len(r) >= 3)
    assert {r.key: r.value for r in records} == {
        b"good-1": b"first",
        b"good-2": b"second",
        b"good-3": b"third",
    }
    # The publisher still works after the failures.
    assert await publisher.send_many([Outgoing(topic, b"fourth", b"good-4")]) == [None]
    records = await read(kafka, topic, until=lambda r: len(r) >= 4)
    assert sorted(r.key for r in records) == [b"good-1", b"good-2", b"good-3", b"good-4"]


async def test_send_many_retries_unacknowledged_messages_one_by_one_then_gives_up() -> None:
    """Acks that fail (the broker went away after the records were queued) are retried
    through ``send``, with its retries and backoff, and end in PublishFailed."""
    with EmbeddedBroker() as own:  # not the session's broker: this one is stopped
        producer = AIOKafkaProducer(
            bootstrap_servers=own.bootstrap_servers,
            acks="all",
            request_timeout_ms=300,
            # Idle connections close soon, so the broker stops at once (it waits up to
            # 5 s for open connections) and the next sends must reconnect, and fail.
            connections_max_idle_ms=200,
        )
        await producer.start()
        try:
            sends: list[bytes] = []
            real_send = producer.send

            async def counted(topic: str, value: bytes, **kwargs: Any) -> Any:
                sends.append(value)
                return await real_send(topic, value, **kwargs)

            producer.send = counted  # type: ignore[method-assign]
            batches: list[int] = []
            real_send_batch = producer.send_batch

            async def counted_batch(batch: Any, topic: str, **kwargs: Any) -> Any:
                batches.append(batch.record_count())
                return await real_send_batch(batch, topic, **kwargs)

            producer.send_batch = counted_batch  # type: ignore[method-assign]
            publisher = Publisher(
                producer, PublishSettings(dlq_topic="dlq", retries=2, backoff_s=0.01)
            )
            assert await publisher.send_many([Outgoing("t", b"warm", b"w")]) == [None]
            await asyncio.sleep(0.5)
            await asyncio.to_thread(own.stop)

            outcomes = await publisher.send_many(
                [Outgoing("t", b"a", b"1"), Outgoing("t", b"b", b"2")]
            )
        finally:
            await producer.stop()

    assert all(isinstance(outcome, PublishFailed) for outcome in outcomes)
    # Each: once in a record batch of the poll's, then 1 + retries times through send.
    assert sum(batches) == 3  # warm, a, b
    assert sorted(sends) == [b"a"] * 3 + [b"b"] * 3


def _decode_error(raw: bytes) -> DecodeError:
    try:
        decode_predict(raw)
    except DecodeError as exc:
        return exc
    raise AssertionError(f"{raw!r} decoded")


async def test_rejection_answers_a_job_id_and_dead_letters_the_rest(
    kafka: KafkaSettings, make_publisher: PublisherFactory
) -> None:
    """Real records off the predict topic: one that names a job_id but has a bad field
    is answered on its reply_to; one that is not JSON goes to the dead-letter topic with
    the original bytes and ``maas.error.*`` / ``maas.source.*`` headers."""
    publisher = await make_publisher()
    reply_to = kafka.topics.results + ".mine"
    bad_field = job("j-bad", {"x": [[0.0] * 64]}, priority="high", reply_to=reply_to)
    garbage = b"\x00not json"
    await publish(
        kafka,
        kafka.topics.predict,
        [bad_field, garbage],
        partition=0,
        key=b"k",
        headers=[("t", b"1")],
    )
    polled = await read(kafka, kafka.topics.predict, until=lambda r: len(r) >= 2)
    answerable, undecodable = sorted(polled, key=lambda r: r.offset)

    def answer(record: ConsumerRecord[bytes, bytes]) -> Outgoing:
        exc = _decode_error(record.value)
        return publisher.rejection(
            record,
            exc,
            expected="PredictJob",
            answer=lambda envelope: error_result(
                envelope.job_id, ErrorCode.INVALID_INPUT, str(exc), model=envelope.model
            ),
            results_topic=kafka.topics.results,
        )

    answered, dead = answer(answerable), answer(undecodable)
    assert (answered.topic, answered.key) == (reply_to, b"j-bad")
    assert list(answered.headers) == [("t", b"1")]
    assert dead.topic == kafka.topics.dlq
    assert await publisher.send_many([answered, dead]) == [None, None]

    [result] = await read(kafka, reply_to, until=lambda r: len(r) >= 1)
    body = json.loads(result.value)
    assert (result.key, body["job_id"], body["status"]) == (b"j-bad", "j-bad", "error")
    assert body["error"]["code"] == "INVALID_INPUT"
    assert "priority" in body["error"]["message"]

    [letter] = await read(kafka, kafka.topics.dlq, until=lambda r: len(r) >= 1)
    headers = dict(letter.headers)
    assert (letter.key, letter.value) == (b"k", garbage)
    assert headers["t"] == b"1"  # the original headers are kept
    assert headers["maas.error.code"] == b"INVALID_INPUT"
    assert b"not a PredictJob" in headers["maas.error.message"]
    assert headers["maas.source.topic"] == kafka.topics.predict.encode()
    assert headers["maas.source.partition"] == b"0"
    assert headers["maas.source.offset"] == str(undecodable.offset).encode()


async def test_dead_letter_of_keeps_the_source_and_says_why(
    kafka: KafkaSettings, make_publisher: PublisherFactory
) -> None:
    publisher = await make_publisher()
    source = Source(
        topic="in", partition=3, offset=41, key=b"key", value=b"payload", headers=(("a", b"b"),)
    )
    letter = publisher.dead_letter_of(source, code=ErrorCode.INTERNAL, reason="answer lost")
    assert (letter.topic, letter.key, letter.value) == (kafka.topics.dlq, b"key", b"payload")
    assert dict(letter.headers) == {
        "a": b"b",
        "maas.error.code": b"INTERNAL",
        "maas.error.message": b"answer lost",
        "maas.source.topic": b"in",
        "maas.source.partition": b"3",
        "maas.source.offset": b"41",
    }
    empty = publisher.dead_letter_of(
        Source("in", 0, 0, None, None, ()), code=ErrorCode.INVALID_INPUT, reason="r"
    )
    assert (empty.key, empty.value) == (None, b"")
