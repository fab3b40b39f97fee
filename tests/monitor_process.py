"""A drift monitor as a process of its own, to be killed with SIGKILL by a test.

``python -m tests.monitor_process BOOTSTRAP PREFIX REGISTRY_DIR WINDOW_S`` runs the
monitor ``maas monitor`` builds (policies acting, rollback off), with drift windows
of ``WINDOW_S`` seconds and no grace (the CLI's is 60 s: a test would wait that long
for each window), until SIGTERM or SIGINT.
"""

from __future__ import annotations

import asyncio
import signal
import sys
from pathlib import Path

from producer.kafka import KafkaSettings, Topics
from registry.db import utcnow
from registry.registry import Registry
from tests.registry_fixtures import sqlite_settings
from workers.monitor.acting import PolicyActor
from workers.monitor.drifting import DriftSettings, DriftWatch
from workers.monitor.service import Monitor, MonitorSettings


async def main(bootstrap: str, prefix: str, root: Path, window_s: int) -> None:
    kafka = KafkaSettings(bootstrap_servers=bootstrap, topics=Topics(prefix))
    with Registry.open(sqlite_settings(root)) as registry:
        actor = PolicyActor(registry.drift, registry.quality, registry.runs, utcnow)
        drift = DriftWatch(registry.drift, DriftSettings(window_s=window_s, grace_s=0), actor)
        settings = MonitorSettings(flush_s=0.2, rollback=None)
        monitor = Monitor(kafka, registry.quality, settings, models=registry.models, drift=drift)
        stop = asyncio.Event()
        for signum in (signal.SIGTERM, signal.SIGINT):
            asyncio.get_running_loop().add_signal_handler(signum, stop.set)
        await monitor.run(stop)


if __name__ == "__main__":
    asyncio.run(main(sys.argv[1], sys.argv[2], Path(sys.argv[3]), int(sys.argv[4])))
