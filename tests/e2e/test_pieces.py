"""The pieces as a user runs them: ``maas broker``, ``maas worker`` and ``maas trainer``,
each a process of its own, with nothing set but where the broker and the registry are.

No ``MAAS_EMBEDDED_BROKER``: every process asks its broker what it can do. On Apache
Kafka the same flow runs with the session's broker in place of ``maas broker``.
"""

from __future__ import annotations

import json
import os
import time
from collections.abc import Iterator
from pathlib import Path

import pytest

from maas.broker import accepting, free_port
from scripts.apache_kafka import ApacheKafka
from tests.kafka_helpers import Broker
from tests.process_helpers import Pieces
from workers.recipes.demo import build_digits_model, digits_samples

pytestmark = [
    pytest.mark.slow,
    pytest.mark.both_brokers,
    pytest.mark.filterwarnings("ignore:open_text is deprecated:DeprecationWarning"),
]


@pytest.fixture
def pieces(tmp_path: Path) -> Iterator[Pieces]:
    """The user's environment: no MAAS_* variable but the registry's (tests add where
    the broker is)."""
    env = {key: value for key, value in os.environ.items() if not key.startswith("MAAS_")}
    env["MAAS_DATABASE_URL"] = f"sqlite:///{tmp_path / 'registry.db'}"
    env["MAAS_ARTIFACT_DIR"] = str(tmp_path / "artifacts")
    started = Pieces(env, tmp_path)
    yield started
    started.stop()


def bootstrap_servers(broker: Broker, pieces: Pieces) -> str:
    """Apache Kafka is the session's; the embedded broker is ``maas broker``, as a user
    starts it."""
    if isinstance(broker, ApacheKafka):
        return broker.bootstrap_servers
    port = free_port()
    pieces.start("broker", "--port", str(port))
    deadline = time.monotonic() + 10
    while not accepting("127.0.0.1", port):
        assert time.monotonic() < deadline, pieces.log("broker")
        time.sleep(0.05)
    return f"127.0.0.1:{port}"


def test_broker_worker_and_trainer_answer_a_job_and_a_retrain_job(
    broker: Broker, pieces: Pieces, tmp_path: Path
) -> None:
    pieces.env["MAAS_BOOTSTRAP_SERVERS"] = bootstrap_servers(broker, pieces)
    artifact = build_digits_model(tmp_path / "digits", epochs=5).artifact
    registered = pieces.run(
        "models", "register", "digits", str(artifact), "--promote", timeout_s=60
    )
    assert registered.returncode == 0, registered.stderr
    pieces.start("worker")
    pieces.start("trainer")

    pixels, _ = digits_samples(2)
    inputs = json.dumps({"x": pixels.tolist()})
    submitted = pieces.run(
        "submit", "--model", "digits", "--inputs", inputs, "--timeout", "60", timeout_s=90
    )
    assert submitted.returncode == 0, submitted.stderr + pieces.log("worker")
    result = json.loads(submitted.stdout)
    assert (result["status"], result["version"]) == ("ok", 1)
    assert len(result["outputs"]["label"]) == 2

    deadline = time.monotonic() + 120  # the trainer has joined its group (torch loads first)
    while "trainer started" not in pieces.log("trainer"):
        assert time.monotonic() < deadline, pieces.log("trainer")
        time.sleep(0.2)
    retrained = pieces.run(
        "retrain", "digits", "--params", '{"epochs": 2}', "--timeout", "120", timeout_s=150
    )
    assert retrained.returncode == 0, retrained.stderr + pieces.log("trainer")
    assert "digits version 2 registered" in retrained.stdout

    for name, process in pieces.running.items():
        assert process.poll() is None, f"maas {name} exited:\n{pieces.log(name)}"
        assert "Traceback" not in pieces.log(name)
