"""The training worker against the real embedded broker and a SQLite registry."""

from __future__ import annotations

import json
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
import torch

from producer.contract.messages import RetrainJob, decode_control
from producer.control import alias_move_publisher
from producer.kafka import KafkaSettings
from registry.errors import DatabaseError
from registry.registry import Registry
from registry.settings import RegistrySettings
from tests.kafka_helpers import publish, read, read_results, retrain_job, running, settled
from workers.kafka.clients import RetrySettings
from workers.training.trainer import Trainer, TrainerSettings, recipe_name

WEAK = {"epochs": 1, "hidden": 8, "max_rows": 200}
GOOD = {"epochs": 5}
NOISY = {"epochs": 5, "label_noise": 0.8}


@pytest.fixture(autouse=True)
def _one_thread() -> None:
    torch.set_num_threads(1)


@pytest.fixture
def registry(tmp_path: Path, kafka: KafkaSettings) -> Iterator[Registry]:
    settings = RegistrySettings(
        database_url=f"sqlite:///{tmp_path / 'registry.db'}", artifact_dir=tmp_path / "artifacts"
    )
    with Registry.open(settings, on_alias_move=alias_move_publisher(kafka)) as opened:
        yield opened


async def test_better_version_is_promoted_and_a_worse_one_only_registered(
    kafka: KafkaSettings, registry: Registry, trainer: Trainer
) -> None:
    await publish(
        kafka,
        kafka.topics.retrain,
        [
            retrain_job("r1", params=WEAK),
            retrain_job("r2", params=GOOD),
            retrain_job("r3", params=NOISY),
        ],
        key=b"digits",
    )
    results = await read_results(kafka, {"r1", "r2", "r3"}, timeout_s=60)
    first, better, worse = results["r1"], results["r2"], results["r3"]

    assert first["schema"] == "maas.retrain-result/v1"
    assert (first["status"], first["version"], first["promoted"]) == ("ok", 1, True)
    assert "no production version yet" in first["reason"]

    assert (better["status"], better["version"], better["promoted"]) == ("ok", 2, True)
    assert better["reason"].startswith("beats production 1 on accuracy")
    assert better["metrics"]["accuracy"] > first["metrics"]["accuracy"]
    assert better["metrics"]["duration_s"] > 0
    assert better["_key"] == b"r2"

    assert (worse["status"], worse["version"], worse["promoted"]) == ("ok", 3, False)
    assert "does not beat production 2 on accuracy" in worse["reason"]
    assert worse["error"] is None

    v2, v3 = registry.models.get_version("digits", 2), registry.models.get_version("digits", 3)
    assert registry.models.resolve("digits").version == 2
    assert (v2.parent_version, v3.parent_version) == (1, 2)
    assert v2.dataset_hash and v2.params["epochs"] == 5 and v2.params["recipe"] == "digits"
    assert v3.params["label_noise"] == 0.8
    run = registry.runs.get_run("r2")
    assert run is not None and (run.status, run.version, run.promoted) == ("ok", 2, True)


async def test_a_redelivered_job_is_answered_twice_alike_with_one_run_and_one_version(
    kafka: KafkaSettings, registry: Registry, trainer: Trainer
) -> None:
    await publish(
        kafka, kafka.topics.retrain, [retrain_job("same", params=WEAK)] * 2, key=b"digits"
    )
    records = await read(
        kafka,
        kafka.topics.results,
        until=lambda rs: sum(json.loads(r.value)["job_id"] == "same" for r in rs) >= 2,
        timeout_s=60,
    )
    answers = [json.loads(r.value) for r in records]
    assert len(answers) == 2
    assert answers[0] == answers[1]
    assert answers[0]["version"] == 1
    assert [v.version for v in registry.models.versions("digits")] == [1]


async def test_failed_training_registers_nothing_and_bad_records_are_dead_lettered(
    kafka: KafkaSettings, registry: Registry, trainer: Trainer
) -> None:
    await publish(
        kafka,
        kafka.topics.retrain,
        [
            b"\x00not json",
            retrain_job("bad-params", params={"epochs": "many"}),
            retrain_job("bad-data", dataset={"uri": "file:///nope/missing.csv"}, recipe="tabular"),
            json.dumps({"job_id": "no-model"}).encode(),
        ],
        key=b"digits",
    )
    results = await read_results(kafka, {"bad-params", "bad-data", "no-model"}, timeout_s=60)
    for job_id in ("bad-params", "bad-data", "no-model"):
        assert results[job_id]["status"] == "error"
        assert results[job_id]["error"]["code"] == "INVALID_INPUT"
        assert results[job_id]["version"] is None
    assert "epochs" in results["bad-params"]["error"]["message"]
    assert "missing.csv" in results["bad-data"]["error"]["message"]
    assert registry.models.list_models() == []
    run = registry.runs.get_run("bad-params")
    assert run is not None and run.status == "error"
    assert run.error_code == "INVALID_INPUT" and run.metrics == {}

    dead = await read(kafka, kafka.topics.dlq, until=lambda records: len(records) >= 1)
    assert dead[0].value == b"\x00not json"
    assert dict(dead[0].headers)["maas.error.code"] == b"INVALID_INPUT"


