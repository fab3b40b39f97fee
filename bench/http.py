"""``make bench``'s HTTP section: maas's gateway against MLServer, one load generator for both.

    python -m bench.http --broker embedded|kafka [--seconds 5] [--models digits,minilm]

maas: the broker, `maas gateway --allow-anonymous` and one `maas worker` process
(bench/gateway_side.py). MLServer (PyPI, its own virtualenv, adaptive batching on with the
same batch size and delay as maas's worker; bench/mlserver.py) serves the same ONNX
files through a runtime of ours, and digits also through its scikit-learn runtime (an
MLP of the same width on the same data). Each side is measured alone, maas first.

For each model and request encoding (digits: JSON and binary tensors; MiniLM: JSON),
bench/loadgen.py in a process of its own measures the throughput with ``--concurrency``
connections back to back (closed loop), then p50/p99 at 10 % and 50 % of that
throughput at fixed arrival times (open loop), and this process reads the CPU that the
server's processes spent per request from /proc (maas: gateway and worker; the broker
apart). Goals (issue 24): the gateway's throughput >= MLServer's, and its p50 at 10 %
load <= MLServer's + max_delay_ms + 5 ms. When MLServer cannot be installed, the
gateway is measured alone and the reason printed.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import platform
import subprocess
import sys
import tempfile
import time
from collections.abc import Iterator
from contextlib import ExitStack
from dataclasses import asdict, dataclass, field, replace
from pathlib import Path
from typing import Any

from rich.console import Console
from rich.table import Table

from bench import gateway_side, mlserver
from bench.cpu import cpu_seconds
from bench.loadgen import Target, infer_request
from bench.measure import Setup, fresh_topics
from bench.workloads import WORKLOADS, Workload, build_artifact
from maas.broker import free_port
from registry.drafts import Draft
from registry.registry import Registry
from registry.settings import RegistrySettings

console = Console(width=160)

# Per model: maas's --max-batch-size and --max-delay-ms, MLServer's max_batch_size and
# max_batch_time; connections of the closed loop.
BATCHING = {"digits": (64, 2.0), "minilm": (32, 10.0)}
CONCURRENCY = {"digits": 32, "minilm": 16}
GOAL_ADDED_P50_MS = 5.0  # p50 at 10 % load <= MLServer's + max_delay_ms + this


@dataclass(frozen=True)
class Case:
    """One server, model and encoding to measure, and the processes whose CPU it costs."""

    server: str  # maas | mlserver | mlserver-sklearn
    model: str  # the workload: digits | minilm
    target: Target
    encoding: str
    pids: dict[str, int]  # the server's processes by role: gateway, worker; mlserver
    broker_pid: int | None = None


@dataclass
class Row:
    server: str
    model: str
    encoding: str
    rows_per_s: float = 0.0
    p50_ms: float | None = None  # in the closed loop
    p99_ms: float | None = None
    cpu_us: float | None = None  # the server's processes per request
    cpu_us_by: dict[str, float] = field(default_factory=dict)  # the same, by process
    broker_cpu_us: float | None = None
    light: dict[str, Any] = field(default_factory=dict)  # 10 %: rate, p50, p99
    half: dict[str, Any] = field(default_factory=dict)  # 50 %
    refused: str = ""  # why the server answered none


def load(case: Case, seconds: float, *, concurrency: int = 0, rate: float = 0.0) -> dict[str, Any]:
    """bench/loadgen.py against ``case``, in a process of its own; its Outcome."""
    how = ["--concurrency", str(concurrency)] if concurrency else ["--rate", f"{rate:.3f}"]
    target = case.target
    cmd = [
        sys.executable, "-m", "bench.loadgen", "--url", target.url, "--model", case.model,
        "--name", target.model, "--output", target.output, "--encoding", case.encoding,
        "--seconds", str(seconds), *how,
    ]  # fmt: skip
    done = subprocess.run(cmd, capture_output=True, text=True, timeout=seconds + 180, check=False)
    if done.returncode != 0:
        raise RuntimeError(f"bench.loadgen failed: {done.stderr.strip()[-500:]}")
    found: dict[str, Any] = json.loads(done.stdout.strip().splitlines()[-1])
    return found


def _cpu(pids: dict[str, int]) -> dict[str, float]:
    return {role: cpu_seconds(pid) for role, pid in pids.items()}


def idle_cores(pids: dict[str, int], seconds: float = 3.0) -> dict[str, float]:
    """Cores each process spends with no request in flight: what polling alone costs."""
    before = _cpu(pids)
    time.sleep(seconds)
    return {role: (spent - before[role]) / seconds for role, spent in _cpu(pids).items()}


def measure(case: Case, seconds: float, concurrency: int) -> Row:
    """Throughput, CPU per request, then latency at 10 % and 50 % of the throughput."""
    row = Row(case.server, case.model, case.encoding)
    pids = case.pids | _broker(case.broker_pid)
    before = _cpu(pids)
    full = load(case, seconds, concurrency=concurrency)
    after = _cpu(pids)
    if not full["rows_per_s"]:
        row.refused = f"answered none: {full['errors']} {full['refusal']}".strip()
        return row
    row.rows_per_s, row.p50_ms, row.p99_ms = full["rows_per_s"], full["p50_ms"], full["p99_ms"]
    row.cpu_us_by = {role: 1e6 * (after[role] - before[role]) / full["answered"] for role in pids}
    row.broker_cpu_us = row.cpu_us_by.pop("broker", None)
    row.cpu_us = sum(row.cpu_us_by.values())
    for share, into in ((0.1, row.light), (0.5, row.half)):
        rate = max(share * row.rows_per_s, 1.0)
        found = load(case, seconds, rate=rate)
        into.update(rate=rate, p50_ms=found["p50_ms"], p99_ms=found["p99_ms"])
        into.update(sent=found["sent"], answered=found["answered"])
    return row


def _cases(server: str, model: str, url: str, pids: dict[str, int]) -> Iterator[Case]:
    names = {"maas": model, "mlserver": model, "mlserver-sklearn": "digits-sklearn"}
    output = "predict" if server == "mlserver-sklearn" else ""
    output = output or ("label" if model == "digits" else "embedding")
    encodings = (
        ("json", "binary") if model == "digits" and server != "mlserver-sklearn" else ("json",)
    )
    for encoding in encodings:
        yield Case(server, model, Target(url, names[server], output), encoding, pids)


def register(names: list[str], workdir: Path) -> tuple[RegistrySettings, dict[str, Path]]:
    """A registry in ``workdir`` holding each model; the models' files, for MLServer."""
    registry = RegistrySettings(
        database_url=f"sqlite:///{workdir / 'registry.db'}", artifact_dir=workdir / "artifacts"
    )
    files = {name: build_artifact(name, workdir / name) for name in names}
    with Registry.open(registry) as opened:
        for name, path in files.items():
            opened.models.register(name, Draft(path, promote=True), actor="bench")
    return registry, files


