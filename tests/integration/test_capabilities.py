"""What the broker can do, asked at start: idempotence on Apache Kafka, none on the
embedded broker; no broker at all is one clear error, soon."""

from __future__ import annotations

import os
import subprocess
import sys
import time
from pathlib import Path

import pytest
from aiokafka import AIOKafkaProducer

from maas.broker import free_port
from producer.errors import BrokerUnavailable
from producer.kafka import KafkaSettings, detect_capabilities
from scripts.apache_kafka import ApacheKafka
from tests.cli_helpers import no_noise
from tests.kafka_helpers import Broker, read

pytestmark = pytest.mark.both_brokers


async def test_producers_are_idempotent_where_the_broker_grants_it(
    broker: Broker, kafka: KafkaSettings
) -> None:
    capabilities = await detect_capabilities(kafka)
    assert capabilities.idempotence == isinstance(broker, ApacheKafka)
    options = kafka.producer(capabilities)
    assert options.get("enable_idempotence", False) == capabilities.idempotence
    producer = AIOKafkaProducer(**options)
    await producer.start()
    try:
        await producer.send_and_wait(kafka.topics.results, b"acked", key=b"k")
    finally:
        await producer.stop()
    records = await read(kafka, kafka.topics.results, until=lambda r: len(r) >= 1)
    assert records[0].value == b"acked"


async def test_the_embedded_override_turns_idempotence_off_whatever_the_broker(
    broker: Broker,
) -> None:
    settings = KafkaSettings(bootstrap_servers=broker.bootstrap_servers, embedded=True)
    capabilities = await detect_capabilities(settings)
    assert not capabilities.idempotence
    assert "enable_idempotence" not in settings.producer(capabilities)


async def test_no_broker_is_one_error_naming_the_servers_within_the_time_given() -> None:
    servers = f"127.0.0.1:{free_port()}"
    started = time.monotonic()
    with pytest.raises(BrokerUnavailable) as caught:
        await detect_capabilities(KafkaSettings(bootstrap_servers=servers), timeout_s=1.0)
    assert time.monotonic() - started < 10  # its 1 s, not the default 15 s
    assert servers in str(caught.value) and "MAAS_BOOTSTRAP_SERVERS" in str(caught.value)


@pytest.mark.slow
def test_commands_without_a_broker_say_so_in_one_line_and_no_traceback(tmp_path: Path) -> None:
    servers = f"127.0.0.1:{free_port()}"
    env = {key: value for key, value in os.environ.items() if not key.startswith("MAAS_")}
    env |= {
        "MAAS_BOOTSTRAP_SERVERS": servers,
        "MAAS_DATABASE_URL": f"sqlite:///{tmp_path / 'registry.db'}",
        "MAAS_ARTIFACT_DIR": str(tmp_path / "artifacts"),
    }
    commands = {
        "worker": ["worker"],
        "trainer": ["trainer"],
        "submit": ["submit", "--model", "digits", "--inputs", '{"x": [[0.0]]}'],
    }
    running = {
        name: subprocess.Popen(
            [sys.executable, "-m", "maas.cli", *args],
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            text=True,
            env=env,
        )
        for name, args in commands.items()
    }
    # Servers exit 1 (failed); `maas submit` exits 2 (no answer: run it again later).
    exit_codes = {"worker": 1, "trainer": 1, "submit": 2}
    for name, process in running.items():
        out, err = process.communicate(timeout=90)  # bounded: no hang, however slow the machine
        assert process.returncode == exit_codes[name], err
        no_noise(out + err)  # none of the Kafka libraries' own log lines either
        if name == "submit":
            assert out == ""  # no result printed
        [line] = err.strip().splitlines()  # one line, no traceback, no retry chatter
        # services wait for a broker that may be starting; a client stops sooner when
        # every connection is refused at once (nothing listens there)
        said = {"submit": f"listens at {servers} (connections refused for 3s)"}
        expected = f"error: no Kafka broker {said.get(name, f'answered at {servers}')}"
        assert line.startswith(expected), (name, line)
