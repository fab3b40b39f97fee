"""What an idle worker costs: CPU of a broker and a ``maas worker`` with no traffic.

Starts a broker (``--broker embedded``: ``maas broker``; ``kafka``: Apache Kafka from
its jars) and measures its CPU alone; then starts ``maas worker`` serving the digits
model, sends it one job (so that it has joined its group and loaded the model), waits
for the fetch wait to settle and samples both processes' CPU from /proc over
``--seconds`` with no traffic. Last, one more job measures the round trip of the first
job after the quiet spell (what a longer fetch wait while idle costs). CPU is in % of
one core, summed over each process and its children (Tansu or the JVM under their
launchers).

    python -m bench.idle --broker embedded --seconds 30
"""

from __future__ import annotations

import argparse
import asyncio
import json
import subprocess
import sys
import tempfile
import time
import uuid
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

from aiokafka import AIOKafkaConsumer, AIOKafkaProducer

from bench.cpu import cpu_seconds
from maas.broker import free_port, terminate
from producer.kafka import KafkaSettings, Topics, detect_capabilities, ensure_topics
from producer.tail import tail_async
from registry.drafts import Draft
from registry.registry import Registry
from registry.settings import RegistrySettings
from workers.recipes.demo import build_digits_model, digits_samples


def sample(pids: dict[str, int], seconds: float) -> dict[str, float]:
    """Each process tree's CPU over ``seconds``, in % of one core."""
    before = {name: cpu_seconds(pid) for name, pid in pids.items()}
    started = time.monotonic()
    time.sleep(seconds)
    elapsed = time.monotonic() - started
    return {name: 100 * (cpu_seconds(pid) - before[name]) / elapsed for name, pid in pids.items()}


@contextmanager
def running(command: list[str], *, ready: str | None = None) -> Iterator[subprocess.Popen[str]]:
    """``command`` as a process until the block ends (SIGTERM, then SIGKILL); with
    ``ready``, first wait for a line of its output that contains it."""
    process = subprocess.Popen(command, stdout=subprocess.PIPE, text=True)
    try:
        if ready is not None:
            assert process.stdout is not None
            for line in process.stdout:
                if ready in line:
                    break
            else:
                raise RuntimeError(f"{command[:4]} exited before it was ready")
        yield process
    finally:
        terminate(process, timeout_s=30)


def broker_command(kind: str, port: int) -> list[str]:
    if kind == "kafka":
        return [sys.executable, "-m", "scripts.apache_kafka", "--port", str(port)]
    return [sys.executable, "-m", "maas.cli", "broker", "--port", str(port)]


def worker_command(kafka: KafkaSettings, registry: RegistrySettings) -> list[str]:
    return [
        sys.executable, "-m", "maas.cli", "--log-level", "warning", "worker",
        "--bootstrap-servers", kafka.bootstrap_servers,
        "--topic-prefix", kafka.topics.prefix,
        "--database-url", registry.database_url,
        "--artifact-dir", str(registry.artifact_dir),
        "--model", "digits",
    ]  # fmt: skip


async def round_trip(kafka: KafkaSettings, job_id: str, timeout_s: float = 120.0) -> float:
    """Publish one digits job and wait for its result: the time between, in ms."""
    capabilities = await detect_capabilities(kafka)
    consumer = AIOKafkaConsumer(**kafka.consumer(capabilities, None, fetch_max_wait_ms=5))
    producer = AIOKafkaProducer(**kafka.producer(capabilities, linger_ms=0))
    await consumer.start()
    await producer.start()
    try:
        await tail_async(consumer, kafka.topics.results)
        pixels = digits_samples(1)[0][0].tolist()
        body = json.dumps({"job_id": job_id, "model": "digits", "inputs": {"x": [pixels]}})
        sent = time.perf_counter()
        await producer.send_and_wait(kafka.topics.predict, body.encode(), key=job_id.encode())
        async with asyncio.timeout(timeout_s):
            while True:
                batch = await consumer.getmany(timeout_ms=1000)
                if any(r.key == job_id.encode() for rs in batch.values() for r in rs):
                    return (time.perf_counter() - sent) * 1000
    finally:
        await producer.stop()
        await consumer.stop()


def measure(kind: str, seconds: float, settle_s: float, workdir: Path) -> dict[str, object]:
    port = free_port()
    kafka = KafkaSettings(f"127.0.0.1:{port}", Topics(f"idle{uuid.uuid4().hex[:6]}."))
    registry = RegistrySettings(
        database_url=f"sqlite:///{workdir / 'registry.db'}", artifact_dir=workdir / "artifacts"
    )
    with Registry.open(registry) as opened:
        artifact = build_digits_model(workdir).artifact
        opened.models.register("digits", Draft(artifact, promote=True), actor="bench")
    with running(broker_command(kind, port), ready="listening on") as broker:
        asyncio.run(ensure_topics(kafka, timeout_s=120))
        time.sleep(settle_s)
        alone = sample({"broker": broker.pid}, seconds)["broker"]
        with running(worker_command(kafka, registry)) as worker:
            first_ms = asyncio.run(round_trip(kafka, "idle-warm-up"))
            time.sleep(settle_s)
            idle = sample({"worker": worker.pid, "broker": broker.pid}, seconds)
            after_idle_ms = asyncio.run(round_trip(kafka, "idle-after"))
    return {
        "broker": kind,
        "seconds": seconds,
        "broker_alone_pct": alone,
        "worker_pct": idle["worker"],
        "broker_with_worker_pct": idle["broker"],
        "first_job_ms": first_ms,
        "job_after_idle_ms": after_idle_ms,
    }


def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--broker", choices=["embedded", "kafka"], default="embedded")
    parser.add_argument("--seconds", type=float, default=30.0, help="each sample's length")
    parser.add_argument("--settle", type=float, default=5.0, help="quiet seconds before sampling")
    args = parser.parse_args()
    with tempfile.TemporaryDirectory() as tmp:
        figures = measure(args.broker, args.seconds, args.settle, Path(tmp))
    print(
        f"{figures['broker']}: over {args.seconds:g} s with no traffic, the idle worker took "
        f"{figures['worker_pct']:.1f}% of a core and the broker "
        f"{figures['broker_with_worker_pct']:.1f}% (alone: {figures['broker_alone_pct']:.1f}%); "
        f"a job after the quiet spell took {figures['job_after_idle_ms']:.0f} ms end to end"
    )
    print(json.dumps(figures))


if __name__ == "__main__":
    main()
