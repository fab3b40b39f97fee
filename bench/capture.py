"""What capture costs a worker: `maas worker` draining the same digits backlog with the
model's capture rate at 0, at 1.0 (every answer captured, inputs whole), and at 0
again, in one run; the cost is 1 - (rows/s at 1.0) / (mean rows/s at 0). Goal: at
most 10 % on digits. ``make bench`` runs it for digits; ``python -m bench.capture``
runs it alone on the embedded broker.
"""

from __future__ import annotations

import argparse
import asyncio
import tempfile
from dataclasses import replace
from pathlib import Path
from typing import Any

from bench.measure import Setup, drain
from bench.workloads import Workload, build_artifact, digits_workload
from maas.broker import EmbeddedBroker
from registry.drafts import Draft
from registry.labelled import CapturePolicy
from registry.registry import Registry
from registry.settings import RegistrySettings

GOAL_COST = 0.10


def _capture_rate(setup: Setup, rate: float) -> None:
    with Registry.open(setup.registry) as registry:
        registry.quality.set_policy(
            setup.model, CapturePolicy(rate=rate, inputs="full"), actor="bench"
        )


async def bench_capture(setup: Setup, workload: Workload) -> dict[str, Any]:
    """Rows/s with capture off, on (1.0) and off again, and the cost of capture."""
    _capture_rate(setup, 0.0)
    before = await drain("maas", setup, workload)
    _capture_rate(setup, 1.0)
    captured = await drain("maas", setup, workload)
    _capture_rate(setup, 0.0)
    after = await drain("maas", setup, workload)
    off = (before.rows_per_s + after.rows_per_s) / 2
    cost = 1 - captured.rows_per_s / off if off else 0.0
    # CPU per job as well: on a shared machine rows/s swing with the neighbours' load,
    # the worker's own CPU per job much less.
    cpu_off = [m.extra.get("cpu_us_per_job") for m in (before, after)]
    cpu_on = captured.extra.get("cpu_us_per_job")
    cpu_cost = None
    if cpu_on and all(cpu_off):
        cpu_cost = round(cpu_on / (sum(cpu_off) / 2) - 1, 3)  # type: ignore[arg-type]
    return {
        "capture_0_rows_per_s": [round(before.rows_per_s), round(after.rows_per_s)],
        "capture_1_rows_per_s": round(captured.rows_per_s),
        "cost": round(cost, 3),
        "capture_0_cpu_us_per_job": cpu_off,
        "capture_1_cpu_us_per_job": cpu_on,
        "cpu_cost": cpu_cost,
        "goal_met": cost <= GOAL_COST,
    }


async def _main(jobs: int) -> dict[str, Any]:
    with tempfile.TemporaryDirectory() as tmp, EmbeddedBroker() as broker:
        workdir = Path(tmp)
        registry = RegistrySettings(
            database_url=f"sqlite:///{workdir / 'registry.db'}", artifact_dir=workdir / "art"
        )
        with Registry.open(registry) as opened:
            artifact = build_artifact("digits", workdir)
            opened.models.register("digits", Draft(artifact, promote=True), actor="bench")
        setup = Setup(broker.bootstrap_servers, registry, "digits")
        # make bench batches at the raw runtime's best size; alone, at a typical one
        return await bench_capture(setup, replace(digits_workload(jobs), max_batch_size=64))


if __name__ == "__main__":
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--jobs", type=int, default=20000)
    print(asyncio.run(_main(parser.parse_args().jobs)))
