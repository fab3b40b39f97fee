"""Where one worker process spends its CPU per job: ``maas worker`` under cProfile.

Publishes a backlog of one-row digits jobs and drains it twice with one ``maas worker``
process: once plainly, for the CPU it spends per job (from /proc, from the first
result to the last), and once under cProfile, for where that CPU goes. The report
splits the event loop's profiled time into stages (consume, decode, queue and batch,
serve, encode, publish, metrics, ...; start-up and waiting left out) and scales each
stage's share to the plain run's CPU per job. Inference runs in a thread that
cProfile does not see; for a model as small as digits it is a few µs per batch.

With ``--rate R`` the same split is taken under steady traffic instead of a backlog:
one-row jobs at R jobs/s from an independent librdkafka producer (bench/steady), once
plainly for the CPU per job over the window and once under cProfile.

    python -m bench.profile --broker embedded --jobs 20000
    python -m bench.profile --broker kafka --rate 200 --seconds 30
"""

from __future__ import annotations

import argparse
import asyncio
import pstats
import sys
import tempfile
from collections import defaultdict
from dataclasses import replace
from pathlib import Path

from bench import measure
from bench.run import running_broker
from bench.steady.driver import Steady, SteadyRun, steady
from bench.steady.sweep import digits_setup
from bench.workloads import build_artifact, digits_workload
from registry.drafts import Draft
from registry.registry import Registry
from registry.settings import RegistrySettings

# A function's stage: the first of these whose key is part of its file name (or, for
# producer/contract/messages.py, of its own name). Any other function (builtins, the standard
# library, import-time code) counts for the stages of its callers, in proportion.
_STAGES = (
    ("epoll", "waiting"),
    ("importlib", "start-up"),
    (":<module>", "start-up"),
    ("maas/", "start-up"),
    ("registry/", "registry (models, metric windows)"),
    ("messages.py:encode", "encode"),
    ("messages.py:_encode", "encode"),
    ("messages.py", "decode"),
    ("aiokafka/consumer", "consume"),
    ("aiokafka/producer", "produce (aiokafka)"),
    ("aiokafka/partitioner", "produce (aiokafka)"),
    ("aiokafka/", "network and protocol (aiokafka)"),
    ("workers/batch", "queue and batch"),
    ("workers/serving/handler.py", "serve (resolve, results)"),
    ("workers/serving/models.py", "serve (resolve, results)"),
    ("workers/kafka/publisher.py", "publish"),
    ("workers/serving/metrics.py", "metrics"),
    ("prometheus_client", "metrics"),
    ("workers/", "loop, offsets, flow"),
    ("asyncio/", "event loop"),
    ("selectors.py", "event loop"),
    ("concurrent/", "event loop"),
    ("threading.py", "event loop"),
)
Function = tuple[str, int, str]


def stages(path: Path) -> dict[str, float]:
    """Seconds of profiled time per stage."""
    table = pstats.Stats(str(path)).stats  # type: ignore[attr-defined]
    shares: dict[Function, dict[str, float]] = {}

    def share(function: Function, depth: int = 0) -> dict[str, float]:
        """How ``function``'s own time divides among stages (fractions summing to 1)."""
        if function in shares:
            return shares[function]
        file, _, name = function
        where = f"{file}:{name}"
        stage = next((stage for key, stage in _STAGES if key in where), None)
        callers = table.get(function, (0, 0, 0, 0, {}))[4]
        found: defaultdict[str, float] = defaultdict(float)
        if stage is not None or not callers or depth > 50:
            found[stage or "other"] = 1.0
        else:
            shares[function] = {"other": 1.0}  # a cycle of callers ends here
            total: float = sum(own for _, _, own, _ in callers.values()) or 1.0
            for caller, (_, _, own, _) in callers.items():
                for name, part in share(caller, depth + 1).items():
                    found[name] += part * own / total
        shares[function] = found
        return found

    spent: defaultdict[str, float] = defaultdict(float)
    for function, (_, _, own, _, _) in table.items():
        for stage, part in share(function).items():
            spent[stage] += own * part
    return spent


