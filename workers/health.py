"""Probes and metrics over HTTP: ``/metrics``, ``/healthz`` and ``/readyz`` on one port.

Every long-running maas process (worker, trainer, scheduler) serves them with
``--metrics-port``, for Prometheus, Docker's HEALTHCHECK and Kubernetes' probes:

* ``/healthz``, liveness: 200 while the process's event loop turns, i.e. the last
  refresh is at most ``stale_after_s`` old; 503 once it is stuck (restart it).
* ``/readyz``, readiness: 200 when the process's own probe says it does its job (a
  worker: partitions assigned, the models it is pinned to loaded); 503 with the reason.
* ``/metrics``: the Prometheus exposition of the process, its CPU and memory included.

:class:`Health` refreshes the answers *in the served event loop*, every ``interval_s``;
the HTTP server's threads only read them, so a probe never touches the loop's state
from another thread.
"""

from __future__ import annotations

import asyncio
import contextlib
import threading
import time
from collections.abc import AsyncIterator, Awaitable, Callable, Iterable
from contextlib import asynccontextmanager
from dataclasses import dataclass
from socketserver import ThreadingMixIn
from typing import Any
from wsgiref.simple_server import WSGIRequestHandler, WSGIServer, make_server

import structlog
from prometheus_client import REGISTRY, Metric, make_wsgi_app

log = structlog.get_logger(__name__)

# Called in the served loop every interval: updates what the process exports at scrape
# time and returns why the process is not ready, or None when it is.
Probe = Callable[[], Awaitable[str | None]]
StartResponse = Callable[[str, list[tuple[str, str]]], Any]


@dataclass(frozen=True, slots=True)
class HealthSettings:
    interval_s: float = 2.0  # how often the probe runs
    timeout_s: float = 10.0  # a probe that takes longer answers "not ready"
    stale_after_s: float = 30.0  # no refresh for this long: not alive


class Health:
    """The answers of ``/healthz`` and ``/readyz``, refreshed by :meth:`run`."""

    def __init__(
        self,
        probe: Probe,
        settings: HealthSettings | None = None,
        *,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        self._probe = probe
        self._settings = settings or HealthSettings()
        self._clock = clock
        self._beat = clock()  # starting counts as alive
        self._not_ready: str | None = "starting"

    def liveness(self) -> str | None:
        """Why the process is not alive, or None."""
        idle = self._clock() - self._beat
        if idle > self._settings.stale_after_s:
            return f"the event loop has not turned for {idle:.0f} s"
        return None

    def readiness(self) -> str | None:
        """Why the process is not ready, or None."""
        return self.liveness() or self._not_ready

    async def refresh(self) -> None:
        """One round: note that the loop turns, then ask the probe."""
        self._beat = self._clock()
        try:
            self._not_ready = await asyncio.wait_for(self._probe(), self._settings.timeout_s)
        except TimeoutError:
            self._not_ready = f"the readiness probe took over {self._settings.timeout_s:g} s"
        except Exception as exc:
            self._not_ready = f"the readiness probe failed: {type(exc).__name__}: {exc}"

    async def run(self) -> None:
        """Refresh every ``interval_s`` until cancelled."""
        while True:
            await self.refresh()
            await asyncio.sleep(self._settings.interval_s)


class _Server(ThreadingMixIn, WSGIServer):
    daemon_threads = True


class _QuietHandler(WSGIRequestHandler):
    def log_message(self, format: str, *args: Any) -> None:  # probes every few seconds
        pass


class ProbeServer:
    """``/metrics``, ``/healthz`` and ``/readyz`` served from daemon threads."""

    def __init__(
        self, health: Health, port: int, host: str = "0.0.0.0", only: tuple[str, ...] = ()
    ) -> None:
        self._health = health
        self._metrics = make_wsgi_app(_Only(only) if only else REGISTRY)
        try:
            self._server = make_server(host, port, self._app, _Server, _QuietHandler)
        except OSError as exc:
            raise SystemExit(f"cannot serve metrics on port {port}: {exc}") from exc
        self._thread = _serve_in_thread(self._server)
        log.info("metrics and probes served", url=f"http://{host}:{port}/metrics")

    def close(self) -> None:
        self._server.shutdown()
        self._server.server_close()
        self._thread.join(5)

    def _app(self, environ: dict[str, Any], start_response: StartResponse) -> Iterable[bytes]:
        path = environ.get("PATH_INFO", "/")
        if path == "/healthz":
            return _probe_answer(self._health.liveness(), start_response)
        if path == "/readyz":
            return _probe_answer(self._health.readiness(), start_response)
        if path in ("/", "/metrics"):
            answer: Iterable[bytes] = self._metrics(environ, start_response)
            return answer
        start_response("404 Not Found", [("Content-Type", "text/plain; charset=utf-8")])
        return [b"not found: /metrics, /healthz and /readyz are served here\n"]


class _Only:
    """The process's metrics whose names start with one of ``prefixes`` (the trainer's
    and the scheduler's own, not those that modules they share with a worker define)."""

    def __init__(self, prefixes: tuple[str, ...]) -> None:
        self._prefixes = prefixes

    def collect(self) -> Iterable[Metric]:
        return (m for m in REGISTRY.collect() if m.name.startswith(self._prefixes))


# What every process exports besides its own: the client library's process and GC metrics.
GENERIC_METRICS = ("process_", "python_")


def _probe_answer(reason: str | None, start_response: StartResponse) -> list[bytes]:
    status = "200 OK" if reason is None else "503 Service Unavailable"
    start_response(status, [("Content-Type", "text/plain; charset=utf-8")])
    return [f"{reason or 'ok'}\n".encode()]


def _serve_in_thread(server: WSGIServer) -> threading.Thread:
    thread = threading.Thread(target=server.serve_forever, name="maas-probes", daemon=True)
    thread.start()
    return thread


@asynccontextmanager
async def served(
    port: int,
    probe: Probe,
    settings: HealthSettings | None = None,
    *,
    host: str = "0.0.0.0",
    only: tuple[str, ...] = (),
) -> AsyncIterator[Health | None]:
    """While the block runs: metrics and probes on ``host:port`` (port 0: nothing is
    served); ``only``: the metric name prefixes exported (empty: every metric)."""
    if not port:
        yield None
        return
    health = Health(probe, settings)
    server = ProbeServer(health, port, host, only)
    refresher = asyncio.create_task(health.run())
    try:
        yield health
    finally:
        refresher.cancel()
        with contextlib.suppress(asyncio.CancelledError):
            await refresher
        server.close()
