"""Where one worker process spends its CPU per job: ``maas worker`` under cProfile.

Publishes a backlog of one-row digits jobs, drains it with one ``maas worker`` process
run under cProfile, and prints the CPU the process spent per job (from /proc, from
the first result to the last; cProfile's own overhead excluded by a run without it)
and the functions that took the most of it.

    python -m bench.profile --broker embedded --jobs 20000 --top 30
"""

from __future__ import annotations

import argparse
import asyncio
import pstats
import sys
import tempfile
from dataclasses import replace
from pathlib import Path

from bench import measure
from bench.run import running_broker
from bench.workloads import build_artifact, digits_workload
from registry.bundle import Registry
from registry.settings import RegistrySettings


async def drain_twice(bootstrap: str, workdir: Path, jobs: int, stats: Path) -> None:
    registry = RegistrySettings(
        database_url=f"sqlite:///{workdir / 'registry.db'}", artifact_dir=workdir / "artifacts"
    )
    with Registry.open(registry) as opened:
        opened.models.register(
            "digits", build_artifact("digits", workdir), actor="bench", promote=True
        )
    workload = replace(digits_workload(jobs), processes=1, max_batch_size=256)
    plain = await measure.drain("maas", bootstrap, registry, "digits", workload)
    profiled = await measure.drain(
        "maas", bootstrap, registry, "digits", workload, runner=("-m", "cProfile", "-o", str(stats))
    )
    for name, m in (("maas", plain), ("maas under cProfile", profiled)):
        print(f"{name}: {m.rows_per_s:.0f} jobs/s, {m.extra['cpu_us_per_job']:.1f} CPU µs/job")


def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--broker", choices=["embedded", "kafka"], default="embedded")
    parser.add_argument("--jobs", type=int, default=20000)
    parser.add_argument("--top", type=int, default=30)
    parser.add_argument("--out", type=Path, default=Path("bench/out/worker.prof"))
    args = parser.parse_args()
    args.out.parent.mkdir(parents=True, exist_ok=True)
    with running_broker(args.broker) as (bootstrap, _), tempfile.TemporaryDirectory() as tmp:
        asyncio.run(drain_twice(bootstrap, Path(tmp), args.jobs, args.out.resolve()))
    stats = pstats.Stats(str(args.out), stream=sys.stdout)
    stats.sort_stats("tottime").print_stats(args.top)
    stats.sort_stats("cumulative").print_stats(args.top)


if __name__ == "__main__":
    main()
