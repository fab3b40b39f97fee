"""Is the gateway ready: can it reach the broker and the registry?

:class:`Reachability` checks both every ``interval_s`` in the background, so that a
request arriving while the broker is down is answered 503 at once (instead of waiting
out a Kafka timeout) and ``/v2/health/ready`` answers from memory. The broker check is
a TCP connection to any bootstrap server; the registry's is a ``SELECT 1``.
"""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import Callable

import structlog

from workers.gateway.errors import Unavailable

log = structlog.get_logger(__name__)

CONNECT_TIMEOUT_S = 1.0


def _addresses(bootstrap_servers: str) -> list[tuple[str, int]]:
    found = []
    for server in bootstrap_servers.split(","):
        host, _, port = server.strip().rpartition(":")
        found.append((host.strip("[]") or "127.0.0.1", int(port or 9092)))
    return found


async def broker_reachable(bootstrap_servers: str) -> bool:
    """Whether any bootstrap server accepts a TCP connection within a second."""
    for host, port in _addresses(bootstrap_servers):
        try:
            _, writer = await asyncio.wait_for(
                asyncio.open_connection(host, port), CONNECT_TIMEOUT_S
            )
        except (OSError, TimeoutError):
            continue
        writer.close()
        with contextlib.suppress(OSError):
            await writer.wait_closed()
        return True
    return False


class Reachability:
    """The last answers of the broker and registry checks; :meth:`run` refreshes them."""

    def __init__(
        self, bootstrap_servers: str, registry_ping: Callable[[], object], interval_s: float = 1.0
    ) -> None:
        self._servers = bootstrap_servers
        self._ping = registry_ping
        self._interval_s = interval_s
        self.broker = False
        self.registry = False
        self.checked = asyncio.Event()

    async def refresh(self) -> None:
        broker = await broker_reachable(self._servers)
        try:
            await asyncio.to_thread(self._ping)
            registry = True
        except Exception:  # any failure to answer is "not reachable"
            registry = False
        if (broker, registry) != (self.broker, self.registry):
            log.info("gateway reachability", broker=broker, registry=registry)
        self.broker, self.registry = broker, registry
        self.checked.set()

    async def run(self) -> None:
        while True:
            await self.refresh()
            await asyncio.sleep(self._interval_s)

    def not_ready(self) -> str | None:
        """Why the gateway is not ready, or None when it is."""
        if not self.broker:
            return f"the broker at {self._servers} cannot be reached"
        if not self.registry:
            return "the registry cannot be reached"
        return None

    def require_broker(self) -> None:
        """Raise :class:`Unavailable` at once when the broker was unreachable at the last check."""
        if not self.broker:
            raise Unavailable(
                f"the broker at {self._servers} cannot be reached; try again when it is back"
            )
