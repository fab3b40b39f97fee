"""One retrain job cannot hold the trainer (issue 28 item 5): a work budget checked before
training, a time budget, cancellation (``maas runs cancel``) and a bounded number of
starts after a crash."""

from __future__ import annotations

import argparse
import asyncio
import time
from collections.abc import Iterator
from pathlib import Path

import pytest
import torch

from maas.cli import main
from maas.commands.schedule import register, trainer_settings
from maas.errors import CommandError
from producer.contract.messages import RetrainJob
from producer.kafka import KafkaSettings
from registry.registry import Registry
from registry.settings import RegistrySettings
from tests.kafka_helpers import publish, read_results, retrain_job
from workers.recipes import Limits, OverBudget
from workers.training.budget import TrainBudget
from workers.training.trainer import Trainer, TrainerSettings

# The job of issue 28: an estimated 255 hours of training within the params' ranges.
HUGE = {"epochs": 10_000, "hidden": 65_536, "batch_size": 1}
LONG = {"epochs": 10_000}  # about 2e9 steps * parameters: within the work budget


@pytest.fixture(autouse=True)
def _one_thread() -> None:
    torch.set_num_threads(1)


@pytest.fixture
def settings(tmp_path: Path) -> RegistrySettings:
    return RegistrySettings(
        database_url=f"sqlite:///{tmp_path / 'registry.db'}", artifact_dir=tmp_path / "artifacts"
    )


@pytest.fixture
def registry(settings: RegistrySettings) -> Iterator[Registry]:
    with Registry.open(settings) as opened:
        yield opened


def offline_trainer(registry: Registry, budget: TrainBudget | None = None) -> Trainer:
    """A trainer whose ``execute`` is called directly (no broker is reached)."""
    settings = TrainerSettings(budget=budget or TrainBudget(cancel_poll_s=0.2))
    kafka = KafkaSettings(bootstrap_servers="127.0.0.1:1")
    return Trainer(kafka, registry.models, registry.runs, settings)


def job(job_id: str, **params: object) -> RetrainJob:
    return RetrainJob(job_id=job_id, model="digits", params=params)


def test_the_work_limit_is_named() -> None:
    with pytest.raises(OverBudget, match=r"over the trainer's limit of 1e\+06 \(maas trainer"):
        Limits(max_work=10**6).check_work(1_000, 1_001)
    Limits(max_work=10**6).check_work(1_000, 1_000)


def test_the_budget_from_the_environment_and_flags() -> None:
    env = {"MAAS_TRAIN_TIME_BUDGET_S": "60", "MAAS_TRAIN_MAX_WORK": "1e9"}
    assert TrainBudget.from_env(env, max_attempts=5) == TrainBudget(60.0, 10**9, 5)
    with pytest.raises(ValueError, match="MAAS_TRAIN_MAX_ATTEMPTS='x' is not a number"):
        TrainBudget.from_env({"MAAS_TRAIN_MAX_ATTEMPTS": "x"})
    with pytest.raises(ValueError, match="must be positive"):
        TrainBudget.from_env({}, time_s=0)


def test_the_trainer_command_takes_the_budget(monkeypatch: pytest.MonkeyPatch) -> None:
    parser = argparse.ArgumentParser()
    register(parser.add_subparsers())
    monkeypatch.setenv("MAAS_TRAIN_MAX_ATTEMPTS", "2")
    flags = ["trainer", "--time-budget", "60", "--max-work", "1e9", "--max-dataset-mb", "1"]
    settings = trainer_settings(parser.parse_args(flags))
    assert settings.budget == TrainBudget(time_s=60.0, max_work=10**9, max_attempts=2)
    assert settings.allowed.max_dataset_bytes == 2**20
    monkeypatch.setenv("MAAS_TRAIN_MAX_DATASET_MB", "lots")
    with pytest.raises(CommandError, match="MAAS_TRAIN_MAX_DATASET_MB='lots' is not a number"):
        trainer_settings(parser.parse_args(["trainer"]))


async def test_too_much_work_is_refused_before_training(registry: Registry) -> None:
    started = time.monotonic()
    result = await offline_trainer(registry).execute(job("huge", **HUGE))
    seconds = time.monotonic() - started
    assert result.status == "error" and result.error is not None
    assert result.error.code == "TOO_LARGE"
    assert "over the trainer's limit of 1e+11 (maas trainer --max-work" in result.error.message
    print(f"\nhuge job refused in {seconds:.2f} s: {result.error.message}")


