"""The steady section: a backlog drained for the reference rate, then every rate for
every path, one after the other on the same broker."""

from __future__ import annotations

import asyncio
from collections.abc import Callable
from dataclasses import asdict, dataclass, replace
from pathlib import Path
from typing import Any

from bench.measure import Measured, Setup, drain
from bench.steady.driver import SteadyRun, steady
from bench.workloads import Workload, build_artifact, digits_workload
from registry.drafts import Draft
from registry.registry import Registry
from registry.settings import RegistrySettings

PATHS = ("maas", "loop")


@dataclass(frozen=True)
class Plan:
    """Which rates (jobs/s) and paths, for how long; ``drain_share`` of the measured
    drain rate is added to the rates (0: no drain, no such rate)."""

    rates: tuple[float, ...] = (100, 200, 300, 1000, 3000)
    paths: tuple[str, ...] = PATHS
    drain_share: float = 0.5
    seconds: float = 60.0
    warmup_s: float = 5.0


def digits_setup(
    bootstrap: str, workdir: Path, jobs: int, worker_tree: Path | None = None
) -> tuple[Setup, Workload]:
    """A registry in ``workdir`` serving the digits model, and one-process one-row jobs
    batched as ``make bench`` batches them (``jobs``: the size of the drained backlog)."""
    registry = RegistrySettings(
        database_url=f"sqlite:///{workdir / 'registry.db'}", artifact_dir=workdir / "artifacts"
    )
    with Registry.open(registry) as opened:
        if "digits" not in {m.name for m in opened.models.list_models()}:
            artifact = build_artifact("digits", workdir)
            opened.models.register("digits", Draft(artifact, promote=True), actor="bench")
    workload = replace(digits_workload(jobs), processes=1, max_batch_size=256)
    return Setup(bootstrap, registry, "digits", worker_tree), workload


def sweep(
    setup: Setup,
    workload: Workload,
    plan: Plan,
    drained: Measured | None = None,
    say: Callable[[str], None] = print,
) -> dict[str, Any]:
    """Every rate of ``plan`` for every path; ``drained``: a drain of one maas process
    measured already (else one is measured here when ``plan.drain_share`` asks)."""
    if drained is None and plan.drain_share:
        say("steady: draining a backlog with one maas process for the reference rate")
        drained = asyncio.run(drain("maas", setup, workload))
    rates = set(plan.rates)
    share_rate = round(plan.drain_share * drained.rows_per_s) if drained else None
    if share_rate:
        rates.add(share_rate)
    runs = []
    for rate in sorted(rates):
        for path in plan.paths:
            say(f"steady: {path} at {rate:g} jobs/s for {plan.seconds:g} s")
            run = SteadyRun(path, rate, plan.seconds, plan.warmup_s)
            runs.append(asdict(steady(setup, workload, run)))
    return {
        "drain": None if drained is None else asdict(drained),
        "share_rate": share_rate,
        "drain_share": plan.drain_share,
        "max_delay_ms": workload.max_delay_ms,
        "max_batch_size": workload.max_batch_size,
        "seconds": plan.seconds,
        "warmup_s": plan.warmup_s,
        "worker_tree": str(setup.worker_tree) if setup.worker_tree else None,
        "runs": runs,
    }
