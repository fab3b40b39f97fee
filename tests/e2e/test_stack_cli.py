"""``maas up`` as a user runs it: whatever fails, no broker process outlives it."""

from __future__ import annotations

import os
import signal
import socket
from pathlib import Path

import pytest

from maas.broker import free_port
from tests.cli_helpers import maas_process, one_error_line


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
