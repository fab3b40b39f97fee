"""maas behind its HTTP door, for bench/http.py: a broker, `maas gateway` and `maas worker`.

Each runs as a process of its own, as a user runs them: the gateway with
``--allow-anonymous`` (the load generator acts for the default tenant, as on `maas up`),
no gRPC port, and one `maas worker` process per model while that model is measured.
"""

from __future__ import annotations

import subprocess
import sys
import time
import urllib.error
import urllib.request
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass

from bench.measure import Setup, start
from bench.workloads import Workload
from maas.broker import EmbeddedBroker, free_port, terminate
from producer.kafka import KafkaSettings
from scripts.apache_kafka import ApacheKafka


@dataclass(frozen=True)
class Broker:
    """The broker measured through: where it listens, what it is, its process (for CPU)."""

    bootstrap: str
    name: str
    pid: int | None


@contextmanager
def running_broker(kind: str) -> Iterator[Broker]:
    """``kind`` embedded (Tansu) or kafka (Apache Kafka from its jars), started."""
    if kind == "kafka":
        with ApacheKafka() as kafka:
            process = kafka._process  # private: the JVM, for its CPU
            pid = process.pid if process is not None else None
            yield Broker(kafka.bootstrap_servers, f"Apache Kafka {kafka.version}", pid)
    else:
        with EmbeddedBroker() as embedded:
            process = embedded._process  # private: the process, for its CPU
            pid = process.pid if process is not None else None
            yield Broker(embedded.bootstrap_servers, "the embedded broker (Tansu)", pid)


def wait_ready(url: str, process: subprocess.Popen[bytes], what: str, timeout_s: float) -> None:
    """Until ``url`` answers 200; raises RuntimeError if ``process`` exits first or time runs out."""
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        if process.poll() is not None:
            raise RuntimeError(f"{what} exited with {process.returncode} before it was ready")
        try:
            with urllib.request.urlopen(url, timeout=2) as answer:
                if answer.status == 200:
                    return
        except (urllib.error.URLError, OSError):
            pass
        time.sleep(0.3)
    raise RuntimeError(f"{what} was not ready within {timeout_s:.0f} s ({url})")


@contextmanager
def gateway(kafka: KafkaSettings, setup: Setup) -> Iterator[tuple[str, int]]:
    """`maas gateway` on a free port until the block ends; yields its URL and pid."""
    port = free_port()
    registry = setup.registry
    cmd = [
        sys.executable, "-m", "maas.cli", "--log-level", "warning", "gateway",
        "--host", "127.0.0.1", "--http-port", str(port), "--grpc-port", "0",
        "--allow-anonymous", "--bootstrap-servers", kafka.bootstrap_servers,
        "--topic-prefix", kafka.topics.prefix, "--database-url", registry.database_url,
        "--artifact-dir", str(registry.artifact_dir),
    ]  # fmt: skip
    process = subprocess.Popen(cmd)
    url = f"http://127.0.0.1:{port}"
    try:
        wait_ready(f"{url}/v2/health/ready", process, "maas gateway", 60)
        yield url, process.pid
    finally:
        terminate(process, timeout_s=30)


def answered(url: str, body: bytes, process: subprocess.Popen[bytes], timeout_s: float) -> None:
    """Until a POST of ``body`` (a JSON infer request) to ``url`` is answered 200: the
    worker has joined its group and loaded the model."""
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        if process.poll() is not None:
            raise RuntimeError(f"maas worker exited with {process.returncode}")
        request = urllib.request.Request(url, body, {"Content-Type": "application/json"})
        try:
            with urllib.request.urlopen(request, timeout=timeout_s) as answer:
                if answer.status == 200:
                    return
        except (urllib.error.URLError, OSError):
            time.sleep(0.5)
    raise RuntimeError(f"no answer from {url} within {timeout_s:.0f} s")


@contextmanager
def worker(
    kafka: KafkaSettings, setup: Setup, workload: Workload, url: str, probe: bytes
) -> Iterator[int]:
    """`maas worker` for ``setup.model`` until the block ends, once it has answered
    ``probe`` (an infer request's JSON body) through the gateway at ``url``; yields its pid."""
    process = start("maas", kafka, setup, workload)
    try:
        answered(f"{url}/v2/models/{setup.model}/infer", probe, process, 90)
        yield process.pid
    finally:
        terminate(process, timeout_s=30)
