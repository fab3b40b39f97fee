"""`maas --help` and `maas VERB --help` import only what they show: the verbs are listed
from maas/verbs.py, a verb's module is imported when it is named, and the worker's flag
defaults come from workers/defaults.py, not from the serving loop."""

from __future__ import annotations

import argparse
import json
import subprocess
import sys

import pytest

from maas.cli import build_parser, main
from maas.commands.serve import worker_settings
from maas.verbs import VERBS
from workers.batching.policy import BatchConfig
from workers.runtime.base import RuntimeSettings
from workers.serving.loop import WorkerSettings
from workers.serving.pool import PoolSettings

HEAVY = ("numpy", "onnxruntime", "aiokafka", "kafka", "sqlalchemy", "torch", "scipy")
# Runs `maas ARGV...` in a fresh interpreter and prints the heavy modules it imported.
LOADED = """
import json, sys
from maas.cli import main
try:
    main(sys.argv[2:])
except SystemExit:
    pass
print(json.dumps([name for name in json.loads(sys.argv[1]) if name in sys.modules]))
"""


def heavy_imports(*argv: str) -> list[str]:
    done = subprocess.run(
        [sys.executable, "-c", LOADED, json.dumps(HEAVY), *argv],
        capture_output=True,
        text=True,
        timeout=120,
        check=True,
    )
    loaded: list[str] = json.loads(done.stdout.strip().splitlines()[-1])
    assert "usage: maas" in done.stdout, done.stderr
    return loaded


@pytest.mark.parametrize("argv", [("--help",), ("worker", "--help"), ("up", "--help"), ()])
def test_help_imports_no_heavy_module(argv: tuple[str, ...]) -> None:
    assert heavy_imports(*argv) == []


def test_every_verb_is_listed_with_its_line(capsys: pytest.CaptureFixture[str]) -> None:
    with pytest.raises(SystemExit):
        main(["--help"])
    listing = " ".join(capsys.readouterr().out.split())
    for name, verb in VERBS.items():
        assert f" {name} {verb.summary}" in listing, name


def test_the_table_says_what_the_modules_register() -> None:
    """maas/verbs.py's summaries and verbs are the ones the verbs' modules register."""
    (registered,) = (
        action
        for action in build_parser()._actions
        if isinstance(action, argparse._SubParsersAction)
    )
    summaries = {choice.dest: choice.help for choice in registered._choices_actions}
    assert summaries == {name: verb.summary for name, verb in VERBS.items()}


def test_the_worker_flags_default_to_the_settings_defaults() -> None:
    args = build_parser(["worker"]).parse_args(["worker"])
    assert args.processes == PoolSettings.__dataclass_fields__["processes"].default
    settings, defaults = worker_settings(args), WorkerSettings()
    for field in ("group_id", "max_in_flight", "max_job_bytes", "exactly_once"):
        assert getattr(settings, field) == getattr(defaults, field), field
    assert settings.runtime == RuntimeSettings()
    batch = BatchConfig()
    assert (settings.batch.max_batch_size, settings.batch.max_delay_ms) == (
        batch.max_batch_size,
        batch.max_delay_ms,
    )
    assert settings.batch.max_job_rows == batch.max_job_rows
