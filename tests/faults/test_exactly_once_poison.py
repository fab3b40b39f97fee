"""One record must not stop exactly-once (issue 28, item 1), on Apache Kafka.

A job whose ``reply_to`` names a topic that refuses every Result (``max.message.bytes``
200) used to fail each transaction that carried its answer: the worker aborted, sent
the same answer again five times and stopped, and jobs on the other partitions went
unanswered. Its answer is refused for good (not retriable), so it is dead-lettered in
the next transaction, the offsets move on, every other job is answered exactly once
and the worker keeps serving.
"""

from __future__ import annotations

import asyncio
import json
import time
import uuid
from collections import Counter
from collections.abc import AsyncIterator
from typing import Any

import pytest
from aiokafka.admin import AIOKafkaAdminClient, NewTopic

from producer.contract.messages import decode_capture
from producer.kafka import KafkaSettings, Topics, ensure_topics
from registry.drafts import Draft
from registry.entities import ModelVersion
from registry.labelled import CapturePolicy
from registry.registry import Registry
from scripts.apache_kafka import ApacheKafka
from tests.kafka_helpers import job, publish, read_all
from workers.serving.loop import Worker, WorkerSettings

JOBS = 300  # before and after the poison job, over every partition


@pytest.fixture
def kafka(request: pytest.FixtureRequest) -> KafkaSettings:
    """Apache Kafka (the session's), topics of the test's own."""
    if "kafka" not in request.config.getoption("--brokers").split(","):
        pytest.skip("exactly-once needs Apache Kafka (--brokers names it not)")
    broker: ApacheKafka = request.getfixturevalue("apache_kafka")
    prefix = f"t{uuid.uuid4().hex[:8]}."
    return KafkaSettings(bootstrap_servers=broker.bootstrap_servers, topics=Topics(prefix))


@pytest.fixture
def tiny(registry: Registry, make_onnx: Any) -> ModelVersion:
    """A small model (x: 4 features) as "digits", quicker to build than the real one."""
    return registry.models.register("digits", Draft(make_onnx(), promote=True), actor="test")


@pytest.fixture
async def worker(
    kafka: KafkaSettings, registry: Registry, tiny: ModelVersion
) -> AsyncIterator[tuple[Worker, asyncio.Task[None]]]:
    await ensure_topics(kafka)
    settings = WorkerSettings(exactly_once=True, worker_id="poison-test", metrics_interval_s=5.0)
    serving = Worker(kafka, registry.models, registry.metrics, settings)
    stop = asyncio.Event()
    task = asyncio.create_task(serving.run(stop))
    await asyncio.wait_for(serving.ready.wait(), 60)
    yield serving, task
    stop.set()
    await asyncio.wait_for(task, 60)


async def tiny_topic(kafka: KafkaSettings) -> str:
    """A topic any client may create, whose records may be 200 bytes at most."""
    name = f"{kafka.topics.prefix}tiny"
    admin = AIOKafkaAdminClient(bootstrap_servers=kafka.bootstrap_servers)
    await admin.start()
    try:
        await admin.create_topics(
            [NewTopic(name, 1, 1, topic_configs={"max.message.bytes": "200"})]
        )
    finally:
        await admin.close()
    return name


async def answered(kafka: KafkaSettings, topic: str, want: set[str]) -> Counter[str]:
    """How often each job_id is answered on ``topic`` (read_committed), once all of
    ``want`` are there (or after 40 s: the assertions then say how many are missing)."""
    counts: Counter[str] = Counter()
    deadline = time.monotonic() + 40
    while time.monotonic() < deadline:
        records = await read_all(kafka, topic, isolation_level="read_committed")
        counts = Counter(json.loads(r.value)["job_id"] for r in records if r.value)
        if want <= set(counts):
            break
        await asyncio.sleep(1)
    return counts


