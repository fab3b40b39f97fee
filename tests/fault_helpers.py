"""Helpers of the fault tests: ``maas worker`` processes to start and kill, jobs to
publish, and a reader that counts the answers per job_id."""

from __future__ import annotations

import asyncio
import json
import subprocess
import sys
from collections import Counter
from pathlib import Path
from typing import Any

from aiokafka.structs import ConsumerRecord

from producer.kafka import KafkaSettings, ensure_topics
from registry.settings import RegistrySettings
from tests.kafka_helpers import publish, read
from workers.recipes.demo import digits_samples


class Workers:
    """Starts ``maas worker`` processes against the test's broker, topics and registry."""

    def __init__(self, kafka: KafkaSettings, registry: RegistrySettings, logs: Path) -> None:
        self.kafka, self.registry, self.logs = kafka, registry, logs
        self.started: list[subprocess.Popen[bytes]] = []

    def start(self, *flags: str) -> subprocess.Popen[bytes]:
        """Start a worker; ``flags``: more of its command line (``--exactly-once``)."""
        prefix = self.kafka.topics.predict.removesuffix("predict")
        command = [
            sys.executable, "-m", "maas.cli", "worker",
            "--bootstrap-servers", self.kafka.bootstrap_servers, "--topic-prefix", prefix,
            "--database-url", self.registry.database_url,
            "--artifact-dir", str(self.registry.artifact_dir),
            "--max-in-flight", "500", "--no-auto-rollback", *flags,
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


def job(job_id: str, inputs: Any) -> bytes:
    return json.dumps({"job_id": job_id, "model": "digits", "inputs": inputs}).encode()


def digits_jobs(n: int, prefix: str = "j") -> dict[str, bytes]:
    """``n`` one-row digits jobs by job_id, as a plain client writes them."""
    rows = [r.tolist() for r in digits_samples(100)[0]]
    ids = [f"{prefix}-{i}" for i in range(n)]
    return {j: job(j, {"x": [rows[i % 100]]}) for i, j in enumerate(ids)}


async def publish_jobs(kafka: KafkaSettings, n: int, prefix: str = "j") -> set[str]:
    # predict's partitions for the workers to share, not the one partition Apache Kafka
    # gives a topic that a first send creates
    await ensure_topics(kafka)
    jobs = digits_jobs(n, prefix)
    await publish(kafka, kafka.topics.predict, list(jobs.values()))
    return set(jobs)


class Answers:
    """Reads the results topic from the beginning; counts answers per job_id.
    ``isolation_level``: the reader's (read_committed: answers of committed
    transactions only)."""

    def __init__(self, kafka: KafkaSettings, isolation_level: str = "read_uncommitted") -> None:
        self.kafka, self.isolation_level = kafka, isolation_level
        self.records: list[ConsumerRecord[bytes, bytes]] = []

    async def wait(self, predicate: Any, timeout_s: float) -> Counter[str]:
        def done(records: list[ConsumerRecord[bytes, bytes]]) -> bool:
            return bool(predicate(self.count(records)))

        self.records = await read(
            self.kafka,
            self.kafka.topics.results,
            until=done,
            timeout_s=timeout_s,
            isolation_level=self.isolation_level,
        )
        return self.count(self.records)

    def bodies(self) -> list[dict[str, Any]]:
        return [json.loads(r.value) for r in self.records if r.value]

    @staticmethod
    def count(records: list[ConsumerRecord[bytes, bytes]]) -> Counter[str]:
        return Counter(json.loads(r.value)["job_id"] for r in records if r.value)
