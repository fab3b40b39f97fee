"""``maas up`` as a user runs it: whatever fails, no broker process outlives it."""

from __future__ import annotations

import os
import signal
import socket
import subprocess
import sys
import time
from collections.abc import Callable
from pathlib import Path

import pytest

from maas.broker import accepting, free_port
from tests.cli_helpers import ROOT, maas_process, one_error_line


def no_broker_left(port: int) -> bool:
    """True when no embedded broker process listens on ``port`` and the port is free;
    one left over (by a failing run) is ended, so that it does not outlive the test."""
    left = broker_processes(port)
    for pid in left:
        os.kill(pid, signal.SIGTERM)
    return left == [] and port_is_free(port)


def broker_processes(port: int) -> list[int]:
    """Ids of the processes listening as an embedded broker on ``port``."""
    listener = f"tcp://127.0.0.1:{port}".encode()
    found = []
    for entry in Path("/proc").iterdir():
        if not entry.name.isdigit():
            continue
        try:
            command = (entry / "cmdline").read_bytes()
        except OSError:  # it ended meanwhile
            continue
        if b"broker" in command and listener in command:
            found.append(int(entry.name))
    return found


def port_is_free(port: int) -> bool:
    with socket.socket() as sock:
        try:
            sock.bind(("127.0.0.1", port))
        except OSError:
            return False
    return True


def up(tmp_path: Path, port: int, *registry: str) -> tuple[int, str, str]:
    done = maas_process(
        "up", "--port", str(port), "--samples", "0", "--no-serve", *registry, cwd=tmp_path
    )
    return done.returncode, done.stdout, done.stderr


def test_up_with_an_unreachable_database_starts_nothing(tmp_path: Path) -> None:
    port = free_port()
    database = f"postgresql+psycopg://maas@127.0.0.1:{free_port()}/maas"
    code, _, err = up(tmp_path, port, "--database-url", database)
    assert code == 1
    one_error_line(err, "registry database", "is unavailable")
    assert no_broker_left(port)


@pytest.mark.broker  # starts an embedded broker of its own
def test_up_failing_after_the_broker_started_stops_the_broker(tmp_path: Path) -> None:
    port = free_port()
    blocked = tmp_path / "artifacts"
    blocked.write_text("a file where the artifact directory should be")
    registry = ["--database-url", f"sqlite:///{tmp_path / 'r.db'}", "--artifact-dir", str(blocked)]
    code, out, err = up(tmp_path, port, *registry)
    assert code == 1
    assert f"embedded broker on 127.0.0.1:{port}" in out and "stopped" in out
    one_error_line(err, str(blocked))
    assert no_broker_left(port)


def wait_for(condition: Callable[[], bool], timeout_s: float = 30) -> bool:
    deadline = time.monotonic() + timeout_s
    while not condition():
        if time.monotonic() > deadline:
            return False
        time.sleep(0.1)
    return True


@pytest.mark.broker
def test_a_port_held_by_a_maas_broker_is_refused_and_that_broker_dies_with_its_parent(
    tmp_path: Path,
) -> None:
    """Issue 27 item 4: a closed terminal left the broker on 9092, the next `maas up` moved
    to a random port and every README command talked to the stale broker."""
    port = free_port()
    parent = subprocess.Popen(
        [sys.executable, "-m", "maas.cli", "broker", "--port", str(port)],
        env={**os.environ, "PYTHONPATH": str(ROOT)},
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )
    try:
        assert wait_for(lambda: accepting("127.0.0.1", port))
        (pid,) = broker_processes(port)

        code, _, err = up(tmp_path, port, "--database-url", f"sqlite:///{tmp_path / 'r.db'}")

        assert code == 1
        one_error_line(err, f"port {port}", "embedded maas broker", f"kill {pid}")
        parent.kill()  # as a closed terminal's SIGHUP or an OOM kill would end it
        assert wait_for(lambda: broker_processes(port) == [])
    finally:
        parent.kill()
        parent.wait()
        assert no_broker_left(port)


@pytest.mark.broker
@pytest.mark.slow  # trains the demo model, then a version of it
@pytest.mark.timeout(600)
def test_up_runs_a_trainer_that_answers_maas_retrain(tmp_path: Path) -> None:
    """Issue 27 item 2: `maas retrain` after `make up` waited 10 minutes for a trainer
    that `maas up` never started."""
    port = free_port()
    stack = subprocess.Popen(
        [sys.executable, "-m", "maas.cli", "up", "--port", str(port), "--samples", "0"],
        cwd=tmp_path,
        env={**os.environ, "PYTHONPATH": str(ROOT)},
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        text=True,
    )
    try:
        assert stack.stdout is not None
        said = ""
        for line in stack.stdout:  # the demo model is trained and served first
            said += line.rstrip("\n") + " "
            if "Ctrl-C stops." in said:
                break
        assert "a trainer answers RetrainJobs" in " ".join(said.split()), said
        flags = ["--dataset", "digits", "--params", '{"epochs": 1}', "--promote", "never"]
        where = ["--bootstrap-servers", f"127.0.0.1:{port}", "--timeout", "300"]
        done = maas_process("retrain", "digits", *flags, *where, cwd=tmp_path, timeout=360)
    finally:
        stack.send_signal(signal.SIGINT)
        stack.communicate(timeout=60)
    assert done.returncode == 0, done.stderr
    assert done.stdout.startswith("digits version 2 registered, not promoted"), done.stdout
    assert no_broker_left(port)
