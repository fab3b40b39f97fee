"""Exactly-once serving (``maas worker --exactly-once``) on Apache Kafka, and its
refusal on the embedded broker, which has no transactions.

The same run twice: jobs flowing in at a steady rate, the worker SIGKILLed twice
while it answers them and started again. Read ``read_committed``, an exactly-once
worker's answers hold every job once; an at-least-once worker's hold some twice (the
jobs it had answered and not yet committed when it died), which shows that the kills
land where exactly-once makes the difference.
"""

from __future__ import annotations

import asyncio
import json
import os
import signal
import subprocess
import sys
import time
import uuid
from collections import Counter
from pathlib import Path

import pytest
from aiokafka import AIOKafkaProducer

from maas.broker import EmbeddedBroker
from producer.kafka import KafkaSettings, Topics, ensure_topics
from scripts.apache_kafka import ApacheKafka
from tests.fault_helpers import Answers, Workers, digits_jobs
from tests.kafka_helpers import publish, read_all

pytestmark = [
    pytest.mark.slow,
    pytest.mark.filterwarnings("ignore:open_text is deprecated:DeprecationWarning"),
]

JOBS = 5000
JOBS_PER_S = 300  # the stream the kills land in: the worker never runs ahead of it
KILL_AT = (800, 2500)  # answers seen before each SIGKILL


@pytest.fixture
def kafka(request: pytest.FixtureRequest) -> KafkaSettings:
    """Apache Kafka (the session's), topics of the test's own; skipped where
    ``--brokers`` leaves Apache Kafka out."""
    if "kafka" not in request.config.getoption("--brokers").split(","):
        pytest.skip("exactly-once needs Apache Kafka (--brokers names it not)")
    broker: ApacheKafka = request.getfixturevalue("apache_kafka")
    prefix = f"t{uuid.uuid4().hex[:8]}."
    return KafkaSettings(bootstrap_servers=broker.bootstrap_servers, topics=Topics(prefix))


async def feed(kafka: KafkaSettings, jobs: list[bytes]) -> None:
    """Publish ``jobs`` at ``JOBS_PER_S``, a tenth of a second's worth at a time."""
    producer = AIOKafkaProducer(bootstrap_servers=kafka.bootstrap_servers)
    await producer.start()
    try:
        chunk, start = JOBS_PER_S // 10, time.monotonic()
        for i, first in enumerate(range(0, len(jobs), chunk)):
            sent = [
                await producer.send(kafka.topics.predict, j) for j in jobs[first : first + chunk]
            ]
            await asyncio.gather(*sent)
            await asyncio.sleep(max(start + (i + 1) / 10 - time.monotonic(), 0))
    finally:
        await producer.stop()


async def killed_twice(kafka: KafkaSettings, workers: Workers, *flags: str) -> Counter[str]:
    """Serve ``JOBS`` jobs with a worker (``flags``) SIGKILLed at each of ``KILL_AT``
    answers and started again; every answer per job_id, read ``read_committed``."""
    await ensure_topics(kafka)
    jobs = digits_jobs(JOBS)
    feeding = asyncio.create_task(feed(kafka, list(jobs.values())))
    answers = Answers(kafka, isolation_level="read_committed")
    try:
        for seen in KILL_AT:
            worker = workers.start(*flags)
            await answers.wait(lambda c, seen=seen: len(c) >= seen, timeout_s=60)
            worker.send_signal(signal.SIGKILL)
            worker.wait(10)
            assert not feeding.done(), "the jobs were all sent before the kill: no stream"
        workers.start(*flags)
        await feeding
    finally:
        feeding.cancel()
    await answers.wait(lambda c: set(jobs) <= set(c), timeout_s=60)
    records = await read_all(kafka, kafka.topics.results, isolation_level="read_committed")
    assert all(json.loads(r.value)["status"] == "ok" for r in records if r.value)
    return Answers.count(records)


