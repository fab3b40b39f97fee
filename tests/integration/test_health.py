"""The probes and metrics endpoint, without a broker: a probe function and a fake clock."""

from __future__ import annotations

import asyncio
import socket
import urllib.error

import pytest

from maas.broker import free_port
from tests.deploy_helpers import get
from workers.health import Health, HealthSettings, ProbeServer, served


class Clock:
    def __init__(self) -> None:
        self.now = 1000.0

    def __call__(self) -> float:
        return self.now


async def test_readiness_is_what_the_probe_last_said() -> None:
    answers = iter(["no partitions assigned yet", None])

    async def probe() -> str | None:
        return next(answers)

    health = Health(probe)
    assert health.readiness() == "starting"
    await health.refresh()
    assert health.readiness() == "no partitions assigned yet"
    await health.refresh()
    assert health.readiness() is None
    assert health.liveness() is None


async def test_a_loop_that_stopped_turning_is_neither_alive_nor_ready() -> None:
    async def ready() -> None:
        return None

    clock = Clock()
    health = Health(ready, HealthSettings(stale_after_s=30), clock=clock)
    await health.refresh()
    clock.now += 29
    assert health.liveness() is None
    clock.now += 2
    assert health.liveness() == "the event loop has not turned for 31 s"
    assert health.readiness() == "the event loop has not turned for 31 s"


async def test_a_probe_that_hangs_or_fails_means_not_ready_with_the_reason() -> None:
    async def hangs() -> None:
        await asyncio.sleep(60)

    async def fails() -> None:
        raise ConnectionError("registry unreachable")

    slow = Health(hangs, HealthSettings(timeout_s=0.05))
    await slow.refresh()
    assert slow.readiness() == "the readiness probe took over 0.05 s"
    broken = Health(fails)
    await broken.refresh()
    assert broken.readiness() == "the readiness probe failed: ConnectionError: registry unreachable"


async def test_the_server_answers_probes_and_metrics_and_nothing_else() -> None:
    async def not_ready() -> str:
        return "model digits cannot be served: no production version"

    health = Health(not_ready)
    await health.refresh()
    port = free_port()
    server = ProbeServer(health, port)
    try:
        base = f"http://127.0.0.1:{port}"
        healthz, readyz, metrics, other = await asyncio.gather(
            *(asyncio.to_thread(get, base + p) for p in ("/healthz", "/readyz", "/metrics", "/x"))
        )
    finally:
        server.close()
    assert healthz == (200, "ok\n")
    assert readyz == (503, "model digits cannot be served: no production version\n")
    assert metrics[0] == 200 and "process_resident_memory_bytes" in metrics[1]
    assert other[0] == 404


async def test_served_refreshes_while_the_block_runs_and_closes_after() -> None:
    calls = 0

    async def probe() -> None:
        nonlocal calls
        calls += 1

    port = free_port()
    async with served(port, probe, HealthSettings(interval_s=0.01)) as health:
        await asyncio.sleep(0.1)
        assert health is not None and health.readiness() is None
        assert (await asyncio.to_thread(get, f"http://127.0.0.1:{port}/readyz"))[0] == 200
    assert calls >= 2
    with pytest.raises(urllib.error.URLError):  # the server went with the block
        await asyncio.to_thread(get, f"http://127.0.0.1:{port}/healthz", 1)
    async with served(0, probe) as nothing:
        assert nothing is None


async def test_a_host_and_a_metric_filter_choose_what_is_served_where() -> None:
    """Issue 27 item 11: probes always bound 0.0.0.0, and the trainer and scheduler
    exported metrics of modules they share with others."""
    from workers.training.scheduler import FIRES  # defines maas_scheduler_fires
    from workers.training.trainer import ANSWERED  # defines maas_retrain_jobs

    assert FIRES and ANSWERED

    async def probe() -> None:
        return None

    port = free_port()
    async with served(port, probe, host="127.0.0.1", only=("maas_retrain", "process_")):
        code, text = await asyncio.to_thread(get, f"http://127.0.0.1:{port}/metrics")
        assert code == 200
        assert "maas_retrain_jobs" in text and "process_resident_memory_bytes" in text
        assert "maas_scheduler_fires" not in text and "python_gc" not in text
        with pytest.raises(urllib.error.URLError):  # not on the machine's other addresses
            await asyncio.to_thread(get, f"http://{external_address()}:{port}/metrics", 1)


def external_address() -> str:
    """An address of this machine other than loopback (the one its default route uses)."""
    with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as sock:
        sock.connect(("192.0.2.1", 9))  # no packet is sent: UDP connect only picks a route
        address: str = sock.getsockname()[0]
    if address.startswith("127."):
        pytest.skip("this machine has no address but loopback")
    return address