def _workload(name: str) -> Workload:
    size, delay = BATCHING[name]
    return replace(WORKLOADS[name](8), processes=1, max_batch_size=size, max_delay_ms=delay)


def _probe(name: str, url: str) -> bytes:
    """The JSON body of one infer request for ``name``, to know the worker answers."""
    from bench.loadgen import workload_rows

    target = Target(url, name, "label" if name == "digits" else "embedding")
    return infer_request(target, workload_rows(name, 1)[0], 0, "json").split(b"\r\n\r\n", 1)[1]


def _broker(pid: int | None) -> dict[str, int]:
    return {"broker": pid} if pid else {}


def bench_maas(
    args: argparse.Namespace, registry: RegistrySettings, idle: dict[str, dict[str, float]]
) -> tuple[list[Row], str]:
    """The gateway's rows, on a broker of ``args.broker``'s kind; and the broker's name.
    ``idle`` gets the cores its processes spend idle, per model."""
    rows = []
    with gateway_side.running_broker(args.broker) as broker:
        kafka = asyncio.run(fresh_topics(broker.bootstrap, "http"))
        with gateway_side.gateway(kafka, Setup(broker.bootstrap, registry, "")) as (url, gw):
            for name in args.models:
                setup = Setup(broker.bootstrap, registry, name)
                probe = _probe(name, url)
                with gateway_side.worker(kafka, setup, _workload(name), url, probe) as pid:
                    roles = {"gateway": gw, "worker": pid}
                    idle[f"maas {name}"] = idle_cores(roles | _broker(broker.pid))
                    for case in _cases("maas", name, url, {"gateway": gw, "worker": pid}):
                        console.print(f"maas gateway: {name}, {case.encoding}")
                        case = replace(case, broker_pid=broker.pid)
                        rows.append(measure(case, args.seconds, CONCURRENCY[name]))
    return rows, broker.name


