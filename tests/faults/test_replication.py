"""Replication on a three-broker Apache Kafka cluster: the service's topics get three
replicas, two of them in sync for a write, and a broker killed while jobs flow costs a
pause in the answers, never a job.

The cluster (three KRaft nodes, each broker and controller) starts once for the module.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import subprocess
import sys
import time
import uuid
from collections.abc import AsyncIterator, Iterator
from pathlib import Path
from typing import Any, cast

import pytest
from aiokafka import AIOKafkaConsumer, AIOKafkaProducer, TopicPartition
from aiokafka.admin import AIOKafkaAdminClient
from aiokafka.admin.config_resource import ConfigResource, ConfigResourceType

from producer.kafka import KafkaSettings, Topics, detect_capabilities, ensure_topics
from registry.settings import RegistrySettings
from scripts.apache_kafka import KafkaCluster
from workers.recipes.demo import digits_samples

pytest_plugins = ["tests.serving_fixtures"]  # digits_artifact, built once a session

pytestmark = [
    pytest.mark.slow,
    pytest.mark.filterwarnings("ignore:open_text is deprecated:DeprecationWarning"),
]

JOBS_PER_S = 500
BEFORE_KILL_S = 2.0
AFTER_KILL_S = 4.0


@pytest.fixture(scope="module")
def cluster(tmp_path_factory: pytest.TempPathFactory) -> Iterator[KafkaCluster]:
    with KafkaCluster(
        size=3, workdir=tmp_path_factory.mktemp("cluster"), quick_start=True
    ) as running:
        yield running


@pytest.fixture
def kafka(cluster: KafkaCluster) -> KafkaSettings:
    prefix = f"t{uuid.uuid4().hex[:8]}."
    return KafkaSettings(bootstrap_servers=cluster.bootstrap_servers, topics=Topics(prefix))


async def test_topics_get_three_replicas_two_of_them_in_sync(kafka: KafkaSettings) -> None:
    await ensure_topics(kafka)
    admin = AIOKafkaAdminClient(**kafka.common())
    await admin.start()
    try:
        described = await _described(admin, kafka.topics.predict)
        settings = await _topic_configs(admin, kafka.topics.predict)
    finally:
        await admin.close()
    assert len(described["partitions"]) == 8
    assert {len(p["replicas"]) for p in described["partitions"]} == {3}
    assert settings["min.insync.replicas"] == "2"


async def test_a_leader_killed_mid_stream_costs_a_pause_not_a_job(
    kafka: KafkaSettings,
    cluster: KafkaCluster,
    digits_registry: RegistrySettings,
    tmp_path: Path,
    capsys: pytest.CaptureFixture[str],
) -> None:
    await ensure_topics(kafka)
    worker = _start_worker(kafka, digits_registry, tmp_path / "worker.log")
    try:
        await _assigned(tmp_path / "worker.log", timeout_s=30)
        answers = _Answers(kafka)
        async with answers.reading():
            sent, killed_at = await _stream_and_kill(kafka, cluster)
            await answers.wait_for(sent, timeout_s=60)
        assert worker.poll() is None, "the worker stopped"
    finally:
        worker.kill()
        worker.wait(10)
    pause_s = answers.longest_gap_after(killed_at)
    with capsys.disabled():
        print(
            f"\n{len(sent)} jobs, a leader SIGKILLed: every job answered; answers paused "
            f"{pause_s:.1f} s at most (slowest job {answers.slowest_s(sent):.1f} s)"
        )


async def _described(admin: AIOKafkaAdminClient, topic: str) -> dict[str, Any]:
    """The topic's description once every broker knows its partitions (metadata reaches
    the brokers a moment after the topic is created)."""
    async with asyncio.timeout(10):
        while True:
            [described] = await admin.describe_topics([topic])
            if described["partitions"]:
                return cast(dict[str, Any], described)
            await asyncio.sleep(0.1)


async def _topic_configs(admin: AIOKafkaAdminClient, topic: str) -> dict[str, str]:
    """The topic's configuration once the broker asked knows the topic (it answers
    with no entries, or an error code, for a moment after the topic is created)."""
    async with asyncio.timeout(10):
        while True:
            [configs] = await admin.describe_configs(
                [ConfigResource(ConfigResourceType.TOPIC, topic)]
            )
            error_code, _, _, _, entries = configs.resources[0][:5]
            if error_code == 0 and entries:
                return {entry[0]: entry[1] for entry in entries}
            await asyncio.sleep(0.1)


def _start_worker(
    kafka: KafkaSettings, registry: RegistrySettings, log: Path
) -> subprocess.Popen[bytes]:
    command = [
        sys.executable, "-m", "maas.cli", "worker",
        "--bootstrap-servers", kafka.bootstrap_servers,
        "--topic-prefix", kafka.topics.prefix,
        "--database-url", registry.database_url, "--artifact-dir", str(registry.artifact_dir),
        "--no-auto-rollback",
    ]  # fmt: skip
    with log.open("wb") as out:
        return subprocess.Popen(command, stdout=out, stderr=subprocess.STDOUT)


async def _assigned(log: Path, timeout_s: float) -> None:
    async with asyncio.timeout(timeout_s):
        while True:  # polling a log file: no event to wait on
            if b"partitions assigned" in await asyncio.to_thread(log.read_bytes):
                return
            await asyncio.sleep(0.2)


async def _stream_and_kill(
    kafka: KafkaSettings, cluster: KafkaCluster
) -> tuple[dict[str, float], float]:
    """Publish jobs at a steady rate; after a while, SIGKILL the leader of the predict
    partition the jobs just went to. Returns when each job was sent, and the kill's time."""
    rows = [r.tolist() for r in digits_samples(50)[0]]
    producer = AIOKafkaProducer(**kafka.producer(await detect_capabilities(kafka)))
    await producer.start()
    sent: dict[str, float] = {}
    acks = []
    killed_at = 0.0
    try:
        started = time.monotonic()
        while (now := time.monotonic()) < started + BEFORE_KILL_S + AFTER_KILL_S:
            job_id = f"j{len(sent)}"
            body = {"job_id": job_id, "model": "digits", "inputs": {"x": [rows[len(sent) % 50]]}}
            acks.append(await producer.send(kafka.topics.predict, json.dumps(body).encode()))
            sent[job_id] = now
            if not killed_at and now > started + BEFORE_KILL_S:
                partition = (await acks[-1]).partition
                leader = producer.client.cluster.leader_for_partition(
                    TopicPartition(kafka.topics.predict, partition)
                )
                cluster.node(leader).kill()
                killed_at = time.monotonic()
            await asyncio.sleep(max(0.0, started + len(sent) / JOBS_PER_S - time.monotonic()))
        await asyncio.gather(*acks)
    finally:
        await producer.stop()
    return sent, killed_at


