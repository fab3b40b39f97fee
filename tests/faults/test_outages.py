"""Services that come and go, and workers that wait: a broker restarted empty, a registry
gone away, a group that keeps a new worker waiting, a group with no partition to spare.
Real brokers, a real PostgreSQL behind a proxy that can be cut, real worker processes."""

from __future__ import annotations

import asyncio
import contextlib
import logging
import os
import signal
import subprocess
import sys
import threading
import time
from collections import Counter
from collections.abc import AsyncIterator, Iterator
from pathlib import Path

import pytest
import structlog
from aiokafka.admin import AIOKafkaAdminClient, NewTopic

from maas.broker import EmbeddedBroker, free_port
from producer.kafka import KafkaSettings, Topics
from registry.drafts import Draft
from registry.entities import ModelVersion
from registry.registry import Registry
from registry.settings import RegistrySettings
from tests.kafka_helpers import job, publish, read_results, topic_names
from workers.kafka.clients import JOIN_REPORT_S, RetrySettings
from workers.logs import RateLimit
from workers.recipes.demo import digits_samples
from workers.serving.loop import Worker, WorkerSettings

pytest_plugins = ["tests.registry_fixtures", "tests.serving_fixtures"]


@contextlib.asynccontextmanager
async def serving(worker: Worker) -> AsyncIterator[asyncio.Task[None]]:
    stop = asyncio.Event()
    task = asyncio.create_task(worker.run(stop))
    await asyncio.wait_for(worker.ready.wait(), 60)
    try:
        yield task
    finally:
        stop.set()
        await asyncio.wait_for(task, 60)


class Lines(logging.Handler):
    """Counts the log records it is handed, per logger and message template."""

    def __init__(self) -> None:
        super().__init__()
        self.counts: Counter[tuple[str, str]] = Counter()

    def emit(self, record: logging.LogRecord) -> None:
        self.counts[(record.name, str(record.msg))] += 1


@pytest.fixture
def aiokafka_lines() -> Iterator[tuple[Lines, Lines]]:
    """What aiokafka logs: all of it, and what a RateLimit filter lets through."""
    everything, limited = Lines(), Lines()
    limited.addFilter(RateLimit())
    logger = logging.getLogger("aiokafka")
    # As at --log-level debug, where maas shows the library's lines (rate-limited); at
    # other levels an earlier logs.configure() in this process silences them.
    level = logger.level
    logger.setLevel(logging.WARNING)
    for handler in (everything, limited):
        logger.addHandler(handler)
    yield everything, limited
    for handler in (everything, limited):
        logger.removeHandler(handler)
    logger.setLevel(level)


@pytest.mark.broker  # starts an embedded broker of its own
async def test_a_broker_restarted_empty_gets_the_topics_back_and_its_noise_is_limited(
    registry: Registry, digits: ModelVersion, aiokafka_lines: tuple[Lines, Lines]
) -> None:
    port = free_port()
    kafka = KafkaSettings(
        bootstrap_servers=f"127.0.0.1:{port}", topics=Topics("restart."), embedded=True
    )
    pixels, _ = digits_samples(2, seed=1)
    broker = EmbeddedBroker(port=port).start()
    worker = Worker(
        kafka, registry.models, registry.metrics, WorkerSettings(topic_check_interval_s=1.0)
    )
    try:
        async with serving(worker):
            await publish(kafka, kafka.topics.predict, [job("before", {"x": [pixels[0].tolist()]})])
            assert (await read_results(kafka, {"before"}))["before"]["status"] == "ok"

            await asyncio.to_thread(broker.stop)
            everything, limited = aiokafka_lines
            everything.counts.clear()
            limited.counts.clear()
            await asyncio.sleep(4)  # down: its clients try to reconnect, and say so
            noise, shown = everything.counts.copy(), limited.counts.copy()
            broker = EmbeddedBroker(port=port).start()  # the same port, and nothing stored

            async with asyncio.timeout(30):  # polling the broker: no event to wait on
                while True:
                    if set(kafka.topics.partitions()) <= await topic_names(kafka):
                        break
                    await asyncio.sleep(0.5)
            await publish(kafka, kafka.topics.predict, [job("after", {"x": [pixels[1].tolist()]})])
            assert (await read_results(kafka, {"after"}))["after"]["status"] == "ok"
    finally:
        broker.stop()
    assert sum(noise.values()) > 4 * len(noise)  # more than a line a second of each kind
    assert set(shown) <= set(noise) and max(shown.values()) == 1  # each kind once in 4 s


