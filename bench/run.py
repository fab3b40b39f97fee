"""``make bench``: maas against its limits, measured in one run on the same machine.

For each model (the digits classifier and the MiniLM sentence encoder):
  a. raw     — onnxruntime alone at its best batch size: the physical limit
  b. maas    — `maas worker` draining a backlog through the embedded broker (digits:
               one process per core, and one process for comparison; MiniLM: one)
  c. naive   — consume one, predict one, produce one (what a user writes by hand)
  d. relay   — consume and re-produce without a model: the transport limit
and maas's latency at 10% of its saturated throughput; then a and b again for the
model's int8 version (`maas models optimize`'s own code and figures). Prints rows/s,
p50/p99, mean batch size and the ratios b/a, b/c, b/d; the machine is shared and
noisy, so only ratios measured in the same run mean anything.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import subprocess
import sys
import tempfile
import time
import uuid
from collections.abc import Callable
from dataclasses import asdict, dataclass, field, replace
from pathlib import Path
from typing import Any

import msgspec
import numpy as np
from aiokafka import AIOKafkaConsumer, AIOKafkaProducer
from rich.console import Console
from rich.table import Table

from maas.broker import EmbeddedBroker
from producer.kafka import KafkaSettings, Topics, ensure_topics
from registry.bundle import Registry
from registry.models import ModelStore
from registry.settings import RegistrySettings
from workers.runtime import RuntimeSettings, load_runtime

console = Console(width=160)  # the report table is wide; keep it whole in logs


class _Seen(msgspec.Struct):
    """What the benchmark reads of a Result; msgspec skips the outputs without building them."""

    job_id: str
    batch_size: int = 0
    timing: dict[str, float] = {}


_read_result = msgspec.json.Decoder(_Seen).decode


@dataclass
class Measured:
    rows_per_s: float
    p50_ms: float | None = None
    p99_ms: float | None = None
    mean_batch: float | None = None
    extra: dict[str, Any] = field(default_factory=dict)


@dataclass
class Workload:
    name: str
    jobs: list[dict[str, list[Any]]]  # one row each
    saturation_jobs: int
    naive_jobs: int
    max_delay_ms: float
    # Worker processes for maas. A small model is CPU-bound in Python (decode, encode,
    # Kafka) and scales with processes; a transformer's runtime uses every core already.
    processes: int = 1
    max_batch_size: int = 0  # set to the bare runtime's best batch size before maas runs


def digits_workload(n: int) -> Workload:
    from workers.demo import digits_samples

    pixels, _ = digits_samples(min(n, 400))
    rows = [{"x": [pixels[i % len(pixels)].tolist()]} for i in range(n)]
    return Workload(
        "digits", rows, n, min(n, 5000), max_delay_ms=2.0, processes=os.cpu_count() or 1
    )


def minilm_workload(n: int) -> Workload:
    words = [
        "the",
        "service",
        "answers",
        "every",
        "job",
        "exactly",
        "once",
        "even",
        "when",
        "a",
        "worker",
        "dies",
        "mid",
        "batch",
        "kafka",
        "keeps",
        "the",
        "queue",
        "durable",
        "while",
        "models",
        "are",
        "swapped",
        "without",
        "a",
        "restart",
    ]
    rng = np.random.default_rng(0)
    texts = [" ".join(rng.choice(words, size=int(rng.integers(4, 40)))) for _ in range(n)]
    return Workload(
        "minilm",
        [{"text": [t]} for t in texts],
        n,
        min(n, 600),
        max_delay_ms=10.0,
    )


def build_artifact(name: str, workdir: Path) -> Path:
    if name == "digits":
        from workers.demo import build_digits_model

        return build_digits_model(workdir).artifact
    from workers.minilm import export_minilm

    return export_minilm(workdir / "minilm")


def measure_raw(
    models: ModelStore, model: str, workload: Workload, batch_size: int | None = None
) -> Measured:
    """The bare runtime (the one maas uses) at its best batch size, in rows/s.

    The sweep picks the size (unless ``batch_size`` is given); a second, longer run at
    that size gives the figure, so that the limit is not the luckiest of seven samples.
    """
    version = models.resolve(model)
    runtime = load_runtime(version.path, version.format, version.signature, RuntimeSettings())

    def rate(size: int, seconds: float) -> float:
        rows = [workload.jobs[i % len(workload.jobs)] for i in range(size)]
        batch = runtime.prepare({k: [v for r in rows for v in r[k]] for k in rows[0]})
        runtime.infer(batch)  # warm-up
        done, started = 0, time.perf_counter()
        while time.perf_counter() - started < seconds:
            runtime.infer(batch)
            done += size
        return done / (time.perf_counter() - started)

    try:
        sizes = (1, 8, 16, 32, 64, 128, 256)
        best = batch_size or max(sizes, key=lambda size: rate(size, 1.0))
        return Measured(rate(best, 3.0), extra={"batch_size": best, "provider": runtime.provider})
    finally:
        runtime.close()


async def publish_backlog(
    kafka: KafkaSettings, jobs: list[dict[str, Any]], model: str
) -> list[str]:
    producer = AIOKafkaProducer(**kafka.producer(linger_ms=5))
    await producer.start()
    ids = []
    try:
        sends = []
        for i, inputs in enumerate(jobs):
            job_id = f"b{i}"
            ids.append(job_id)
            body = json.dumps({"job_id": job_id, "model": model, "inputs": inputs}).encode()
            sends.append(await producer.send(kafka.topics.predict, body, key=job_id.encode()))
        await asyncio.gather(*sends)
    finally:
        await producer.stop()
    return ids


async def collect(
    kafka: KafkaSettings,
    expected: int,
    timeout_s: float,
    on_record: Callable[[_Seen, float], None] | None = None,
    fetch_wait_ms: int | None = None,
) -> Measured:
    """Read results until ``expected`` arrive (or time out); rows/s from first to last.

    ``fetch_wait_ms``: how long the broker may hold an empty fetch (default: the
    settings'). Throughput runs wait long, so that the reader, which shares the cores
    with what it measures, does not spin on empty fetches between result batches.
    """
    options = {"max_poll_records": 5000}
    if fetch_wait_ms is not None:
        options["fetch_max_wait_ms"] = fetch_wait_ms
    consumer = AIOKafkaConsumer(kafka.topics.results, **kafka.consumer(None, **options))
    await consumer.start()
    seen: set[str] = set()
    batches: list[int] = []
    first = last = 0.0
    before_first = 0  # results that arrived with the first poll, before ``first``
    deadline = time.monotonic() + timeout_s
    try:
        while len(seen) < expected and time.monotonic() < deadline:
            polled = await consumer.getmany(timeout_ms=200)
            if not polled:
                continue
            now = time.perf_counter()
            if not first:
                first, before_first = now, sum(map(len, polled.values()))
            last = now
            for records in polled.values():
                for record in records:
                    body = _read_result(record.value or b"{}")
                    seen.add(body.job_id)
                    if body.batch_size:
                        batches.append(body.batch_size)
                    if on_record:
                        on_record(body, now)
    finally:
        await consumer.stop()
    rate = (len(seen) - before_first) / (last - first) if last > first else 0.0
    return Measured(
        rate,
        mean_batch=float(np.mean(batches)) if batches else None,
        extra={"answered": len(seen), "expected": expected},
    )


def start(
    kind: str, kafka: KafkaSettings, registry: RegistrySettings, model: str, workload: Workload
) -> subprocess.Popen[bytes]:
    env = {**os.environ, "MAAS_EMBEDDED_BROKER": "1"}
    common = ["--bootstrap-servers", kafka.bootstrap_servers]
    if kind == "maas":
        cmd = [
            sys.executable,
            "-m",
            "maas.cli",
            "--log-level",
            "warning",
            "worker",
            *common,
            "--topic-prefix",
            kafka.topics.prefix,
            "--database-url",
            registry.database_url,
            "--artifact-dir",
            str(registry.artifact_dir),
            "--model",
            model,
            "--max-batch-size",
            str(workload.max_batch_size),
            "--max-delay-ms",
            str(workload.max_delay_ms),
            "--processes",
            str(workload.processes),
            # A run measures one version: no automatic rollback may switch it mid-run
            # (one rolled digits' int8 version back to fp32 in a run on a loaded machine).
            "--no-auto-rollback",
            # A consumer group per run, so that none meets the group state of the one
            # before (a one-process run right after two pools once answered nothing).
            "--group-id",
            f"bench-{kafka.topics.prefix}",
        ]
    else:
        cmd = [sys.executable, "-m", "bench.baselines", *common, "--prefix", kafka.topics.prefix]
        if kind == "naive":
            cmd += [
                "--model",
                model,
                "--database-url",
                registry.database_url,
                "--artifact-dir",
                str(registry.artifact_dir),
            ]
    return subprocess.Popen(cmd, env=env)


async def drain(
    kind: str, broker: EmbeddedBroker, registry: RegistrySettings, model: str, workload: Workload
) -> Measured:
    kafka = KafkaSettings(
        broker.bootstrap_servers, Topics(f"bench{uuid.uuid4().hex[:6]}."), embedded=True
    )
    await ensure_topics(kafka)
    n = workload.naive_jobs if kind == "naive" else workload.saturation_jobs
    if kind == "relay":  # so fast that a backlog of a model's size drains in a poll or two
        n = max(n, 40000)
    await publish_backlog(kafka, [workload.jobs[i % len(workload.jobs)] for i in range(n)], model)
    process = start(kind, kafka, registry, model, workload)
    try:
        # A 100 ms fetch wait moves the first and last arrival by at most that much in
        # a run of many seconds; the 5 ms one costs the measured run CPU.
        return await collect(kafka, n, timeout_s=120, fetch_wait_ms=100)
    finally:
        process.terminate()
        process.wait(30)


async def latency_at_load(
    kind: str,
    broker: EmbeddedBroker,
    registry: RegistrySettings,
    model: str,
    workload: Workload,
    rate: float,
    seconds: float = 8.0,
) -> Measured:
    """p50/p99 from publish to result at a fixed arrival rate (``kind``: maas or relay).

    For maas, ``extra`` also holds the p50/p99 of the Results' own ``timing.total_ms``:
    the time a job spent in the worker, from poll to answer, without the broker hops.
    """
    kafka = KafkaSettings(
        broker.bootstrap_servers, Topics(f"lat{uuid.uuid4().hex[:6]}."), embedded=True
    )
    await ensure_topics(kafka)
    process = start(kind, kafka, registry, model, workload)
    sent: dict[str, float] = {}
    latencies: list[float] = []
    in_worker: list[float] = []

    def on_record(body: _Seen, now: float) -> None:
        if body.job_id in sent:
            latencies.append((now - sent[body.job_id]) * 1000)
            if "total_ms" in body.timing:
                in_worker.append(body.timing["total_ms"])

    try:
        await publish_backlog(kafka, workload.jobs[:1], model)  # warm-up: group join, model load
        await collect(kafka, 1, timeout_s=60)
        count = max(int(rate * seconds), 20)
        reader = asyncio.create_task(
            collect(kafka, count + 1, timeout_s=seconds + 30, on_record=on_record)
        )
        await asyncio.sleep(1.0)  # the reader is positioned
        producer = AIOKafkaProducer(**kafka.producer(linger_ms=0))
        await producer.start()
        interval, t0 = 1.0 / rate, time.perf_counter()
        for i in range(count):
            await asyncio.sleep(max(0.0, t0 + i * interval - time.perf_counter()))
            job_id = f"l{i}"
            body = json.dumps(
                {"job_id": job_id, "model": model, "inputs": workload.jobs[i % len(workload.jobs)]}
            )
            sent[job_id] = time.perf_counter()
            await producer.send(kafka.topics.predict, body.encode(), key=job_id.encode())
        await producer.stop()
        await reader
    finally:
        process.terminate()
        process.wait(30)
    p50, p99 = np.percentile(latencies, [50, 99]) if latencies else (float("nan"),) * 2
    extra: dict[str, Any] = {"jobs": len(latencies)}
    if in_worker:
        extra["worker_p50_ms"], extra["worker_p99_ms"] = (
            float(v) for v in np.percentile(in_worker, [50, 99])
        )
    return Measured(rate, float(p50), float(p99), extra=extra)


async def bench_model(
    name: str, workload: Workload, broker: EmbeddedBroker, workdir: Path
) -> dict[str, Any]:
    registry = RegistrySettings(
        database_url=f"sqlite:///{workdir / 'registry.db'}", artifact_dir=workdir / "artifacts"
    )
    with Registry.open(registry) as opened:
        models = opened.models
        if not models.list_models() or name not in {m.name for m in models.list_models()}:
            models.register(name, build_artifact(name, workdir), actor="bench", promote=True)
        console.print(f"[bold]{name}[/bold]: a. raw onnxruntime")
        raw = measure_raw(models, name, workload)
    # maas batches up to the size at which the bare runtime does best on this machine.
    workload = replace(workload, max_batch_size=raw.extra["batch_size"])
    results = {"raw": raw}
    figures: dict[str, float] = {}  # the int8 version's, measured against the model
    for kind in ("maas", "naive", "relay"):
        console.print(f"[bold]{name}[/bold]: {kind}")
        results[kind] = await drain(kind, broker, registry, name, workload)
        if kind == "maas":
            # Once more right after: the machine is shared, and its load drifts over a
            # run; the limit is the mean of the runs that bracket maas's.
            with Registry.open(registry) as opened:
                again = measure_raw(opened.models, name, workload, workload.max_batch_size)
            raw.extra["runs"] = [raw.rows_per_s, again.rows_per_s]
            raw.rows_per_s = (raw.rows_per_s + again.rows_per_s) / 2
            # The int8 version right after, so that both meet the same load.
            console.print(f"[bold]{name}[/bold]: int8, raw and maas")
            int8, figures = await bench_int8(name, workload, broker, registry, workdir)
            results.update(int8)
    single = replace(workload, processes=1)
    if workload.processes > 1:  # and what one process does, for comparison
        console.print(f"[bold]{name}[/bold]: maas, one process")
        results["maas-1"] = await drain("maas", broker, registry, name, single)
    light = 0.1 * results["maas"].rows_per_s
    console.print(f"[bold]{name}[/bold]: latency at 10% load, maas and the relay")
    # One process: 10% of the load is well within it, and a second group member joining
    # mid-measurement would time a rebalance, not the path.
    results["light"] = await latency_at_load("maas", broker, registry, name, single, light)
    results["light-relay"] = await latency_at_load("relay", broker, registry, name, single, light)
    b = results["maas"].rows_per_s
    ratios = {
        "b/a": b / raw.rows_per_s if raw.rows_per_s else 0.0,
        "b/c": b / results["naive"].rows_per_s if results["naive"].rows_per_s else 0.0,
        "b/d": b / results["relay"].rows_per_s if results["relay"].rows_per_s else 0.0,
    }
    # What maas adds to the latency of the transport itself (two broker hops that the
    # relay pays too); the target is max_delay_ms + 15 ms.
    ratios["added p50 ms"] = results["light"].p50_ms - results["light-relay"].p50_ms  # type: ignore[operator]
    ratios["int8/fp32 raw"] = results["raw-int8"].rows_per_s / raw.rows_per_s
    ratios["int8/fp32 maas"] = results["maas-int8"].rows_per_s / b if b else 0.0
    return {
        "model": name,
        "max_delay_ms": workload.max_delay_ms,
        "max_batch_size": workload.max_batch_size,
        "processes": workload.processes,
        "results": {k: asdict(v) for k, v in results.items()},
        "ratios": ratios,
        "int8": figures,
    }


def int8_rows(name: str, workload: Workload, path: Path) -> Path:
    """Rows to measure the int8 version on: held-out digits with their labels, or the
    workload's texts."""
    if name == "digits":
        from workers.demo import digits_samples

        pixels, labels = digits_samples(450)  # the demo model's held-out rows, once each
        records = [{"x": p.tolist(), "label": int(y)} for p, y in zip(pixels, labels, strict=True)]
    else:
        records = [{"text": job["text"][0]} for job in workload.jobs[:500]]
    path.write_text("".join(json.dumps(record) + "\n" for record in records))
    return path


async def bench_int8(
    name: str, workload: Workload, broker: EmbeddedBroker, registry: RegistrySettings, workdir: Path
) -> tuple[dict[str, Measured], dict[str, float]]:
    """Optimise version 1 to int8 (dynamic) and serve it as production, raw and through
    maas; then production is version 1 again."""
    from workers.optimize import Request, optimize

    with Registry.open(registry) as opened:
        models = opened.models
        rows = int8_rows(name, workload, workdir / "int8-rows.jsonl")
        (workdir / "int8").mkdir()
        done = optimize(models, Request(name, 1, calibration=rows), workdir / "int8", actor="bench")
        models.promote(name, done.version.version, actor="bench", reason="bench: int8")
        raw = measure_raw(models, name, workload)
    # Served with the fp32 run's settings (``workload``): only the version differs.
    maas = await drain("maas", broker, registry, name, workload)
    with Registry.open(registry) as opened:
        opened.models.promote(name, 1, actor="bench", reason="bench: back to fp32")
    return {"raw-int8": raw, "maas-int8": maas}, done.version.metrics


def report(summary: list[dict[str, Any]]) -> None:
    table = Table(title="maas benchmark (one machine, one run)")
    for column in ("model", "path", "rows/s", "p50 ms", "p99 ms", "mean batch", "note"):
        table.add_column(column)
    for entry in summary:
        for kind, m in entry["results"].items():
            fmt = lambda v: "" if v is None else f"{v:.1f}"  # noqa: E731
            table.add_row(
                entry["model"],
                kind,
                f"{m['rows_per_s']:.0f}",
                fmt(m["p50_ms"]),
                fmt(m["p99_ms"]),
                fmt(m["mean_batch"]),
                _note(kind, m, entry),
            )
    console.print(table)
    for entry in summary:
        ratios = ", ".join(f"{k} = {v:.2f}" for k, v in entry["ratios"].items())
        console.print(f"{entry['model']}: {ratios}")


def _note(kind: str, m: dict[str, Any], entry: dict[str, Any]) -> str:
    if kind == "raw":
        runs = " and ".join(f"{r:.0f}" for r in m["extra"].get("runs", []))
        return f"batch {m['extra']['batch_size']}, {m['extra']['provider']}; mean of {runs}"
    if kind == "light":
        return (
            f"at {m['rows_per_s']:.0f} jobs/s; max_delay_ms={entry['max_delay_ms']}; "
            f"in worker p50 {m['extra'].get('worker_p50_ms', float('nan')):.1f}"
        )
    notes = {
        "maas": f"max_batch_size {entry['max_batch_size']}, {entry['processes']} process(es)",
        "maas-1": "the same, one process",
        "light-relay": f"relay at {m['rows_per_s']:.0f} jobs/s",
        "maas-int8": "the int8 version as production, served as maas was",
    }
    if kind == "raw-int8":
        return _int8_note(entry["int8"], m["extra"]["batch_size"])
    return notes.get(kind, "")


def _int8_note(metrics: dict[str, float], batch_size: int) -> str:
    from workers.optimize import from_metrics
    from workers.optimize.report import quality

    comparison = from_metrics(metrics)
    assert comparison is not None
    return f"batch {batch_size}; {quality(comparison.quality)}; size {comparison.size_ratio:.2f}x"


async def main_async(args: argparse.Namespace) -> list[dict[str, Any]]:
    workloads = {
        "digits": lambda: digits_workload(args.digits_jobs),
        "minilm": lambda: minilm_workload(args.minilm_jobs),
    }
    summary = []
    with EmbeddedBroker() as broker, tempfile.TemporaryDirectory() as tmp:
        for name in args.models:
            workdir = Path(tmp) / name
            workdir.mkdir()
            summary.append(await bench_model(name, workloads[name](), broker, workdir))
    return summary


def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument(
        "--models", nargs="+", default=["digits", "minilm"], choices=["digits", "minilm"]
    )
    parser.add_argument("--digits-jobs", type=int, default=60000)
    parser.add_argument("--minilm-jobs", type=int, default=3000)
    parser.add_argument("--out", type=Path, default=Path("bench/out/results.json"))
    args = parser.parse_args()
    summary = asyncio.run(main_async(args))
    report(summary)
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.write_text(json.dumps(summary, indent=2))
    console.print(f"written to {args.out}")


if __name__ == "__main__":
    main()
