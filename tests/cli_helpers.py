"""Running ``maas`` as a user does: in this process (``main``) or as a real process."""

from __future__ import annotations

import os
import subprocess
import sys
from collections.abc import Callable, Mapping
from pathlib import Path
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    import pytest

    from registry.settings import RegistrySettings

ROOT = Path(__file__).resolve().parents[1]

# ``maas models ARGV`` run in this process: (exit code, stdout, stderr).
ModelsCli = Callable[..., tuple[int, str, str]]


def maas_process(
    *argv: str,
    cwd: Path | None = None,
    env: Mapping[str, str] | None = None,
    timeout: float = 90,
) -> subprocess.CompletedProcess[str]:
    """``python -m maas.cli ARGV`` in a process of its own (this checkout's code first)."""
    environment = {**os.environ, "PYTHONPATH": str(ROOT), **(env or {})}
    return subprocess.run(
        [sys.executable, "-m", "maas.cli", *argv],
        cwd=cwd or ROOT,
        env=environment,
        capture_output=True,
        text=True,
        timeout=timeout,
        check=False,
    )


def models_cli(
    registry: RegistrySettings,
    capsys: pytest.CaptureFixture[str],
    *,
    read_only: frozenset[str],
) -> ModelsCli:
    """``maas models ARGV`` through ``maas.cli.main`` against ``registry``, as user
    ``tester`` but for the ``read_only`` verbs (which take no ``--actor``)."""
    from maas.cli import main

    options = [
        "--database-url",
        registry.database_url,
        "--artifact-dir",
        str(registry.artifact_dir),
    ]

    def run(*argv: str) -> tuple[int, str, str]:
        actor = [] if argv[0] in read_only else ["--actor", "tester"]
        code = main(["--log-level", "warning", "models", *argv, *options, *actor])
        out, err = capsys.readouterr()
        return code, out, err

    return run


def one_error_line(stderr: str, *fragments: str) -> str:
    """Assert that ``stderr`` is one ``error: ...`` line holding every fragment, with no
    traceback and no Kafka library noise; return that line."""
    assert "Traceback" not in stderr, stderr
    lines = [line for line in stderr.splitlines() if line.strip()]
    errors = [line for line in lines if line.startswith("error: ")]
    assert len(errors) == 1, stderr
    for fragment in fragments:
        assert fragment in errors[0], errors[0]
    return errors[0]


def no_noise(output: str) -> None:
    """No traceback and none of the Kafka client libraries' own log lines."""
    for noise in ("Traceback", "Unhandled exception in task", "Unable connect to", "ran for"):
        assert noise not in output, output
