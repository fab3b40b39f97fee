"""``maas schedule add`` refuses what the trainer would refuse when the schedule fires."""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path

import pytest

from maas.cli import main
from registry import InvalidSchedule, Registry, RegistrySettings
from registry.drafts import Draft
from tests.cli_helpers import one_error_line


@pytest.fixture
def add(
    registry: Registry,
    registry_settings: RegistrySettings,
    make_onnx: Callable[..., Path],
    capsys: pytest.CaptureFixture[str],
) -> Callable[..., tuple[int, str]]:
    """``maas schedule add NAME ...`` on a registry holding ``digits`` and ``churn``."""
    for name in ("digits", "churn"):
        registry.models.register(name, Draft(make_onnx()), actor="test")
    where = [
        "--database-url",
        registry_settings.database_url,
        "--artifact-dir",
        str(registry_settings.artifact_dir),
    ]

    def run(name: str, *flags: str, cron: str = "0 3 * * *") -> tuple[int, str]:
        capsys.readouterr()
        code = main(["schedule", "add", name, "--cron", cron, *flags, *where])
        return code, capsys.readouterr().err

    return run


@pytest.mark.parametrize(
    ("name", "flags", "cron", "fragments"),
    [
        ("digits", [], "0 0 3 * * *", ["it has 6 fields", "use five fields"]),
        ("digits", [], "61 * * * *", ["not a valid cron expression"]),
        ("nope", [], "0 3 * * *", ["no model named 'nope'", "maas retrain nope --dataset"]),
        (
            "digits",
            ["--params", '{"epochs": -5}'],
            "0 3 * * *",
            ["recipe 'digits'", "param 'epochs' must be between 1 and 10000, got -5"],
        ),
        (
            "digits",
            ["--params", '{"colour": "red"}'],
            "0 3 * * *",
            ["unknown param(s) for recipe 'digits': colour; allowed: batch_size, epochs"],
        ),
        ("churn", [], "0 3 * * *", ["recipe 'tabular'", "needs a dataset"]),
        ("churn", ["--dataset", "irs"], "0 3 * * *", ["no built-in dataset 'irs'"]),
        ("churn", ["--dataset", "s3://b/k.csv"], "0 3 * * *", ["scheme 's3' is not supported"]),
    ],
)
def test_what_the_trainer_would_refuse_is_refused_at_add(
    add: Callable[..., tuple[int, str]],
    registry: Registry,
    name: str,
    flags: list[str],
    cron: str,
    fragments: list[str],
) -> None:
    code, err = add(name, *flags, cron=cron)
    assert code == 1
    one_error_line(err, *fragments)
    assert registry.runs.schedules() == []


def test_a_schedule_the_trainer_can_run_is_added(
    add: Callable[..., tuple[int, str]], registry: Registry
) -> None:
    assert add("churn", "--dataset", "iris", "--params", '{"epochs": 5}')[0] == 0
    assert add("digits")[0] == 0
    assert [s.model for s in registry.runs.schedules()] == ["churn", "digits"]


def test_a_file_name_is_a_path_in_the_first_data_root_not_a_built_in_name(
    add: Callable[..., tuple[int, str]], registry: Registry
) -> None:
    """docs/retraining.md: a relative path is relative to the trainer's first data root;
    ``digits.csv`` was taken for a built-in dataset's name and refused."""
    code, err = add("churn", "--dataset", "digits.csv")
    assert code == 0, err
    (schedule,) = registry.runs.schedules()
    assert schedule.dataset == {"uri": "digits.csv"}


def test_the_registry_refuses_a_six_field_cron(registry: Registry) -> None:
    with pytest.raises(InvalidSchedule, match="it has 6 fields"):
        registry.runs.add_schedule("digits", "0 0 3 * * *", actor="ann")
