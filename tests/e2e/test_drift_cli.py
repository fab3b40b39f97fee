"""``maas models baseline|policy|drift`` end to end through ``maas.cli.main``."""

from __future__ import annotations

from collections.abc import Callable
from datetime import timedelta
from pathlib import Path

import numpy as np
import pytest

from producer.kafka import KafkaSettings
from registry import Registry, RegistrySettings
from registry.db import utcnow
from registry.drift import DriftWindow
from tests.cli_helpers import ModelsCli, models_cli
from workers.drift import ReferenceProfile

MakeOnnx = Callable[..., Path]
Maas = ModelsCli
READ_ONLY = frozenset({"drift", "show"})


@pytest.fixture(autouse=True)
def _control_topic(monkeypatch: pytest.MonkeyPatch, kafka: KafkaSettings) -> None:
    monkeypatch.setenv("MAAS_BOOTSTRAP_SERVERS", kafka.bootstrap_servers)
    monkeypatch.setenv("MAAS_TOPIC_PREFIX", kafka.topics.prefix)


@pytest.fixture
def maas(registry_settings: RegistrySettings, capsys: pytest.CaptureFixture[str]) -> Maas:
    return models_cli(registry_settings, capsys, read_only=READ_ONLY)


def test_a_baseline_from_a_file_profiles_inputs_and_what_the_model_answers(
    maas: Maas, make_onnx: MakeOnnx, registry_settings: RegistrySettings, tmp_path: Path
) -> None:
    assert maas("register", "m", str(make_onnx()), "--promote")[0] == 0
    rows = np.random.default_rng(0).normal(size=(300, 4))
    data = tmp_path / "rows.csv"
    data.write_text("a,b,c,d\n" + "".join(",".join(f"{v:.4f}" for v in r) + "\n" for r in rows))
    code, out, err = maas("baseline", "m", "1", "--data", str(data), "--rows", "200")
    assert code == 0, err
    assert "200 rows of rows.csv, 4 input and 2 output features" in out
    with Registry.open(registry_settings) as registry:
        stored = registry.drift.reference("m", 1)
    assert stored is not None and stored.created_by == "tester"
    profile = ReferenceProfile.decode(stored.profile)
    assert set(profile.outputs) == {"probabilities.class", "probabilities.confidence"}
    code, out, _ = maas("show", "m")
    assert code == 0 and "version 1 reference: 200 rows (data rows.csv), 4 input and 2" in out
    code, _, err = maas("baseline", "m", "1", "--data", str(tmp_path / "none.csv"))
    assert code == 1 and "no such file" in err and "Traceback" not in err
    bad = tmp_path / "narrow.csv"
    bad.write_text("a,b\n1,2\n")
    code, _, err = maas("baseline", "m", "1", "--data", str(bad))
    assert code == 1 and err.startswith("error: baseline data") and "Traceback" not in err


def test_policies_are_validated_listed_and_removed(maas: Maas, make_onnx: MakeOnnx) -> None:
    assert maas("register", "m", str(make_onnx()))[0] == 0
    code, out, _ = maas(
        "policy", "m", "--retrain-when", "drift > 0.25 for 3 windows", "--cooldown", "6h"
    )
    assert code == 0 and "policy 1 of m: retrain when drift > 0.25 for 3 windows" in out
    code, _, err = maas("policy", "m", "--retrain-when", "drift is high")
    assert code == 1 and "cannot read the condition" in err and "Traceback" not in err
    code, out, _ = maas("policy", "m")
    assert code == 0 and "drift > 0.25 for 3 windows" in out and "6:00:00" in out
    code, out, _ = maas("policy", "m", "--remove", "1")
    assert code == 0 and "removed policy 1" in out and "has no policies" in out
    code, _, err = maas("policy", "nosuch", "--retrain-when", "accuracy < 0.9")
    assert code == 1 and "no model named 'nosuch'" in err


def test_drift_prints_the_windows_the_monitor_wrote(
    maas: Maas, make_onnx: MakeOnnx, registry_settings: RegistrySettings
) -> None:
    assert maas("register", "m", str(make_onnx()))[0] == 0
    code, out, _ = maas("drift", "m")
    assert code == 0 and "no drift windows for m" in out
    start = utcnow() - timedelta(minutes=5)
    features = {"x[0]": {"score": 0.9, "drifted": True}, "x[1]": {"score": 0.01}}
    window = DriftWindow(
        "m", 1, start, start + timedelta(minutes=1), 250, 0.5, 0.02, 0.91, features
    )
    with Registry.open(registry_settings) as registry:
        registry.drift.record_windows([window])
    code, out, _ = maas("drift", "m", "--since", "1h")
    assert code == 0 and "50%" in out and "x[0] 0.90" in out and "0.910" in out


async def _publish_captures(kafka: KafkaSettings, rows: np.ndarray) -> None:
    from producer.contract.messages import CaptureRecord, encode
    from producer.kafka import ensure_topics
    from tests.kafka_helpers import publish

    await ensure_topics(kafka)
    probabilities = np.full((len(rows), 3), 1 / 3).tolist()
    records = [
        encode(
            CaptureRecord(
                job_id=f"c{i}", model="m", version=1, status="ok", ts_ms=1_000 + i,
                inputs={"x": [row]}, outputs={"probabilities": [probabilities[i]]},
            )
        )
        for i, row in enumerate(rows.tolist())
    ]  # fmt: skip
    await publish(kafka, kafka.topics.capture, records)


def test_a_baseline_from_captured_traffic(
    maas: Maas, make_onnx: MakeOnnx, registry_settings: RegistrySettings, kafka: KafkaSettings
) -> None:
    import asyncio

    assert maas("register", "m", str(make_onnx()))[0] == 0
    code, _, err = maas("baseline", "m", "1", "--from-capture", "50")
    assert code == 1 and "no captured rows of m version 1" in err and "Traceback" not in err
    asyncio.run(_publish_captures(kafka, np.random.default_rng(1).normal(size=(80, 4))))
    code, out, err = maas("baseline", "m", "1", "--from-capture", "50")
    assert code == 0, err
    assert "50 rows of captured traffic, 4 input and 2 output features" in out
    with Registry.open(registry_settings) as registry:
        stored = registry.drift.reference("m", 1)
    assert stored is not None and stored.source == "capture" and stored.rows == 50
