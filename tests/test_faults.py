"""Fault tests: real worker processes (``maas worker``) killed, rebalanced and fed poison.

At-least-once means every job is answered at least once whatever happens to the
workers; duplicates are allowed after a crash, but a clean SIGTERM commits what it
answered so a restarted worker does not answer it again.
"""

from __future__ import annotations

import asyncio
import json
import signal
import subprocess
import sys
from collections import Counter
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from aiokafka.structs import ConsumerRecord

from producer.kafka import KafkaSettings, ensure_topics
from registry.bundle import Registry
from registry.drafts import Draft
from registry.settings import RegistrySettings
from tests.kafka_helpers import publish, read
from workers.demo import build_digits_model, digits_samples

pytestmark = [
    pytest.mark.both_brokers,
    pytest.mark.filterwarnings("ignore:open_text is deprecated:DeprecationWarning"),
]


@pytest.fixture(scope="module")
def digits_onnx(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return build_digits_model(tmp_path_factory.mktemp("digits")).artifact


@pytest.fixture
def registry(tmp_path: Path, digits_onnx: Path) -> RegistrySettings:
    settings = RegistrySettings(
        database_url=f"sqlite:///{tmp_path / 'registry.db'}", artifact_dir=tmp_path / "artifacts"
    )
    with Registry.open(settings) as opened:
        opened.models.register("digits", Draft(digits_onnx, promote=True), actor="test")
    return settings


class Workers:
    """Starts ``maas worker`` processes against the test's broker, topics and registry."""

    def __init__(self, kafka: KafkaSettings, registry: RegistrySettings, logs: Path) -> None:
        self.kafka, self.registry, self.logs = kafka, registry, logs
        self.started: list[subprocess.Popen[bytes]] = []

    def start(self) -> subprocess.Popen[bytes]:
        prefix = self.kafka.topics.predict.removesuffix("predict")
        command = [
            sys.executable, "-m", "maas.cli", "worker",
            "--bootstrap-servers", self.kafka.bootstrap_servers, "--topic-prefix", prefix,
            "--database-url", self.registry.database_url,
            "--artifact-dir", str(self.registry.artifact_dir),
            "--max-in-flight", "500", "--no-auto-rollback",
        ]  # fmt: skip
        with (self.logs / f"worker-{len(self.started)}.log").open("wb") as log:
            process = subprocess.Popen(command, stdout=log, stderr=subprocess.STDOUT)
        self.started.append(process)
        return process

    async def assigned(self, index: int, timeout_s: float) -> None:
        """Wait until worker ``index`` logs a partition assignment."""
        path = self.logs / f"worker-{index}.log"
        async with asyncio.timeout(timeout_s):
            while True:  # polling a log file: no event to wait on
                if b"partitions assigned" in path.read_bytes():
                    return
                await asyncio.sleep(0.2)

    def close(self) -> None:
        for process in self.started:
            if process.poll() is None:
                process.kill()
                process.wait(10)


@pytest.fixture
def workers(kafka: KafkaSettings, registry: RegistrySettings, tmp_path: Path) -> Iterator[Workers]:
    pool = Workers(kafka, registry, tmp_path)
    yield pool
    pool.close()


def job(job_id: str, inputs: Any) -> bytes:
    return json.dumps({"job_id": job_id, "model": "digits", "inputs": inputs}).encode()


async def publish_jobs(kafka: KafkaSettings, n: int, prefix: str = "j") -> set[str]:
    # predict's partitions for the workers to share, not the one partition Apache Kafka
    # gives a topic that a first send creates
    await ensure_topics(kafka)
    rows = [r.tolist() for r in digits_samples(100)[0]]
    ids = [f"{prefix}-{i}" for i in range(n)]
    raws = [job(j, {"x": [rows[i % 100]]}) for i, j in enumerate(ids)]
    await publish(kafka, kafka.topics.predict, raws)
    return set(ids)


class Answers:
    """Reads the results topic from the beginning; counts answers per job_id."""

    def __init__(self, kafka: KafkaSettings) -> None:
        self.kafka = kafka
        self.records: list[ConsumerRecord[bytes, bytes]] = []

    async def wait(self, predicate: Any, timeout_s: float) -> Counter[str]:
        def done(records: list[ConsumerRecord[bytes, bytes]]) -> bool:
            return bool(predicate(self.count(records)))

        self.records = await read(
            self.kafka, self.kafka.topics.results, until=done, timeout_s=timeout_s
        )
        return self.count(self.records)

    def bodies(self) -> list[dict[str, Any]]:
        return [json.loads(r.value) for r in self.records if r.value]

    @staticmethod
    def count(records: list[ConsumerRecord[bytes, bytes]]) -> Counter[str]:
        return Counter(json.loads(r.value)["job_id"] for r in records if r.value)


@pytest.mark.slow
async def test_sigkill_mid_stream_loses_no_job(kafka: KafkaSettings, workers: Workers) -> None:
    ids = await publish_jobs(kafka, 5000)
    first = workers.start()
    answers = Answers(kafka)
    seen = await answers.wait(lambda c: len(c) >= 300, timeout_s=60)
    first.send_signal(signal.SIGKILL)
    first.wait(10)
    assert len(seen) < len(ids), "the first worker finished before it could be killed"

    workers.start()
    counts = await answers.wait(lambda c: ids <= set(c), timeout_s=60)
    assert ids <= set(counts)  # none lost; duplicates allowed after a crash
    assert all(b["status"] == "ok" for b in answers.bodies())


@pytest.mark.slow
async def test_two_workers_share_the_load_through_a_rebalance(
    kafka: KafkaSettings, workers: Workers
) -> None:
    ids = await publish_jobs(kafka, 5000)
    workers.start()
    answers = Answers(kafka)
    await answers.wait(lambda c: len(c) >= 200, timeout_s=60)
    workers.start()  # joins mid-stream: the group rebalances
    await workers.assigned(1, timeout_s=60)
    more = await publish_jobs(kafka, 3000, prefix="k")
    counts = await answers.wait(lambda c: (ids | more) <= set(c), timeout_s=90)
    assert (ids | more) <= set(counts)
    by_worker = Counter(b["worker"] for b in answers.bodies())
    assert len(by_worker) == 2, by_worker


@pytest.mark.slow
async def test_poison_jobs_do_not_block_their_partition(
    kafka: KafkaSettings, workers: Workers
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
    workers.start()
    answers = Answers(kafka)
    wanted = {"huge", "nested", "no-inputs", "after-0", "after-1", "after-2"}
    await answers.wait(lambda c: wanted <= set(c), timeout_s=60)
    status = {b["job_id"]: b["status"] for b in answers.bodies()}
    assert [status[f"after-{i}"] for i in range(3)] == ["ok"] * 3
    assert {status["nested"], status["no-inputs"]} == {"error"}  # huge: answered either way
    dead = await read(kafka, kafka.topics.dlq, until=lambda rs: len(rs) >= 1)
    assert dead[0].value == b"\xff\xfe not json"


@pytest.mark.slow
async def test_sigterm_drains_commits_and_exits_zero(
    kafka: KafkaSettings, workers: Workers
) -> None:
    ids = await publish_jobs(kafka, 3000)
    first = workers.start()
    answers = Answers(kafka)
    await answers.wait(lambda c: len(c) >= 500, timeout_s=60)
    first.send_signal(signal.SIGTERM)
    assert first.wait(60) == 0

    before = len(answers.count(answers.records))
    workers.start()
    counts = await answers.wait(lambda c: ids <= set(c), timeout_s=60)
    repeated = sum(1 for n in counts.values() if n > 1)
    assert ids <= set(counts)
    assert before >= 500
    assert repeated <= len(ids) // 10, f"{repeated} jobs answered twice after a clean stop"