async def test_a_run_left_running_by_a_crash_is_trained_again_and_a_failed_one_is_not(
    kafka: KafkaSettings, registry: Registry
) -> None:
    trainer = Trainer(kafka, registry.models, registry.runs, TrainerSettings(worker_id="t"))
    registry.runs.start_run("crashed", "digits", trigger="manual", params=WEAK)
    redone = await trainer.execute(RetrainJob(job_id="crashed", model="digits", params=WEAK))
    assert (redone.status, redone.version) == ("ok", 1)

    failed = await trainer.execute(RetrainJob(job_id="f", model="digits", params={"nope": 1}))
    again = await trainer.execute(RetrainJob(job_id="f", model="digits", params=WEAK))
    assert failed.status == again.status == "error"
    assert failed.error == again.error
    assert failed.error is not None and failed.error.code == "INVALID_INPUT"
    assert [v.version for v in registry.models.versions("digits")] == [1]


async def test_a_promotion_is_announced_on_the_control_topic(
    kafka: KafkaSettings, registry: Registry
) -> None:
    trainer = Trainer(kafka, registry.models, registry.runs, TrainerSettings(worker_id="t"))
    result = await trainer.execute(RetrainJob(job_id="c", model="digits", params=WEAK))
    assert result.promoted
    control = await read(kafka, kafka.topics.control, until=lambda rs: len(rs) >= 1, timeout_s=5)
    event = decode_control(control[0].value)
    assert (event.event, event.model, event.version) == ("promote", "digits", 1)


async def test_a_registry_that_fails_for_a_while_delays_the_answer_but_does_not_change_it(
    kafka: KafkaSettings, registry: Registry, monkeypatch: pytest.MonkeyPatch
) -> None:
    starts: list[str] = []
    start_run = registry.runs.start_run

    def flaky_start(job_id: str, *args: Any, **kwargs: Any) -> Any:
        starts.append(job_id)
        if len(starts) <= 2:
            raise DatabaseError("the database is unreachable (test)")
        return start_run(job_id, *args, **kwargs)

    monkeypatch.setattr(registry.runs, "start_run", flaky_start)
    settings = TrainerSettings(retry=RetrySettings(attempts=2, backoff_s=0.05))
    await publish(kafka, kafka.topics.retrain, [retrain_job("late", params=WEAK)], key=b"digits")
    async with running(Trainer(kafka, registry.models, registry.runs, settings).run):
        results = await read_results(kafka, {"late"}, timeout_s=60)
        answers = await read(kafka, kafka.topics.results, until=settled(1))
    assert (results["late"]["status"], results["late"]["version"]) == ("ok", 1)
    assert starts == ["late"] * 3 and len(answers) == 1


async def test_a_registry_that_stays_down_is_answered_internal_after_the_bound(
    kafka: KafkaSettings, registry: Registry, monkeypatch: pytest.MonkeyPatch
) -> None:
    def down(*args: Any, **kwargs: Any) -> Any:
        raise DatabaseError("the database is unreachable (test)")

    monkeypatch.setattr(registry.runs, "start_run", down)
    settings = TrainerSettings(retry=RetrySettings(attempts=1, backoff_s=0.0))
    await publish(kafka, kafka.topics.retrain, [retrain_job("down", params=WEAK)], key=b"digits")
    async with running(Trainer(kafka, registry.models, registry.runs, settings).run):
        result = (await read_results(kafka, {"down"}, timeout_s=60))["down"]
    assert (result["status"], result["error"]["code"]) == ("error", "INTERNAL")
    assert "failed 2 times" in result["error"]["message"]


def test_recipe_defaults_to_the_model_name_if_built_in_else_tabular() -> None:
    assert recipe_name(RetrainJob(job_id="a", model="digits")) == "digits"
    assert recipe_name(RetrainJob(job_id="a", model="churn")) == "tabular"
    assert recipe_name(RetrainJob(job_id="a", model="digits", recipe="x.y:z")) == "x.y:z"
