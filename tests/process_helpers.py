"""``maas`` commands run as a user runs them: processes of their own, with an environment."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path


class Pieces:
    """``maas`` processes with the test's environment; their output goes to ``logs``."""

    def __init__(self, env: dict[str, str], logs: Path) -> None:
        self.env, self.logs = env, logs
        self.running: dict[str, subprocess.Popen[bytes]] = {}

    def start(self, *args: str) -> None:
        name = args[0]
        with (self.logs / f"{name}.log").open("wb") as log:
            self.running[name] = subprocess.Popen(
                [sys.executable, "-m", "maas.cli", *args],
                stdout=log,
                stderr=subprocess.STDOUT,
                env=self.env,
            )

    def start_module(self, module: str, *args: str) -> None:
        """``python -m module args``, logging to ``module.log`` (appended: a process
        started again after :meth:`kill` adds to its predecessor's log)."""
        with (self.logs / f"{module}.log").open("ab") as log:
            self.running[module] = subprocess.Popen(
                [sys.executable, "-m", module, *args],
                stdout=log,
                stderr=subprocess.STDOUT,
                env=self.env,
            )

    def kill(self, name: str) -> None:
        """SIGKILL ``name``: it ends with no chance to clean up."""
        process = self.running.pop(name)
        process.kill()
        process.wait()

    def run(self, *args: str, timeout_s: float) -> subprocess.CompletedProcess[str]:
        return subprocess.run(
            [sys.executable, "-m", "maas.cli", *args],
            capture_output=True,
            text=True,
            env=self.env,
            timeout=timeout_s,
            check=False,
        )

    def log(self, name: str) -> str:
        return (self.logs / f"{name}.log").read_text(errors="replace")

    def stop(self) -> None:
        for process in self.running.values():
            process.terminate()
        for process in self.running.values():
            try:
                process.wait(30)
            except subprocess.TimeoutExpired:
                process.kill()
                process.wait()
