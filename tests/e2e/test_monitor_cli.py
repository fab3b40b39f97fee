"""``maas models monitor`` as a user runs it: the policy stored, announced to workers on
the control topic, the capture topic's retention set; bad values are usage errors."""

from __future__ import annotations

import asyncio
import json
import os
import subprocess
import sys

import pytest

from producer.kafka import KafkaSettings
from registry.drafts import Draft
from registry.labelled import CapturePolicy
from registry.registry import Registry
from registry.settings import RegistrySettings
from tests.kafka_helpers import read
from tests.registry_fixtures import MakeOnnx

pytestmark = pytest.mark.both_brokers


@pytest.fixture
def broker_name(request: pytest.FixtureRequest) -> str:
    return str(
        getattr(request.node, "callspec", None) and request.node.callspec.params.get("broker")
    )


def _maas(
    kafka: KafkaSettings, registry: RegistrySettings, *args: str
) -> subprocess.CompletedProcess[str]:
    env = {
        **os.environ,
        "MAAS_BOOTSTRAP_SERVERS": kafka.bootstrap_servers,
        "MAAS_TOPIC_PREFIX": kafka.topics.prefix,
        "MAAS_DATABASE_URL": registry.database_url,
        "MAAS_ARTIFACT_DIR": str(registry.artifact_dir),
    }
    return subprocess.run(
        [sys.executable, "-m", "maas.cli", "models", "monitor", *args],
        capture_output=True,
        text=True,
        env=env,
        timeout=120,
        check=False,
    )


async def test_the_policy_is_stored_announced_and_the_retention_set(
    broker_name: str,
    kafka: KafkaSettings,
    registry: Registry,
    registry_settings: RegistrySettings,
    make_onnx: MakeOnnx,
) -> None:
    registry.models.register("m", Draft(make_onnx(), promote=True), actor="t")
    done = await asyncio.to_thread(
        _maas, kafka, registry_settings, "m", "--capture-rate", "0.5",
        "--capture-inputs", "hash:x", "--retention", "2d",
    )  # fmt: skip
    assert "capturing 0.5 of jobs, inputs hash:x" in done.stdout
    if broker_name == "embedded":  # Tansu has no AlterConfigs: said in one line
        assert done.returncode == 1
        last = done.stderr.strip().splitlines()[-1]
        assert last.startswith("error: the policy is stored, but this broker cannot alter")
    else:
        assert done.returncode == 0, done.stderr
        assert f"retention.ms=172800000 on {kafka.topics.capture}" in done.stdout
    assert registry.quality.policy("m") == CapturePolicy(0.5, "hash:x", 172_800_000)
    events = await read(kafka, kafka.topics.control, until=lambda rs: len(rs) >= 1)
    assert json.loads(events[-1].value)["event"] == "monitor"
    # a later change keeps what it does not name
    again = await asyncio.to_thread(_maas, kafka, registry_settings, "m", "--capture-rate", "1")
    assert again.returncode == 0, again.stderr
    assert registry.quality.policy("m") == CapturePolicy(1.0, "hash:x", 172_800_000)


@pytest.mark.parametrize(
    ("args", "error"),
    [
        (("m", "--capture-rate", "1.5"), "is not a capture rate"),
        (("m", "--capture-inputs", "everything"), "is not a capture-inputs policy"),
        (("m", "--retention", "7 days"), "is not a duration"),
    ],
)
def test_bad_values_are_usage_errors(
    kafka: KafkaSettings, registry_settings: RegistrySettings, args: tuple[str, ...], error: str
) -> None:
    done = _maas(kafka, registry_settings, *args)
    assert done.returncode == 2
    assert error in done.stderr


def test_an_unknown_model_is_one_line(
    kafka: KafkaSettings, registry: Registry, registry_settings: RegistrySettings
) -> None:
    done = _maas(kafka, registry_settings, "nope", "--capture-rate", "0.1")
    assert done.returncode == 1
    assert done.stderr.startswith("error: no model named 'nope'")
