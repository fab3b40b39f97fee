"""``python -m bench.steady``: CPU per job against arrival rate (issue #25).

One-row digits jobs at fixed rates from an independent librdkafka producer (its own
process, paced) over a predict topic of 8 partitions, served in turn by one
``maas worker --model digits --processes 1`` (path ``maas``) and by the librdkafka
per-message loop of bench/baselines.py (path ``loop``). A backlog is drained first
(bench/measure.py) and ``--drain-share`` of its rate joins the rates. For each rate and
path: the worker's and the broker's CPU per job and share of a core (/proc, over the
window after the warm-up), p50/p99 from send to answer read, and whether lag stayed
bounded (the rule: bench/steady/driver.py). ``--worker-tree`` or ``--before REF``
serve maas from another checkout, to measure before and after in the same way.

    python -m bench.steady --broker kafka --seconds 60 --json bench/out/steady-kafka.json
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import tempfile
import time
from collections.abc import Iterator
from contextlib import ExitStack, contextmanager
from pathlib import Path
from typing import Any

from rich.console import Console

from bench.run import running_broker
from bench.steady.report import summary, table
from bench.steady.sweep import PATHS, Plan, digits_setup, sweep

console = Console(width=160)


def _floats(text: str) -> tuple[float, ...]:
    try:
        rates = tuple(float(part) for part in text.split(",") if part.strip())
    except ValueError:
        raise argparse.ArgumentTypeError(f"{text!r}: give rates as numbers, e.g. 100,300") from None
    if not rates or min(rates) <= 0:
        raise argparse.ArgumentTypeError(f"{text!r}: give one or more rates above 0")
    return rates


def _positive(text: str) -> float:
    try:
        value = float(text)
    except ValueError:
        value = -1.0
    if value <= 0:
        raise argparse.ArgumentTypeError(f"{text!r}: give a number above 0")
    return value


def _share(text: str) -> float:
    try:
        value = float(text)
    except ValueError:
        value = -1.0
    if value < 0:
        raise argparse.ArgumentTypeError(f"{text!r}: give a share of the drain rate, e.g. 0.5")
    return value


def _paths(text: str) -> tuple[str, ...]:
    paths = tuple(part.strip() for part in text.split(",") if part.strip())
    if not paths or set(paths) - set(PATHS):
        raise argparse.ArgumentTypeError(f"{text!r}: give paths among {','.join(PATHS)}")
    return paths


def _tree(text: str) -> Path:
    tree = Path(text).resolve()
    if not (tree / "maas" / "cli.py").is_file() and not (tree / "maas" / "cli").is_dir():
        raise argparse.ArgumentTypeError(f"{text}: not a maas checkout (no maas/cli there)")
    return tree


def parser() -> argparse.ArgumentParser:
    found = argparse.ArgumentParser(
        prog="python -m bench.steady",
        description=__doc__,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    found.add_argument("--broker", choices=["embedded", "kafka"], default="embedded")
    found.add_argument("--rates", type=_floats, default=Plan().rates, help="jobs/s, e.g. 100,300")
    found.add_argument("--drain-share", type=_share, default=0.5, help="0: no drain")
    found.add_argument("--drain-jobs", type=lambda text: int(_positive(text)), default=20000)
    found.add_argument("--seconds", type=_positive, default=60.0, help="each window")
    found.add_argument("--warmup", type=_positive, default=5.0, help="seconds before each window")
    found.add_argument("--paths", type=_paths, default=PATHS, help="maas,loop")
    where = found.add_mutually_exclusive_group()
    where.add_argument("--worker-tree", type=_tree, help="serve maas from this checkout")
    where.add_argument("--before", metavar="REF", help="serve maas from this git ref's tree")
    found.add_argument("--json", type=Path, help="default: bench/out/steady-BROKER.json")
    return found


@contextmanager
def exported(ref: str) -> Iterator[Path]:
    """``ref``'s tree of this repository in a temporary directory (``git archive``)."""
    with tempfile.TemporaryDirectory(prefix="maas-before-") as tmp:
        archive = subprocess.run(["git", "archive", ref], capture_output=True, check=False)
        if archive.returncode:
            sys.exit(f"--before {ref}: {archive.stderr.decode().strip() or 'git archive failed'}")
        subprocess.run(["tar", "-x", "-C", tmp], input=archive.stdout, check=True)
        yield Path(tmp)


def measure(args: argparse.Namespace) -> dict[str, Any]:
    plan = Plan(args.rates, args.paths, args.drain_share, args.seconds, args.warmup)
    load_before = os.getloadavg()[0]
    with ExitStack() as stack:
        tree = args.worker_tree or (
            stack.enter_context(exported(args.before)) if args.before else None
        )
        bootstrap, name = stack.enter_context(running_broker(args.broker))
        workdir = Path(stack.enter_context(tempfile.TemporaryDirectory()))
        setup, workload = digits_setup(bootstrap, workdir, args.drain_jobs, tree)
        section = sweep(setup, workload, plan, say=console.print)
    section["worker_tree"] = args.before or section["worker_tree"]
    return {
        "broker": args.broker,
        "broker_name": name,
        "date": time.strftime("%Y-%m-%d %H:%M UTC", time.gmtime()),
        "cpus": os.cpu_count(),
        "load": [load_before, os.getloadavg()[0]],
        **section,
    }


def main() -> None:
    args = parser().parse_args()
    found = measure(args)
    title = (
        f"steady traffic on {found['broker_name']} ({found['date']}, {found['cpus']} CPUs, "
        f"load {found['load'][0]:.1f} → {found['load'][1]:.1f}; maas from "
        f"{found['worker_tree'] or 'this tree'}; {found['seconds']:g} s windows)"
    )
    console.print(table(found, title))
    for line in summary(found):
        console.print(line)
    out = args.json or Path(f"bench/out/steady-{args.broker}.json")
    out.parent.mkdir(parents=True, exist_ok=True)
    out.write_text(json.dumps(found, indent=2))
    console.print(f"written to {out}")


if __name__ == "__main__":
    main()