async def test_a_job_may_ask_for_less_time_but_not_more(registry: Registry) -> None:
    trainer = offline_trainer(registry, TrainBudget(time_s=30, cancel_poll_s=0.2))
    more = await trainer.execute(job("more", epochs=1, time_budget_s=31))
    assert more.error is not None and more.error.code == "INVALID_INPUT"
    assert "at most 30 (this trainer's time budget)" in more.error.message
    started = time.monotonic()
    result = await trainer.execute(job("short", time_budget_s=1, **LONG))
    seconds = time.monotonic() - started
    assert result.error is not None and result.error.code == "EXPIRED"
    assert "ran past its time budget of 1 s" in result.error.message
    run = registry.runs.get_run("short")
    assert run is not None and (run.status, run.error_code) == ("error", "EXPIRED")
    print(f"\n1 s budget: answered EXPIRED after {seconds:.2f} s")


async def test_a_cancelled_run_stops_and_is_answered_so(
    registry: Registry, settings: RegistrySettings, capsys: pytest.CaptureFixture[str]
) -> None:
    trainer = offline_trainer(registry)
    training = asyncio.create_task(trainer.execute(job("long", **LONG)))
    for _ in range(2400):  # until the trainer started the run
        if registry.runs.get_run("long") is not None:
            break
        await asyncio.sleep(0.05)
    db = ["--database-url", settings.database_url, "--artifact-dir", str(settings.artifact_dir)]
    assert await asyncio.to_thread(main, ["runs", "list", "--status", "running", *db]) == 0
    assert "long" in capsys.readouterr().out
    cancelled = time.monotonic()
    argv = ["runs", "cancel", "long", "--reason", "holds the trainer", "--actor", "ann", *db]
    assert await asyncio.to_thread(main, argv) == 0
    result = await asyncio.wait_for(training, 120)
    seconds = time.monotonic() - cancelled
    assert result.error is not None and result.error.code == "INTERNAL"
    assert result.error.message == "cancelled by ann: holds the trainer"
    assert registry.models.list_models() == []  # nothing registered
    assert main(["runs", "cancel", "long", *db]) == 1
    err = capsys.readouterr().err
    assert "already finished (error); there is nothing to cancel" in err
    assert main(["runs", "cancel", "nosuch", *db]) == 1
    assert "no retraining run has job_id 'nosuch': it has not started" in capsys.readouterr().err
    print(f"cancelled run answered {seconds:.2f} s after maas runs cancel")


async def test_a_run_that_stopped_its_trainer_too_often_is_answered_with_an_error(
    registry: Registry,
) -> None:
    for _ in range(3):  # three trainers took the job and died before finishing it
        registry.runs.start_run("crashy", "digits", trigger="manual")
    run = registry.runs.get_run("crashy")
    assert run is not None and run.attempts == 3
    result = await offline_trainer(registry).execute(job("crashy", epochs=1))
    assert result.error is not None and result.error.code == "INTERNAL"
    assert "started 3 times and each time its trainer stopped" in result.error.message
    again = await offline_trainer(registry).execute(job("crashy", epochs=1))
    assert again == result  # a redelivery is answered alike, not trained


async def test_a_huge_and_a_long_job_do_not_hold_the_next_one(
    kafka: KafkaSettings, registry: Registry, trainer: Trainer
) -> None:
    started = time.monotonic()
    jobs = [
        retrain_job("huge", params=HUGE),
        retrain_job("long", params={**LONG, "time_budget_s": 2}),
        retrain_job("small", params={"epochs": 2}),
    ]
    await publish(kafka, kafka.topics.retrain, jobs, key=b"digits")
    results = await read_results(kafka, {"huge", "long", "small"}, timeout_s=120)
    seconds = time.monotonic() - started
    codes = {j: (r["error"] or {}).get("code") for j, r in results.items()}
    assert codes == {"huge": "TOO_LARGE", "long": "EXPIRED", "small": None}
    assert results["small"]["status"] == "ok" and results["small"]["version"] == 1
    print(f"\nhuge, long (2 s budget) and small answered in {seconds:.1f} s")


async def test_a_trainer_trying_its_own_run_again_is_no_crash(registry: Registry) -> None:
    trainer = offline_trainer(registry, TrainBudget(max_attempts=1, cancel_poll_s=0.2))
    trainer._started.add("mine")  # as after a retriable registry failure mid-job
    registry.runs.start_run("mine", "digits", trigger="manual")
    result = await trainer.execute(job("mine", epochs=1, hidden=8))
    assert result.status == "ok" and result.version == 1
