"""The edge tags each record of a poll, in order: a job for the handler, a job refused
with its answer, a dead letter, or another pool's job (no broker: the records are made
here, and no reply topic needs looking for)."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import orjson

from producer.contract.messages import decode_result
from producer.kafka import KafkaSettings, Topics
from workers.kafka.publisher import Publisher, PublishSettings
from workers.kafka.topics import ClusterTopics
from workers.serving.edge import Accepted, DeadLetter, Edge, Passed, Refused
from workers.tenancy.guard import Guard, TenancySettings

TOPICS = Topics("edge.")


@dataclass(frozen=True)
class Raw:
    """The fields of a consumer record that the edge reads."""

    value: bytes | None
    offset: int
    topic: str = TOPICS.predict
    partition: int = 0
    key: bytes | None = None
    headers: tuple[tuple[str, bytes], ...] = ()


def edge(models: tuple[str, ...] = ()) -> Edge:
    kafka = KafkaSettings(topics=TOPICS)
    publisher = Publisher(None, PublishSettings(dlq_topic=TOPICS.dlq))  # type: ignore[arg-type]
    topics = ClusterTopics(None, always=[TOPICS.results])  # type: ignore[arg-type]
    topics.listed = frozenset({TOPICS.results})  # as if read from the cluster just now
    guard = Guard.of(kafka, None, TenancySettings(), "edge-test")
    return Edge(publisher, topics, guard, models=models, max_job_bytes=4096, worker="w")


def job(job_id: str, model: str = "digits", **fields: Any) -> bytes:
    return orjson.dumps({"job_id": job_id, "model": model, "inputs": {"x": [[1.0]]}, **fields})


async def test_each_record_is_tagged_in_order_with_what_the_edge_made_of_it() -> None:
    records = [
        Raw(job("ok"), 0),
        Raw(b"not json at all", 1),
        Raw(job("bad", inputs={}), 2),
        Raw(job("theirs", model="minilm"), 3),
        Raw(job("far", reply_to="no such topic!"), 4),
        Raw(b"x" * 5000, 5),
    ]
    admitted = await edge(models=("digits",)).admit(records)

    assert [type(each) for each in admitted] == [
        Accepted,
        DeadLetter,
        Refused,
        Passed,
        Refused,
        DeadLetter,
    ]
    assert [each.record.offset for each in admitted] == list(range(6))
    accepted, letter, refused, passed, misdirected, too_large = admitted
    assert isinstance(accepted, Accepted) and accepted.job.job_id == "ok"
    assert letter.reply is not None and letter.reply.topic == TOPICS.dlq
    assert refused.reply is not None and refused.reply.topic == TOPICS.results
    answer = decode_result(refused.reply.value)
    assert (answer.job_id, answer.status) == ("bad", "error")
    assert answer.error is not None and answer.error.code == "INVALID_INPUT"
    assert passed.reply is None
    assert misdirected.reply is not None and misdirected.reply.topic == TOPICS.results
    assert (
        too_large.reply is not None
        and dict(too_large.reply.headers)["maas.error.code"] == b"TOO_LARGE"
    )


async def test_nothing_comes_of_no_records() -> None:
    assert await edge().admit([]) == []
