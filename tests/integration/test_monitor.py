"""The monitor on each broker, fed records directly: good feedback is joined and
counted once, bad feedback goes to the dead-letter topic with its reason and stops
nothing, duplicates and labels that never find a capture are counted, and feedback
through one tenant's namespace for another's job is refused and audited."""

from __future__ import annotations

import asyncio
import time
from collections.abc import AsyncIterator

import pytest

from producer.contract.messages import CaptureRecord, Feedback, encode
from producer.kafka import KafkaSettings, ensure_topics
from registry.drafts import Draft
from registry.registry import Registry
from tests.kafka_helpers import publish, read, read_all
from tests.registry_fixtures import MakeOnnx
from workers.monitor.join import JoinSettings
from workers.monitor.service import FEEDBACK, Monitor, MonitorSettings

pytestmark = pytest.mark.both_brokers


def capture(
    job_id: str, labels: list[int], *, tenant: str | None = None, at: int | None = None
) -> bytes:
    at = int(time.time() * 1000) if at is None else at  # now: the join window is a minute
    return encode(
        CaptureRecord(
            job_id=job_id, model="m", version=1, status="ok", ts_ms=at, tenant=tenant,
            outputs={"label": labels},
        )
    )  # fmt: skip


def feedback(job_id: str, labels: list[object]) -> bytes:
    return encode(Feedback(job_id=job_id, labels=labels))  # type: ignore[arg-type]


@pytest.fixture
async def monitor(
    kafka: KafkaSettings, registry: Registry, make_onnx: MakeOnnx
) -> AsyncIterator[Monitor]:
    registry.models.register("m", Draft(make_onnx(), promote=True), actor="t")
    await ensure_topics(kafka, tenants=["acme"])
    settings = MonitorSettings(join=JoinSettings(window_ms=60_000), flush_s=0.2, rollback=None)
    running = Monitor(
        kafka, registry.quality, settings, models=registry.models, refusals=registry.tenants
    )
    stop = asyncio.Event()
    task = asyncio.create_task(running.run(stop))
    await asyncio.wait_for(running.ready.wait(), 60)
    yield running
    stop.set()
    await asyncio.wait_for(task, 60)


async def _rows(registry: Registry, expected: int, timeout_s: float = 60.0) -> int:
    deadline = time.monotonic() + timeout_s
    rows = 0
    while time.monotonic() < deadline:
        rows = sum(w.rows for w in registry.quality.windows("m"))
        if rows >= expected:
            break
        await asyncio.sleep(0.2)
    return rows


async def test_bad_feedback_is_dead_lettered_with_its_reason_and_stops_nothing(
    kafka: KafkaSettings, monitor: Monitor, registry: Registry
) -> None:
    duplicates_before = FEEDBACK.labels("duplicate")._value.get()
    await publish(
        kafka,
        kafka.topics.capture,
        [capture(f"c{i}", [1, 2]) for i in range(5)],
    )
    await publish(
        kafka,
        kafka.topics.feedback,
        [
            feedback("c0", [1, 2]),  # right, right
            feedback("c1", [1, 2, 3]),  # three labels for two rows
            feedback("c2", [1.5, 2]),  # not a class
            b"not json at all",
            feedback("c3", [2, 2]),  # wrong, right
            feedback("c0", [9, 9]),  # a duplicate: the first labels stand
        ],
    )
    assert await _rows(registry, 4) == 4
    letters = await read(kafka, kafka.topics.dlq, until=lambda rs: len(rs) >= 3)
    reasons = sorted(dict(r.headers)["maas.error.message"].decode() for r in letters)
    assert any("3 labels but the job had 2 rows" in r for r in reasons), reasons
    assert any("not a class" in r for r in reasons), reasons
    assert any("not a valid feedback record" in r for r in reasons), reasons

    # still running: later feedback is counted
    await publish(kafka, kafka.topics.feedback, [feedback("c4", [1, 1])])
    assert await _rows(registry, 6) == 6
    (window,) = registry.quality.windows("m")
    assert (window.rows, window.correct) == (6, 4)
    assert FEEDBACK.labels("duplicate")._value.get() - duplicates_before == 2