async def test_an_answer_refused_for_good_is_dead_lettered_and_the_rest_answered_once(
    kafka: KafkaSettings, worker: tuple[Worker, asyncio.Task[None]]
) -> None:
    _, task = worker
    tiny = await tiny_topic(kafka)
    pixels = [[0.1, 0.2, 0.3, 0.4]]
    before = [job(f"a-{i}", {"x": pixels}) for i in range(JOBS // 2)]
    poison = job("poison", {"x": pixels}, reply_to=tiny)
    after = [job(f"b-{i}", {"x": pixels}) for i in range(JOBS // 2)]
    await publish(kafka, kafka.topics.predict, [*before, poison, *after])

    want = {f"a-{i}" for i in range(JOBS // 2)} | {f"b-{i}" for i in range(JOBS // 2)}
    counts = await answered(kafka, kafka.topics.results, want)
    assert set(counts) == want, f"{len(want - set(counts))} jobs unanswered"
    assert max(counts.values()) == 1  # exactly once, read_committed

    letters = await read_all(kafka, kafka.topics.dlq, isolation_level="read_committed")
    assert len(letters) == 1
    headers = dict(letters[0].headers)
    assert headers["maas.error.code"] == b"INTERNAL"
    assert b"MessageSizeTooLarge" in headers["maas.error.message"]
    assert json.loads(letters[0].value)["job_id"] == "poison"
    assert await read_all(kafka, tiny, isolation_level="read_committed") == []

    # The worker is still serving: later jobs are answered too.
    await publish(kafka, kafka.topics.predict, [job(f"c-{i}", {"x": pixels}) for i in range(20)])
    later = await answered(kafka, kafka.topics.results, {f"c-{i}" for i in range(20)})
    assert {f"c-{i}" for i in range(20)} <= set(later)
    assert not task.done()


async def test_answers_are_captured_in_their_transactions_and_aborted_ones_not(
    kafka: KafkaSettings, registry: Registry, tiny: ModelVersion, make_onnx: Any
) -> None:
    """Issue 22 under exactly-once: each answered job is captured once for a
    ``read_committed`` reader (as the monitor reads), in the transaction of its answer;
    the captures of an aborted transaction (the one the poison job failed) are not,
    and the poison job, answered by a dead letter only, is not captured at all."""
    registry.quality.set_policy("digits", CapturePolicy(rate=1.0, inputs="drop"), actor="t")
    await ensure_topics(kafka)
    settings = WorkerSettings(exactly_once=True, worker_id="capture-test", metrics_interval_s=5.0)
    serving = Worker(kafka, registry.models, registry.metrics, settings)
    serving.capture.follow(registry.quality)
    stop = asyncio.Event()
    task = asyncio.create_task(serving.run(stop))
    try:
        await asyncio.wait_for(serving.ready.wait(), 60)
        tiny_reply = await tiny_topic(kafka)
        pixels = [[0.1, 0.2, 0.3, 0.4]]
        ids = [f"j-{i}" for i in range(60)]
        jobs = [job(i, {"x": pixels}) for i in ids[:30]]
        jobs += [job("poison", {"x": pixels}, reply_to=tiny_reply)]
        jobs += [job(i, {"x": pixels}) for i in ids[30:]]
        await publish(kafka, kafka.topics.predict, jobs)
        answers = await answered(kafka, kafka.topics.results, set(ids))
        assert set(answers) == set(ids) and max(answers.values()) == 1
        captured = await answered(kafka, kafka.topics.capture, set(ids))
    finally:
        stop.set()
        await asyncio.wait_for(task, 60)

    assert captured == Counter(ids)  # each answered job once; the poison job never
    committed = await read_all(kafka, kafka.topics.capture, isolation_level="read_committed")
    for record in committed:
        capture = decode_capture(record.value or b"")
        assert (capture.model, capture.status, capture.inputs) == ("digits", "ok", None)
    # The aborted transaction wrote the poison job's capture (and maybe others): a
    # reader of uncommitted records sees it, the monitor (read_committed) never does.
    everything = await read_all(kafka, kafka.topics.capture)
    assert b"poison" in {r.key for r in everything}
    assert len(everything) > len(committed)
