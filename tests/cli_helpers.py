"""Running ``maas`` as a user does: in this process (``main``) or as a real process."""

from __future__ import annotations

import os
import subprocess
import sys
from collections.abc import Mapping
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]


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