class _Answers:
    """Reads the results topic from the beginning, noting when each answer arrived."""

    def __init__(self, kafka: KafkaSettings) -> None:
        self.kafka = kafka
        self.arrived: dict[str, float] = {}

    @contextlib.asynccontextmanager
    async def reading(self) -> AsyncIterator[None]:
        task = asyncio.create_task(self._read())
        try:
            yield
        finally:
            task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await task

    async def _read(self) -> None:
        capabilities = await detect_capabilities(self.kafka)
        consumer = AIOKafkaConsumer(
            self.kafka.topics.results,
            **self.kafka.consumer(
                capabilities, None, auto_offset_reset="earliest", fetch_max_wait_ms=50
            ),
        )
        await consumer.start()
        try:
            while True:
                batch = await consumer.getmany(timeout_ms=200)
                now = time.monotonic()
                for records in batch.values():
                    for record in records:
                        self.arrived.setdefault(json.loads(record.value)["job_id"], now)
        finally:
            await consumer.stop()

    async def wait_for(self, sent: dict[str, float], timeout_s: float) -> None:
        deadline = time.monotonic() + timeout_s
        while missing := sent.keys() - self.arrived.keys():
            assert time.monotonic() < deadline, f"{len(missing)} of {len(sent)} never answered"
            await asyncio.sleep(0.2)

    def longest_gap_after(self, moment: float) -> float:
        times = sorted(t for t in self.arrived.values() if t >= moment)
        return max((b - a for a, b in zip([moment, *times], times, strict=False)), default=0.0)

    def slowest_s(self, sent: dict[str, float]) -> float:
        return max(self.arrived[job_id] - at for job_id, at in sent.items())
