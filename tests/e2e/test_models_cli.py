"""``maas models`` end to end through ``maas.cli.main``, on a real SQLite registry."""

from __future__ import annotations

import asyncio
from collections.abc import Callable
from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest

from maas.cli import main
from producer.contract.messages import decode_control
from producer.kafka import KafkaSettings
from registry import Draft, MetricWindow, Registry, RegistrySettings
from tests.cli_helpers import models_cli
from tests.kafka_helpers import read_all


@pytest.fixture(autouse=True)
def _control_topic(monkeypatch: pytest.MonkeyPatch, kafka: KafkaSettings) -> None:
    """Alias moves are announced on the control topic of the real test broker."""
    monkeypatch.setenv("MAAS_BOOTSTRAP_SERVERS", kafka.bootstrap_servers)
    monkeypatch.setenv("MAAS_TOPIC_PREFIX", kafka.topics.prefix)


MakeOnnx = Callable[..., Path]


READ_ONLY = frozenset({"list", "show", "history", "stats"})  # no --actor, no Kafka flags


@pytest.fixture
def maas(
    registry_settings: RegistrySettings, capsys: pytest.CaptureFixture[str]
) -> Callable[..., tuple[int, str, str]]:
    """Run ``maas models ...`` against the test registry (created empty, as ``maas up``
    leaves one); returns (code, stdout, stderr)."""
    Registry.open(registry_settings).close()
    return models_cli(registry_settings, capsys, read_only=READ_ONLY)


def test_register_list_show_promote_rollback_history(
    maas: Callable[..., tuple[int, str, str]], make_onnx: MakeOnnx
) -> None:
    code, out, _ = maas("register", "digits", str(make_onnx()), "--promote")
    assert code == 0 and "registered digits version 1" in out and "production -> 1" in out
    code, out, _ = maas("register", "digits", str(make_onnx().parent), "--reason", "retrained")
    assert code == 0 and "version 2" in out
    code, out, _ = maas("list")
    assert code == 0 and "digits" in out and "production -> 1" in out
    code, out, _ = maas("show", "digits")
    assert code == 0 and "2 version(s)" in out
    assert "x: float32[batch,4] -> probabilities: float32[batch,3]" in out
    assert maas("promote", "digits", "2", "--reason", "better")[1].strip() == (
        "digits production: 1 -> 2"
    )
    code, out, _ = maas("rollback", "digits", "--reason", "errors")
    assert code == 0 and "rolled back digits production: 2 -> 1" in out
    code, out, _ = maas("history", "digits")
    lines = out.strip().splitlines()
    assert code == 0 and len(lines) == 4  # header and three moves
    assert "rollback" in lines[-1] and "tester" in lines[-1] and "errors" in lines[-1]
    code, out, _ = maas("archive", "digits", "2")
    assert code == 0 and "archived digits version 2" in out


def test_domain_errors_are_one_line_on_stderr(
    maas: Callable[..., tuple[int, str, str]],
    make_onnx: MakeOnnx,
    tmp_path: Path,
    registry_settings: RegistrySettings,
) -> None:
    code, out, err = maas("show", "digits")
    assert (code, out) == (1, "")
    assert err == (
        "error: no model named 'digits' is registered; "
        "maas models list shows the registered models "
        f"(registry: {registry_settings.location})\n"
    )
    maas("register", "digits", str(make_onnx()), "--promote")
    code, _, err = maas("promote", "digits", "9")
    assert code == 1 and "has no version 9; versions are 1-1" in err
    code, _, err = maas("rollback", "digits")
    assert code == 1 and "--to VERSION" in err and "Traceback" not in err
    broken = tmp_path / "broken.onnx"
    broken.write_bytes(b"garbage")
    code, _, err = maas("register", "digits", str(broken))
    assert code == 1 and "broken.onnx is not a loadable ONNX model" in err


