"""SASL/SCRAM over TLS: Apache Kafka with a SASL_SSL listener only (a throwaway CA,
SCRAM-SHA-512 users); ``maas worker``, ``maas trainer`` and the CLI reach it through
the ``MAAS_KAFKA_*`` variables alone. A wrong password is one clear line and a failed
exit, soon; the right one appears in no output of any of them.

The broker starts once for the module.
"""

from __future__ import annotations

import json
import os
import secrets
import time
from collections.abc import Iterator
from pathlib import Path

import pytest

from scripts.apache_kafka import ApacheKafka
from scripts.kafka_security import SaslSsl
from tests.process_helpers import Pieces
from workers.recipes.demo import digits_samples

pytest_plugins = ["tests.serving_fixtures"]  # digits_artifact, built once a session

pytestmark = [
    pytest.mark.slow,
    pytest.mark.filterwarnings("ignore:open_text is deprecated:DeprecationWarning"),
]

USER = "maas"
PASSWORD = f"pw-{secrets.token_hex(12)}"  # distinctive: a match in any output is a leak


@pytest.fixture(scope="module")
def tls(tmp_path_factory: pytest.TempPathFactory) -> SaslSsl:
    return SaslSsl.create(
        tmp_path_factory.mktemp("tls"), {"admin": secrets.token_hex(12), USER: PASSWORD}
    )


@pytest.fixture(scope="module")
def secured(tls: SaslSsl, tmp_path_factory: pytest.TempPathFactory) -> Iterator[ApacheKafka]:
    with ApacheKafka(
        workdir=tmp_path_factory.mktemp("kafka"), sasl_ssl=tls, quick_start=True
    ) as running:
        yield running


@pytest.fixture
def pieces(secured: ApacheKafka, tls: SaslSsl, tmp_path: Path) -> Iterator[Pieces]:
    """A user's environment: where the broker and the registry are, and the
    ``MAAS_KAFKA_*`` variables that log in as ``maas``; no flag names the broker."""
    env = {key: value for key, value in os.environ.items() if not key.startswith("MAAS_")}
    env |= {
        "MAAS_BOOTSTRAP_SERVERS": secured.bootstrap_servers,
        "MAAS_DATABASE_URL": f"sqlite:///{tmp_path / 'registry.db'}",
        "MAAS_ARTIFACT_DIR": str(tmp_path / "artifacts"),
        **tls.client_env(USER),
    }
    started = Pieces(env, tmp_path)
    yield started
    started.stop()


@pytest.mark.parametrize("transport", ["aiokafka", "librdkafka"])
def test_worker_trainer_and_cli_connect_and_never_show_the_password(
    pieces: Pieces, digits_artifact: Path, transport: str
) -> None:
    outputs: list[str] = []
    pieces.start("worker", "--transport", transport)  # they start while the model is registered
    pieces.start("trainer")
    registered = pieces.run(
        "--log-level", "debug", "models", "register", "digits", str(digits_artifact), "--promote",
        timeout_s=60,
    )  # fmt: skip
    outputs += [registered.stdout, registered.stderr]
    assert registered.returncode == 0, registered.stderr
    assert "control event published" in registered.stdout + registered.stderr

    inputs = json.dumps({"x": digits_samples(2)[0].tolist()})
    submitted = pieces.run(
        "--log-level", "debug", "submit", "--model", "digits", "--inputs", inputs,
        "--timeout", "60", timeout_s=90,
    )  # fmt: skip
    outputs += [submitted.stdout, submitted.stderr]
    assert submitted.returncode == 0, submitted.stderr + pieces.log("worker")
    assert json.loads(submitted.stdout)["status"] == "ok"

    retrained = pieces.run(
        "retrain", "digits", "--params", '{"epochs": 1}', "--timeout", "120", timeout_s=150
    )
    outputs += [retrained.stdout, retrained.stderr]
    assert retrained.returncode == 0, retrained.stderr + pieces.log("trainer")
    assert "digits version 2 registered" in retrained.stdout

    for name, process in pieces.running.items():
        assert process.poll() is None, f"maas {name} exited:\n{pieces.log(name)}"
        outputs.append(pieces.log(name))
    leaks = [line for output in outputs for line in output.splitlines() if PASSWORD in line]
    assert not leaks


@pytest.mark.parametrize(
    ("command", "exit_code"),
    [
        (["worker"], 1),  # failed
        # failed too: a rerun cannot help (2 would say "no answer yet, run it again")
        (["submit", "--model", "digits", "--inputs", '{"x": [[0.0]]}'], 1),
    ],
    ids=["worker", "submit"],
)
def test_a_wrong_password_is_one_line_and_a_failed_exit_soon(
    pieces: Pieces, command: list[str], exit_code: int
) -> None:
    wrong = f"wrong-{secrets.token_hex(8)}"
    pieces.env["MAAS_KAFKA_SASL_PLAIN_PASSWORD"] = wrong
    started = time.monotonic()
    done = pieces.run(*command, timeout_s=60)
    assert time.monotonic() - started < 30
    assert done.returncode == exit_code, done.stdout + done.stderr
    [line] = done.stderr.strip().splitlines()  # no traceback, no retry chatter
    assert line.startswith("error: the Kafka broker at ")
    assert "SaslAuthenticationFailed" in line and "MAAS_KAFKA_SASL_PLAIN_PASSWORD" in line
    assert wrong not in done.stdout + done.stderr and PASSWORD not in done.stdout + done.stderr
