"""Fault tests: real worker processes (``maas worker``) killed, rebalanced and fed poison.

At-least-once means every job is answered at least once whatever happens to the
workers; duplicates are allowed after a crash, but a clean SIGTERM commits what it
answered so a restarted worker does not answer it again.
"""

from __future__ import annotations

import signal
from collections import Counter

import pytest

from producer.kafka import KafkaSettings
from tests.fault_helpers import Answers, Workers, job, publish_jobs
from tests.kafka_helpers import publish, read
from workers.recipes.demo import digits_samples

pytestmark = [
    pytest.mark.both_brokers,
    pytest.mark.filterwarnings("ignore:open_text is deprecated:DeprecationWarning"),
]
# Each test on each transport (the Kafka client library the workers consume and produce
# with): aiokafka, the default, on both brokers; librdkafka, a choice for Apache Kafka, on
# Apache Kafka only (its delivery on the embedded broker: tests/integration/test_worker.py).
on_each_transport = pytest.mark.parametrize("transport", ["aiokafka", "librdkafka"])


@pytest.fixture(autouse=True)
def _librdkafka_on_apache_kafka(request: pytest.FixtureRequest) -> None:
    params = getattr(request.node, "callspec", None)
    chosen = params.params if params is not None else {}
    if chosen.get("transport") == "librdkafka" and chosen.get("broker") != "kafka":
        pytest.skip("librdkafka's fault tests run on Apache Kafka")


@on_each_transport
@pytest.mark.slow
async def test_sigkill_mid_stream_loses_no_job(
    kafka: KafkaSettings, workers: Workers, transport: str
) -> None:
    ids = await publish_jobs(kafka, 5000)
    first = workers.start("--transport", transport)
    answers = Answers(kafka)
    seen = await answers.wait(lambda c: len(c) >= 300, timeout_s=60)
    first.send_signal(signal.SIGKILL)
    first.wait(10)
    assert len(seen) < len(ids), "the first worker finished before it could be killed"

    workers.start("--transport", transport)
    counts = await answers.wait(lambda c: ids <= set(c), timeout_s=60)
    assert ids <= set(counts)  # none lost; duplicates allowed after a crash
    assert all(b["status"] == "ok" for b in answers.bodies())


@on_each_transport
@pytest.mark.slow
async def test_two_workers_share_the_load_through_a_rebalance(
    kafka: KafkaSettings, workers: Workers, transport: str
) -> None:
    ids = await publish_jobs(kafka, 5000)
    workers.start("--transport", transport)
    answers = Answers(kafka)
    await answers.wait(lambda c: len(c) >= 200, timeout_s=60)
    workers.start("--transport", transport)  # joins mid-stream: the group rebalances
    await workers.assigned(1, timeout_s=60)
    more = await publish_jobs(kafka, 3000, prefix="k")
    counts = await answers.wait(lambda c: (ids | more) <= set(c), timeout_s=90)
    assert (ids | more) <= set(counts)
    by_worker = Counter(b["worker"] for b in answers.bodies())
    assert len(by_worker) == 2, by_worker


@on_each_transport
@pytest.mark.slow
async def test_poison_jobs_do_not_block_their_partition(
    kafka: KafkaSettings, workers: Workers, transport: str
) -> None:
    rows = [r.tolist() for r in digits_samples(3)[0]]
    poison = [
        b"\xff\xfe not json",
        job("huge", {"x": [[1e39] * 64] * 1500}),
        job("nested", {"x": [[[0.0] * 64]]}),
        b'{"job_id": "no-inputs", "model": "digits"}',
    ]
    after = [job(f"after-{i}", {"x": [row]}) for i, row in enumerate(rows)]
    await publish(kafka, kafka.topics.predict, [*poison, *after], key=b"same-key")
    workers.start("--transport", transport)
    answers = Answers(kafka)
    wanted = {"huge", "nested", "no-inputs", "after-0", "after-1", "after-2"}
    await answers.wait(lambda c: wanted <= set(c), timeout_s=60)
    status = {b["job_id"]: b["status"] for b in answers.bodies()}
    assert [status[f"after-{i}"] for i in range(3)] == ["ok"] * 3
    assert {status["nested"], status["no-inputs"]} == {"error"}  # huge: answered either way
    dead = await read(kafka, kafka.topics.dlq, until=lambda rs: len(rs) >= 1)
    assert dead[0].value == b"\xff\xfe not json"


@on_each_transport
@pytest.mark.slow
async def test_sigterm_drains_commits_and_exits_zero(
    kafka: KafkaSettings, workers: Workers, transport: str
) -> None:
    ids = await publish_jobs(kafka, 3000)
    first = workers.start("--transport", transport)
    answers = Answers(kafka)
    await answers.wait(lambda c: len(c) >= 500, timeout_s=60)
    first.send_signal(signal.SIGTERM)
    assert first.wait(60) == 0

    before = len(answers.count(answers.records))
    workers.start("--transport", transport)
    counts = await answers.wait(lambda c: ids <= set(c), timeout_s=60)
    repeated = sum(1 for n in counts.values() if n > 1)
    assert ids <= set(counts)
    assert before >= 500
    assert repeated <= len(ids) // 10, f"{repeated} jobs answered twice after a clean stop"