def bench_mlserver(
    args: argparse.Namespace,
    files: dict[str, Path],
    workdir: Path,
    idle: dict[str, dict[str, float]],
) -> tuple[list[Row], str]:
    """MLServer's rows, or none and why not."""
    try:
        env = mlserver.venv()
    except mlserver.Unavailable as exc:
        return [], str(exc)
    models = []
    for name in args.models:
        size, delay = BATCHING[name]
        runtime = (
            "mlserver_runtimes.OnnxDigits" if name == "digits" else "mlserver_runtimes.OnnxMiniLM"
        )
        models.append(mlserver.Served(name, runtime, files[name], size, delay / 1000))
        if name == "digits":
            joblib = mlserver.train_sklearn(env, workdir)
            sklearn = "mlserver_sklearn.SKLearnModel"
            models.append(mlserver.Served("digits-sklearn", sklearn, joblib, size, delay / 1000))
    port = free_port()
    repo = workdir / "mlserver"
    mlserver.write_repository(repo, models, port, args.mlserver_workers)
    rows = []
    try:
        with mlserver.running(env, repo, models, port) as pid:
            url = f"http://127.0.0.1:{port}"
            idle["mlserver"] = idle_cores({"mlserver": pid})
            for name in args.models:
                servers = ("mlserver", "mlserver-sklearn") if name == "digits" else ("mlserver",)
                for server in servers:
                    for case in _cases(server, name, url, {"mlserver": pid}):
                        console.print(f"{server}: {name}, {case.encoding}")
                        rows.append(measure(case, args.seconds, CONCURRENCY[name]))
    except mlserver.Unavailable as exc:
        return rows, str(exc)
    return rows, ""


def goals(rows: list[Row]) -> list[tuple[str, bool]]:
    """Each goal of issue 24 item 7 that the rows allow to check: what, and whether met."""
    met = []
    for ours in (r for r in rows if r.server == "maas" and r.rows_per_s):
        for peer in rows:
            if peer.server == "maas" or peer.model != ours.model or not peer.rows_per_s:
                continue
            if peer.encoding != "json":
                continue
            what = f"{ours.model} {ours.encoding} vs {peer.server} {peer.encoding}"
            met.append(
                (
                    f"{what}: throughput {ours.rows_per_s:.0f} >= {peer.rows_per_s:.0f} rows/s",
                    ours.rows_per_s >= peer.rows_per_s,
                )
            )
            limit = peer.light["p50_ms"] + BATCHING[ours.model][1] + GOAL_ADDED_P50_MS
            p50 = ours.light["p50_ms"]
            met.append((f"{what}: p50 at 10 % {p50:.1f} <= {limit:.1f} ms", p50 <= limit))
    return met


def _ms(value: float | None) -> str:
    return "" if value is None else f"{value:.1f}"