async def drain_twice(
    bootstrap: str, workdir: Path, jobs: int, stats: Path
) -> tuple[measure.Measured, measure.Measured]:
    registry = RegistrySettings(
        database_url=f"sqlite:///{workdir / 'registry.db'}", artifact_dir=workdir / "artifacts"
    )
    with Registry.open(registry) as opened:
        artifact = build_artifact("digits", workdir)
        opened.models.register("digits", Draft(artifact, promote=True), actor="bench")
    workload = replace(digits_workload(jobs), processes=1, max_batch_size=256)
    setup = measure.Setup(bootstrap, registry, "digits")
    plain = await measure.drain("maas", setup, workload)
    profiler = ("-m", "cProfile", "-o", str(stats))
    profiled = await measure.drain("maas", setup, workload, runner=profiler)
    return plain, profiled


def steady_twice(
    bootstrap: str, workdir: Path, run: SteadyRun, stats: Path
) -> tuple[Steady, Steady]:
    """``run`` plainly, then under cProfile writing ``stats``."""
    setup, workload = digits_setup(bootstrap, workdir, jobs=100)
    plain = steady(setup, workload, run)
    profiled = steady(setup, workload, replace(run, runner=("-m", "cProfile", "-o", str(stats))))
    return plain, profiled


def drain_report(plain: measure.Measured, profiled: measure.Measured, stats: Path) -> None:
    per_job = plain.extra["cpu_us_per_job"]
    print(f"maas worker, one process: {plain.rows_per_s:.0f} jobs/s, {per_job:.1f} CPU µs/job")
    print(f"under cProfile: {profiled.rows_per_s:.0f} jobs/s")
    report(per_job, stats)


def steady_report(plain: Steady, profiled: Steady, stats: Path) -> None:
    per_job = 1000 * plain.worker_ms_per_job
    print(
        f"maas worker, one process, steady {plain.rate:g} jobs/s: {per_job:.1f} CPU µs/job, "
        f"{plain.worker_core:.2f} of a core; broker {1000 * plain.broker_ms_per_job:.1f} µs/job; "
        f"p50 {plain.p50_ms:.1f} ms"
    )
    print(f"under cProfile: {profiled.worker_core:.2f} of a core, p50 {profiled.p50_ms:.1f} ms")
    report(per_job, stats)


def report(per_job: float, stats: Path) -> None:
    """The profiled time by stage, each scaled to ``per_job`` (the plain run's µs/job)."""
    found = stages(stats)
    serving = {k: v for k, v in found.items() if k not in ("start-up", "waiting")}
    total = sum(serving.values())
    print(f"\n{'stage':34} {'share':>6} {'µs/job':>7}")
    for stage, seconds in sorted(serving.items(), key=lambda item: -item[1]):
        share = seconds / total
        print(f"{stage:34} {share:6.1%} {share * per_job:7.1f}")
    print(
        f"(left out: start-up {found.get('start-up', 0.0):.1f} s, waiting {found.get('waiting', 0.0):.1f} s)"
    )


def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--broker", choices=["embedded", "kafka"], default="embedded")
    parser.add_argument("--jobs", type=int, default=20000, help="the backlog drained")
    parser.add_argument("--rate", type=float, help="jobs/s of steady traffic instead of a backlog")
    parser.add_argument("--seconds", type=float, default=30.0, help="the steady window")
    parser.add_argument("--top", type=int, default=0, help="also print the top N functions")
    parser.add_argument("--out", type=Path, default=Path("bench/out/worker.prof"))
    args = parser.parse_args()
    args.out.parent.mkdir(parents=True, exist_ok=True)
    stats = args.out.resolve()
    if args.rate is not None and args.rate <= 0:
        parser.error(f"--rate {args.rate:g}: give a rate above 0 jobs/s")
    if args.seconds <= 0:
        parser.error(f"--seconds {args.seconds:g}: give a window above 0 seconds")
    with running_broker(args.broker) as (bootstrap, _), tempfile.TemporaryDirectory() as tmp:
        if args.rate:
            run = SteadyRun("maas", args.rate, args.seconds)
            steady_report(*steady_twice(bootstrap, Path(tmp), run, stats), stats)
        else:
            drain_report(*asyncio.run(drain_twice(bootstrap, Path(tmp), args.jobs, stats)), stats)
    if args.top:
        pstats.Stats(str(stats), stream=sys.stdout).sort_stats("tottime").print_stats(args.top)


if __name__ == "__main__":
    main()