def test_stats_prints_a_table_per_version(
    maas: Callable[..., tuple[int, str, str]],
    registry_settings: RegistrySettings,
    make_onnx: MakeOnnx,
) -> None:
    maas("register", "digits", str(make_onnx()), "--promote")
    assert "no metric windows" in maas("stats", "digits")[1]
    start = datetime(2025, 1, 1, tzinfo=UTC)
    with Registry.open(registry_settings) as registry:
        registry.metrics.record_windows(
            [
                MetricWindow(
                    model="digits",
                    version=1,
                    worker="gpu-1:42",
                    start=start + timedelta(seconds=10 * i),
                    end=start + timedelta(seconds=10 * (i + 1)),
                    jobs=50,
                    rows=200,
                    errors={"INTERNAL": i},
                    client_errors={"INVALID_INPUT": 5},
                    infer_ms_p95=3.5,
                    mean_batch_size=16.0,
                    rows_per_s=20.0,
                )
                for i in range(3)
            ]
        )
    code, out, _ = maas("stats", "digits")
    assert code == 0
    assert "digits version 1: 3 of 3 windows, 150 jobs, error rate 2.00%" in out
    assert "client mistakes: 15 (10.00% of jobs)" in out
    assert "gpu-1:42" in out and "INTERNAL=2" in out and "INVALID_INPUT=5" in out
    assert "16.0" in out


def test_settings_come_from_the_environment(
    monkeypatch: pytest.MonkeyPatch,
    tmp_path: Path,
    make_onnx: MakeOnnx,
    capsys: pytest.CaptureFixture[str],
) -> None:
    monkeypatch.setenv("MAAS_DATABASE_URL", f"sqlite:///{tmp_path / 'env' / 'r.db'}")
    monkeypatch.setenv("MAAS_ARTIFACT_DIR", str(tmp_path / "env-artifacts"))
    monkeypatch.setenv("USER", "envuser")
    assert main(["models", "register", "digits", str(make_onnx())]) == 0
    assert (tmp_path / "env" / "r.db").is_file()
    assert len(list((tmp_path / "env-artifacts").iterdir())) == 1
    capsys.readouterr()
    settings = RegistrySettings.from_env()
    with Registry.open(settings) as registry:
        assert registry.models.get_version("digits", 1).created_by.startswith("envuser@")


def test_show_says_what_a_trained_version_records(
    maas: Callable[..., tuple[int, str, str]],
    registry_settings: RegistrySettings,
    make_onnx: MakeOnnx,
) -> None:
    """Issue 27 item 11: `maas models show` hid a trained version's accuracy, parent
    and dataset hash."""
    with Registry.open(registry_settings) as registry:
        registry.models.register("iris", Draft(make_onnx(), promote=True), actor="ann")
        trained = Draft(
            make_onnx(),
            reason="retrained",
            parent_version=1,
            dataset_hash="ab12" * 16,
            metrics={"accuracy": 0.984375, "f1": 0.98, "duration_s": 3.2, "rows": 10},
        )
        registry.models.register("iris", trained, actor="trainer")

    code, out, _ = maas("show", "iris")

    assert code == 0
    assert "version 2: parent 1; dataset ab12ab12ab12; accuracy 0.9844, f1 0.9800" in out
    assert "version 1:" not in out  # registered bare: nothing trained to say


def test_a_promotion_says_it_once_and_names_its_registry_on_the_control_topic(
    registry_settings: RegistrySettings,
    kafka: KafkaSettings,
    make_onnx: MakeOnnx,
    capsys: pytest.CaptureFixture[str],
) -> None:
    """Issue 27 items 6 and 11: no `control event published` nor idempotence line at
    info; the event names the registry a worker can compare with its own."""
    with Registry.open(registry_settings) as registry:
        for _ in range(2):
            registry.models.register("iris", Draft(make_onnx()), actor="ann")
    where = ["--database-url", registry_settings.database_url]
    where += ["--artifact-dir", str(registry_settings.artifact_dir)]
    capsys.readouterr()

    assert main(["models", "promote", "iris", "2", *where]) == 0

    out, err = capsys.readouterr()
    assert out == "iris production: - -> 2\n"
    assert err.splitlines() == [f"wrote to registry {registry_settings.location}"], err
    (record,) = asyncio.run(read_all(kafka, kafka.topics.control))
    assert decode_control(record.value or b"").registry == registry_settings.identity