def report(run: dict[str, Any], rows: list[Row]) -> None:
    table = Table(
        title=f"HTTP: maas's gateway on {run['broker_name']} against MLServer {run['mlserver']} "
        f"({run['date']}, {run['machine']['cpus']} CPUs; load {run['load'][0]:.1f} → "
        f"{run['load'][1]:.1f}; {run['seconds']:g} s per run)"
    )
    heads: tuple[str, ...] = (
        "model",
        "server",
        "encoding",
        "rows/s",
        "p50",
        "p99",
        "CPU µs/req",
        "broker µs/req",
    )
    heads += ("CPU by process",)
    for head in (*heads, "10 %: rate", "p50", "p99", "50 %: rate", "p50", "p99"):
        table.add_column(head)
    for row in rows:
        cells = [row.model, row.server, row.encoding]
        if row.refused:
            table.add_row(*cells, row.refused[:90])
            continue
        cells += [f"{row.rows_per_s:.0f}", _ms(row.p50_ms), _ms(row.p99_ms), _ms(row.cpu_us)]
        cells.append(_ms(row.broker_cpu_us))
        cells.append(", ".join(f"{k} {v:.0f}" for k, v in row.cpu_us_by.items()))
        for part in (row.light, row.half):
            cells += [f"{part['rate']:.0f}", _ms(part["p50_ms"]), _ms(part["p99_ms"])]
        table.add_row(*cells)
    console.print(table)
    for who, cores in run["idle_cores"].items():
        console.print(f"idle, cores: {who}: " + ", ".join(f"{k} {v:.2f}" for k, v in cores.items()))
    for what, met in goals(rows):
        console.print(f"  {'met' if met else 'MISSED'}: {what}")


def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--broker", choices=["embedded", "kafka"], default="embedded")
    parser.add_argument("--seconds", type=float, default=5.0, help="per run (plus 1 s warm-up)")
    parser.add_argument("--models", default="digits,minilm", help="comma-separated")
    parser.add_argument(
        "--mlserver-workers",
        type=int,
        default=1,
        help="MLServer's parallel_workers (its default 1)",
    )
    parser.add_argument("--out", type=Path, help="default: bench/out/http-BROKER.json")
    args = parser.parse_args()
    args.models = [m for m in args.models.split(",") if m]
    unknown = set(args.models) - set(WORKLOADS)
    if unknown:
        parser.error(f"--models: unknown {sorted(unknown)}; choose from {sorted(WORKLOADS)}")
    load_before = os.getloadavg()[0]
    with ExitStack() as stack:
        workdir = Path(stack.enter_context(tempfile.TemporaryDirectory()))
        registry, files = register(args.models, workdir)
        idle: dict[str, dict[str, float]] = {}
        rows, broker_name = bench_maas(args, registry, idle)
        peer, why = bench_mlserver(args, files, workdir, idle)
    if why:
        console.print(f"[bold]MLServer not measured[/bold]: {why}")
    rows += peer
    run = {
        "broker": args.broker,
        "broker_name": broker_name,
        "mlserver": _mlserver_version(),
        "date": time.strftime("%Y-%m-%d %H:%M UTC", time.gmtime()),
        "machine": {"host": platform.node(), "cpus": os.cpu_count()},
        "load": [load_before, os.getloadavg()[0]],
        "seconds": args.seconds,
        "mlserver_workers": args.mlserver_workers,
        "why_no_mlserver": why,
        "idle_cores": idle,
        "rows": [asdict(row) for row in rows],
    }
    report(run, rows)
    out = args.out or Path(f"bench/out/http-{args.broker}.json")
    out.parent.mkdir(parents=True, exist_ok=True)
    out.write_text(json.dumps(run, indent=2))
    console.print(f"written to {out}")


def _mlserver_version() -> str:
    """The version of MLServer in its virtualenv (where scripts/mlserver_venv.sh puts it)."""
    default = Path.home() / ".cache" / "maas" / "mlserver-venv"
    program = Path(os.environ.get("MLSERVER_VENV", default)) / "bin" / "mlserver"
    try:
        shown = subprocess.run([str(program), "--version"], capture_output=True, text=True)
    except OSError:
        return "(not installed)"
    words = shown.stdout.split()
    return words[-1] if shown.returncode == 0 and words else "(not installed)"


if __name__ == "__main__":
    main()
