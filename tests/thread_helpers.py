"""Servers in threads with event loops of their own: a real worker, or anything else.

Sync tests (the kafka-python client, the CLI, Triton's client, httpx) block the calling
thread, so what they talk to cannot share the test's event loop; in a thread it also
lives for a whole module, which saves a consumer-group join per test.
"""

from __future__ import annotations

import asyncio
import threading
import time
from collections.abc import Callable, Coroutine
from typing import Any

from producer.kafka import KafkaSettings
from registry.registry import Registry
from registry.settings import RegistrySettings
from workers.serving.loop import Worker, WorkerSettings

START_S = 60.0  # how long a worker may take to join its group


class Thread:
    """An event loop in a daemon thread running ``main(stop)`` until :meth:`stop`."""

    def __init__(self, main: Callable[[asyncio.Event], Coroutine[Any, Any, None]]) -> None:
        self.loop: asyncio.AbstractEventLoop | None = None
        self._stop: asyncio.Event | None = None
        self.error: BaseException | None = None
        self._thread = threading.Thread(target=self._run, args=(main,), daemon=True)
        self._thread.start()

    def _run(self, main: Callable[[asyncio.Event], Coroutine[Any, Any, None]]) -> None:
        async def body() -> None:
            self.loop, self._stop = asyncio.get_running_loop(), asyncio.Event()
            await main(self._stop)

        try:
            asyncio.run(body())
        except BaseException as exc:
            self.error = exc

    def stop(self) -> None:
        if self.loop is not None and self._stop is not None:
            self.loop.call_soon_threadsafe(self._stop.set)
        self._thread.join(60)
        assert not self._thread.is_alive(), "the thread did not stop within 60 s"


def start_worker(
    kafka: KafkaSettings, registry: RegistrySettings, *, tenants: bool = False
) -> Thread:
    """A worker serving ``registry``'s models on ``kafka`` in a thread; returns once it
    owns partitions. ``tenants``: it knows the registry's tenants (their topics and
    grants); else it serves the default tenant's jobs only."""
    ready = threading.Event()

    async def main(stop: asyncio.Event) -> None:
        with Registry.open(registry) as opened:
            worker = Worker(
                kafka,
                opened.models,
                opened.metrics,
                WorkerSettings(metrics_interval_s=5.0),
                tenants=opened.tenants if tenants else None,
            )
            task = asyncio.create_task(worker.run(stop))
            await asyncio.wait_for(worker.ready.wait(), 30)
            ready.set()
            await task

    thread = Thread(main)
    deadline = time.monotonic() + START_S
    while not ready.wait(0.2):
        if thread.error is not None or time.monotonic() > deadline:
            raise RuntimeError("the worker did not start") from thread.error
    return thread