@pytest.mark.parametrize("transport", ["aiokafka", "librdkafka"])
async def test_exactly_once_answers_every_job_once_through_two_sigkills(
    kafka: KafkaSettings, workers: Workers, transport: str
) -> None:
    counts = await killed_twice(kafka, workers, "--exactly-once", "--transport", transport)
    assert len(counts) == JOBS
    twice = {job_id: n for job_id, n in counts.items() if n > 1}
    assert not twice, f"{len(twice)} jobs answered more than once, e.g. {list(twice)[:5]}"
    assert "transactional_id" in (workers.logs / "worker-0.log").read_text()


async def test_at_least_once_answers_some_jobs_twice_through_the_same_kills(
    kafka: KafkaSettings, workers: Workers
) -> None:
    counts = await killed_twice(kafka, workers)
    assert len(counts) == JOBS
    assert any(n > 1 for n in counts.values()), "no duplicate: the kills missed the window"


@pytest.mark.parametrize("transport", ["aiokafka", "librdkafka"])
async def test_a_worker_started_in_the_same_slot_fences_the_running_one(
    kafka: KafkaSettings, workers: Workers, transport: str
) -> None:
    await ensure_topics(kafka)
    # Jobs keep coming for about 15 s: the running worker must still be making
    # transactions once the second one has started (slow under load), or nothing fences it.
    jobs = digits_jobs(JOBS)
    feeding = asyncio.create_task(feed(kafka, list(jobs.values())))
    answers = Answers(kafka, isolation_level="read_committed")
    try:
        first = workers.start("--exactly-once", "--transport", transport)
        await answers.wait(lambda c: len(c) >= 300, timeout_s=60)
        workers.start(
            "--exactly-once", "--transport", transport
        )  # same host, slot 0: the same transactional id
        assert await asyncio.to_thread(first.wait, 60) == 0
        await feeding
    finally:
        feeding.cancel()
    assert "fenced" in (workers.logs / "worker-0.log").read_text()
    await answers.wait(lambda c: set(jobs) <= set(c), timeout_s=60)
    records = await read_all(kafka, kafka.topics.results, isolation_level="read_committed")
    counts = Answers.count(records)
    assert set(counts) == set(jobs)
    assert max(counts.values()) == 1


@pytest.mark.parametrize("how", ["flag", "env"])
def test_exactly_once_on_the_embedded_broker_is_refused_in_one_line(
    how: str, tmp_path: Path
) -> None:
    env = {k: v for k, v in os.environ.items() if not k.startswith("MAAS_")}
    command = [sys.executable, "-m", "maas.cli", "worker", "--artifact-dir", str(tmp_path)]
    if how == "flag":
        command.append("--exactly-once")
    else:
        env["MAAS_EXACTLY_ONCE"] = "1"
    with EmbeddedBroker() as broker:
        command += ["--bootstrap-servers", broker.bootstrap_servers]
        command += ["--database-url", f"sqlite:///{tmp_path / 'registry.db'}"]
        done = subprocess.run(
            command, capture_output=True, text=True, env=env, timeout=60, check=False
        )
    assert done.returncode == 1, done.stderr
    assert "Traceback" not in done.stderr
    errors = [line for line in done.stderr.splitlines() if line.startswith("error:")]
    assert len(errors) == 1, done.stderr
    assert "has no transactions" in errors[0]


@pytest.mark.parametrize("transport", ["aiokafka", "librdkafka"])
async def test_exactly_once_answers_a_backlog_once_on_each_transport(
    kafka: KafkaSettings, workers: Workers, transport: str
) -> None:
    """The transactional path itself, without kills (which need a stream to land in):
    a backlog answered in transactions that commit, each job once for read_committed."""
    await ensure_topics(kafka)
    jobs = digits_jobs(600)
    await publish(kafka, kafka.topics.predict, list(jobs.values()))
    workers.start("--exactly-once", "--transport", transport)
    answers = Answers(kafka, isolation_level="read_committed")
    await answers.wait(lambda c: set(jobs) <= set(c), timeout_s=90)
    records = await read_all(kafka, kafka.topics.results, isolation_level="read_committed")
    counts = Answers.count(records)
    assert set(counts) == set(jobs)
    assert max(counts.values()) == 1
    assert "transactional_id" in (workers.logs / "worker-0.log").read_text()
