"""A RetrainJob's ``params.quantize``: the trainer registers the int8 version alongside
the trained one, and the gate judges the one that would be promoted."""

from __future__ import annotations

import pytest
import torch

from producer.kafka import KafkaSettings
from registry import Registry
from tests.kafka_helpers import publish, read_results, retrain_job
from workers.training.trainer import Trainer


@pytest.fixture(autouse=True)
def _one_thread() -> None:
    torch.set_num_threads(1)


async def test_the_int8_version_is_registered_alongside_and_the_gate_judges_one(
    kafka: KafkaSettings, registry: Registry, trainer: Trainer
) -> None:
    params = {"epochs": 5, "quantize": "dynamic", "max_drop": 0.02}
    await publish(kafka, kafka.topics.retrain, [retrain_job("q1", params=params)], key=b"digits")
    result = (await read_results(kafka, {"q1"}, timeout_s=90))["q1"]

    trained, int8 = registry.models.versions("digits")
    assert (int8.derived_from, int8.method) == (1, "int8-dynamic")
    assert trained.params["recipe"] == "digits" and "quantize" not in trained.params
    assert int8.params["optimization"]["evaluated_on"] == "held-out rows of built-in 'digits'"
    assert int8.metrics["eval_rows"] == trained.metrics["n_test"]
    assert int8.metrics["parent_accuracy"] == pytest.approx(trained.metrics["accuracy"])
    judged = int8.metrics["quality_drop"] <= 0.02 and int8.metrics["speedup"] >= 1.0
    # No production yet: whichever the gate judges is promoted, and the run records it.
    assert (result["status"], result["promoted"]) == ("ok", True)
    assert result["version"] == (2 if judged else 1)
    assert registry.models.aliases("digits") == {"production": result["version"]}
    assert ("the gate judged the int8-dynamic version" in result["reason"]) is judged
    assert result["reason"].endswith("no production version yet: promoted")
    assert result["metrics"] == (int8 if judged else trained).metrics
    run = registry.runs.get_run("q1")
    assert run is not None and (run.version, run.reason) == (result["version"], result["reason"])


async def test_a_bad_quantize_param_fails_the_job_and_registers_nothing(
    kafka: KafkaSettings, registry: Registry, trainer: Trainer
) -> None:
    await publish(kafka, kafka.topics.retrain, [retrain_job("q2", params={"quantize": "int4"})])
    result = (await read_results(kafka, {"q2"}, timeout_s=60))["q2"]
    assert result["status"] == "error" and result["error"]["code"] == "INVALID_INPUT"
    assert "'quantize' must be one of dynamic, static" in result["error"]["message"]
    assert registry.models.list_models() == []