class Proxy:
    """A TCP proxy to ``127.0.0.1:target`` in a thread of its own, which can be cut:
    every connection closed and no new one taken, as when a database host goes away."""

    def __init__(self, target: int) -> None:
        self.port, self._target = free_port(), target
        self._loop = asyncio.new_event_loop()
        self._ready = threading.Event()
        self._thread = threading.Thread(target=self._run, daemon=True)
        self._writers: set[asyncio.StreamWriter] = set()
        self._server: asyncio.Server | None = None

    def __enter__(self) -> Proxy:
        self._thread.start()
        self._ready.wait(10)
        return self

    def __exit__(self, *exc: object) -> None:
        self.cut()
        self._loop.call_soon_threadsafe(self._loop.stop)
        self._thread.join(10)

    def _run(self) -> None:
        asyncio.set_event_loop(self._loop)
        self._server = self._loop.run_until_complete(
            asyncio.start_server(self._relay, "127.0.0.1", self.port)
        )
        self._ready.set()
        self._loop.run_forever()
        self._loop.close()

    async def _relay(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        upstream_reader, upstream = await asyncio.open_connection("127.0.0.1", self._target)
        self._writers |= {writer, upstream}

        async def pipe(source: asyncio.StreamReader, sink: asyncio.StreamWriter) -> None:
            with contextlib.suppress(OSError):
                while data := await source.read(65536):
                    sink.write(data)
                    await sink.drain()
            sink.close()

        await asyncio.gather(pipe(reader, upstream), pipe(upstream_reader, writer))

    def cut(self) -> None:
        async def close() -> None:
            if self._server is not None:
                self._server.close()
            for writer in self._writers:
                writer.transport.abort()

        asyncio.run_coroutine_threadsafe(close(), self._loop).result(10)


@pytest.mark.postgres
async def test_a_registry_gone_away_serves_the_last_known_alias_and_leaks_nothing(
    kafka: KafkaSettings, pg_url: str, digits_artifact: Path, tmp_path: Path
) -> None:
    """Alias jobs go on at the version the alias last resolved to; a job that needs the
    registry is answered INTERNAL (after its retries) without SQL, host or path."""
    artifacts = tmp_path / "artifacts"
    direct = RegistrySettings(database_url=pg_url, artifact_dir=artifacts)
    with Registry.open(direct) as registry:
        registry.models.register("digits", Draft(digits_artifact, promote=True), actor="test")
        registry.models.register("digits", Draft(digits_artifact), actor="test")  # 2, not loaded
    pixels, _ = digits_samples(3, seed=2)
    with Proxy(5432) as proxy:
        behind = RegistrySettings(
            database_url=pg_url.replace(":5432/", f":{proxy.port}/"), artifact_dir=artifacts
        )
        registry = await asyncio.to_thread(Registry.open, behind)
        settings = WorkerSettings(
            alias_ttl_s=0.2, retry=RetrySettings(attempts=1, backoff_s=0.1), metrics_interval_s=60
        )
        worker = Worker(kafka, registry.models, registry.metrics, settings)
        try:
            async with serving(worker):
                await publish(kafka, kafka.topics.predict, [job("up", {"x": [pixels[0].tolist()]})])
                assert (await read_results(kafka, {"up"}))["up"]["version"] == 1

                proxy.cut()
                await asyncio.sleep(0.5)  # the cached alias expires
                with structlog.testing.capture_logs() as logs:
                    down = [
                        job("down", {"x": [pixels[1].tolist()]}),
                        job("pinned", {"x": [pixels[2].tolist()]}, version=2),
                    ]
                    await publish(kafka, kafka.topics.predict, down)
                    results = await read_results(kafka, {"down", "pinned"})
        finally:
            await asyncio.to_thread(registry.close)
    assert (results["down"]["status"], results["down"]["version"]) == ("ok", 1)
    assert any(e["event"].startswith("registry unavailable; serving the last") for e in logs)
    error = results["pinned"]["error"]
    assert error["code"] == "INTERNAL" and "DatabaseError" in error["message"]
    for secret in ("127.0.0.1", str(proxy.port), "postgresql", "SELECT", str(artifacts)):
        assert secret not in error["message"]


MEMBER = """
import asyncio, sys
from aiokafka import AIOKafkaConsumer

async def main() -> None:
    consumer = AIOKafkaConsumer(
        sys.argv[2], bootstrap_servers=sys.argv[1], group_id="maas-workers",
        session_timeout_ms=30000, heartbeat_interval_ms=1000, max_poll_interval_ms=300000,
    )
    await consumer.start()
    print("joined", flush=True)
    await asyncio.sleep(600)

asyncio.run(main())
"""


@pytest.mark.slow
def test_a_worker_kept_waiting_by_its_group_says_why_and_stops_on_sigint(
    kafka: KafkaSettings, registry_settings: RegistrySettings, tmp_path: Path
) -> None:
    """A member that died without leaving holds the group's join up for a minute; the
    new worker says so, and Ctrl-C ends the wait at once."""
    asyncio.run(_topics(kafka))
    with subprocess.Popen(
        [sys.executable, "-c", MEMBER, kafka.bootstrap_servers, kafka.topics.predict],
        stdout=subprocess.PIPE,
    ) as member:
        assert member.stdout is not None and member.stdout.readline() == b"joined\n"
        member.kill()
    log = tmp_path / "worker.log"
    command = [
        *(sys.executable, "-m", "maas.cli", "worker", "--embedded-broker"),
        *("--bootstrap-servers", kafka.bootstrap_servers, "--topic-prefix", kafka.topics.prefix),
        *("--database-url", registry_settings.database_url),
        *("--artifact-dir", str(registry_settings.artifact_dir)),
    ]
    with log.open("wb") as out:
        worker = subprocess.Popen(command, stdout=out, stderr=subprocess.STDOUT, env=os.environ)
    try:
        deadline = time.monotonic() + JOIN_REPORT_S + 30
        while b"still waiting to join the consumer group" not in log.read_bytes():
            assert time.monotonic() < deadline, log.read_text()
            assert worker.poll() is None, log.read_text()
            time.sleep(0.2)
        worker.send_signal(signal.SIGINT)
        assert worker.wait(10) == 0, log.read_text()
    finally:
        if worker.poll() is None:
            worker.kill()
    text = log.read_text()
    assert "member(s)" in text and "stopped while starting" in text
    assert "Traceback" not in text


async def _topics(kafka: KafkaSettings) -> None:
    from producer.kafka import ensure_topics

    await ensure_topics(kafka)


async def test_a_worker_with_no_partition_to_spare_says_why(
    kafka: KafkaSettings, registry: Registry, digits: ModelVersion
) -> None:
    admin = AIOKafkaAdminClient(bootstrap_servers=kafka.bootstrap_servers)
    await admin.start()
    try:  # one partition: the second worker in the group gets none
        await admin.create_topics([NewTopic(kafka.topics.predict, 1, 1)])
    finally:
        await admin.close()
    settings = WorkerSettings(standby_report_s=1.0)
    first = Worker(kafka, registry.models, registry.metrics, settings)
    second = Worker(kafka, registry.models, registry.metrics, settings)
    with structlog.testing.capture_logs() as logs:
        async with serving(first):
            stop = asyncio.Event()
            task = asyncio.create_task(second.run(stop))
            async with asyncio.timeout(60):  # polling the captured log
                while True:
                    if any(e["event"] == "no partitions assigned" for e in logs):
                        break
                    await asyncio.sleep(0.2)
            stop.set()
            await asyncio.wait_for(task, 60)
    standby = next(e for e in logs if e["event"] == "no partitions assigned")
    assert "hold all 1 partitions" in standby["why"]