async def test_feedback_for_another_tenants_job_is_refused_and_audited(
    kafka: KafkaSettings, monitor: Monitor, registry: Registry
) -> None:
    registry.tenants.add("acme", models=["m"], actor="t")
    acme = kafka.topics.namespace("acme")
    await publish(kafka, kafka.topics.capture, [capture("theirs", [1])])
    await publish(kafka, acme.capture, [capture("ours", [1], tenant="acme")])
    await asyncio.sleep(1.0)  # the captures first: the refusal needs to know the owner
    # acme labels a job of the default tenant, and one of its own
    await publish(kafka, acme.feedback, [feedback("theirs", [0]), feedback("ours", [1])])
    assert await _rows(registry, 1) == 1
    letters = await read(kafka, kafka.topics.dlq, until=lambda rs: len(rs) >= 1)
    reason = dict(letters[0].headers)["maas.error.message"].decode()
    assert "namespace for job 'theirs', which is not its own" in reason
    for _ in range(50):  # the audit rows are written every second
        refusals = [e for e in registry.tenants.audit("acme") if e.action == "refusal"]
        if refusals:
            break
        await asyncio.sleep(0.2)
    assert refusals, registry.tenants.audit("acme")
    assert refusals[0].details.get("reason") == "feedback-for-another-tenants-job"
    # the default tenant's own label for its job counts
    await publish(kafka, kafka.topics.feedback, [feedback("theirs", [1])])
    assert await _rows(registry, 2) == 2
    (window,) = registry.quality.windows("m")
    assert (window.rows, window.correct) == (2, 2)


async def test_labels_that_never_meet_their_capture_are_counted_unmatched(
    kafka: KafkaSettings, monitor: Monitor, registry: Registry
) -> None:
    before = FEEDBACK.labels("unmatched")._value.get()
    await publish(kafka, kafka.topics.feedback, [feedback("never-captured", [1])])
    await asyncio.sleep(1.0)
    # a capture two minutes later moves the clock past the 60 s join window
    await publish(
        kafka, kafka.topics.capture, [capture("later", [1], at=int(time.time() * 1000) + 120_000)]
    )
    for _ in range(150):  # up to 30 s
        if FEEDBACK.labels("unmatched")._value.get() > before:
            break
        await asyncio.sleep(0.2)
    assert FEEDBACK.labels("unmatched")._value.get() - before == 1


async def test_a_deleted_feedback_topic_is_created_again_and_joins_go_on(
    kafka: KafkaSettings, registry: Registry, make_onnx: MakeOnnx
) -> None:
    from aiokafka.admin import AIOKafkaAdminClient

    registry.models.register("m", Draft(make_onnx(), promote=True), actor="t")
    await ensure_topics(kafka)
    settings = MonitorSettings(flush_s=0.2, rollback=None, topic_check_interval_s=3.0)
    running = Monitor(kafka, registry.quality, settings)
    stop = asyncio.Event()
    task = asyncio.create_task(running.run(stop))
    try:
        await asyncio.wait_for(running.ready.wait(), 60)
        await publish(kafka, kafka.topics.feedback, [feedback("before", [1])], key=b"before")
        admin = AIOKafkaAdminClient(bootstrap_servers=kafka.bootstrap_servers)
        await admin.start()
        try:
            await admin.delete_topics([kafka.topics.feedback])
        finally:
            await admin.close()
        # Created again by the monitor (the service's partition count, not one a client
        # auto-created: nothing here touches the topic before it is back) and empty.
        recreated = False
        for _ in range(30):
            await asyncio.sleep(1.0)
            if await _partition_count(kafka, kafka.topics.feedback) != 8:
                continue
            keys = [r.key for r in await read_all(kafka, kafka.topics.feedback, timeout_s=5)]
            if b"before" not in keys:  # else still the old topic, being deleted
                recreated = True
                break
        assert recreated
        await publish(kafka, kafka.topics.capture, [capture("after", [1])])
        await publish(kafka, kafka.topics.feedback, [feedback("after", [1])])
        assert await _rows(registry, 1) == 1
    finally:
        stop.set()
        await asyncio.wait_for(task, 60)


async def _partition_count(kafka: KafkaSettings, topic: str) -> int:
    """``topic``'s partitions as the cluster lists them (0: none), asking only the admin
    API, which never creates a topic."""
    from aiokafka.admin import AIOKafkaAdminClient

    admin = AIOKafkaAdminClient(bootstrap_servers=kafka.bootstrap_servers)
    await admin.start()
    try:
        if topic not in await admin.list_topics():
            return 0
        (described,) = await admin.describe_topics([topic])
        return len(described.get("partitions") or [])
    finally:
        await admin.close()
