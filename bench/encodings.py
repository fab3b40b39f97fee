"""JSON against binary tensors: the same jobs as ``maas.predict/v1`` records and as OIP
records in the binary layout, for MiniLM (384 floats out a row) and an image-sized input
(224x224x3 float32 in, a model that averages it).

Per encoding and model: a ``maas worker`` process drains a backlog of one-row jobs
(rows/s, its CPU per job from the first answer to the last, the mean bytes of a job's
record and of its answer's), and the encode/decode stages alone, in this process on
the same records: the edge reading a record into the runtime's arrays (decode and
``prepare``) and writing the answer's record (encode), µs per job.

    python -m bench.encodings --broker embedded --minilm-jobs 600 --image-jobs 300
"""

from __future__ import annotations

import argparse
import asyncio
import json
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass, replace
from pathlib import Path
from typing import Any, NamedTuple

import numpy as np
from aiokafka import AIOKafkaConsumer, AIOKafkaProducer

from bench.cpu import cpu_seconds
from bench.measure import Setup, fresh_topics, job_key, start
from bench.workloads import Workload, build_artifact, minilm_workload
from maas.broker import terminate
from producer.contract.messages import Result, decode_predict, encode
from producer.contract.oip import encode_request
from producer.kafka import KafkaSettings, detect_capabilities
from registry.drafts import Draft
from registry.registry import Registry
from registry.settings import RegistrySettings
from workers.runtime.loader import RuntimeSettings, load_runtime
from workers.serving import oip

IMAGE_SHAPE = (224, 224, 3)
Headers = tuple[tuple[str, bytes], ...]


class Sent(NamedTuple):
    """A record as published, and as the worker's edge sees it (a Record)."""

    key: bytes
    value: bytes
    headers: Headers
    topic: str = "maas.predict"
    partition: int = 0
    offset: int = 0


@dataclass
class Row:
    model: str
    encoding: str
    rows_per_s: float
    cpu_us_per_job: float
    job_bytes: float
    answer_bytes: float
    decode_us_per_job: float
    encode_us_per_job: float


def build_image_model(workdir: Path) -> Path:
    """An ONNX model taking [N, 224, 224, 3] float32 and answering its mean per channel."""
    import onnx
    from onnx import TensorProto, helper

    x = helper.make_tensor_value_info("x", TensorProto.FLOAT, ["N", *IMAGE_SHAPE])
    y = helper.make_tensor_value_info("mean", TensorProto.FLOAT, ["N", 3])
    axes = helper.make_tensor("axes", TensorProto.INT64, [2], [1, 2])
    node = helper.make_node("ReduceMean", ["x", "axes"], ["mean"], keepdims=0)
    graph = helper.make_graph([node], "image_mean", [x], [y], initializer=[axes])
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", 18)])
    model.ir_version = 9
    path = workdir / "image" / "model.onnx"
    path.parent.mkdir(parents=True, exist_ok=True)
    onnx.save(model, str(path))
    return path


def image_workload(n: int) -> Workload:
    rng = np.random.default_rng(0)
    images = [rng.random((1, *IMAGE_SHAPE), dtype=np.float32) for _ in range(min(n, 8))]
    jobs: list[dict[str, Any]] = [{"x": images[i % len(images)]} for i in range(n)]
    return Workload("image", jobs, n, n, 5.0)


def records(workload: Workload, model: str, encoding: str) -> list[Sent]:
    """One record per job: a maas.predict/v1 job, or an OIP binary request."""
    sent = []
    for i, inputs in enumerate(workload.jobs):
        key = job_key(i)
        if encoding == "json":
            rows = {name: np.asarray(v).tolist() for name, v in inputs.items()}
            body = json.dumps({"job_id": key, "model": model, "inputs": rows}).encode()
            sent.append(Sent(key.encode(), body, ()))
            continue
        arrays = {name: np.asarray(v) for name, v in inputs.items()}
        request = encode_request(arrays, id=key, binary=True)
        headers = (
            ("maas-model", model.encode()),
            ("inference-header-content-length", str(request.header_length).encode()),
        )
        sent.append(Sent(key.encode(), request.data, headers))
    return sent


async def _publish(kafka: KafkaSettings, backlog: Sequence[Sent]) -> None:
    capabilities = await detect_capabilities(kafka)
    producer = AIOKafkaProducer(
        **kafka.producer(capabilities, linger_ms=5, max_request_size=16 * 2**20)
    )
    await producer.start()
    try:
        sends = [
            await producer.send(kafka.topics.predict, r.value, key=r.key, headers=list(r.headers))
            for r in backlog
        ]
        await asyncio.gather(*sends)
    finally:
        await producer.stop()


async def _collect(kafka: KafkaSettings, expected: int, pid: int) -> tuple[float, float, float]:
    """rows/s and CPU µs per job from the first answer to the last; mean answer bytes."""
    capabilities = await detect_capabilities(kafka)
    consumer = AIOKafkaConsumer(
        kafka.topics.results,
        **kafka.consumer(capabilities, None, max_poll_records=5000, fetch_max_wait_ms=100),
    )
    await consumer.start()
    seen: set[bytes] = set()
    sizes: list[int] = []
    first = last = cpu_first = 0.0
    before_first = 0
    deadline = time.monotonic() + 300
    try:
        while len(seen) < expected and time.monotonic() < deadline:
            polled = await consumer.getmany(timeout_ms=200)
            if not polled:
                continue
            now = time.perf_counter()
            if not first:
                first, cpu_first = now, cpu_seconds(pid)
                before_first = sum(map(len, polled.values()))
            last = now
            for record in (r for part in polled.values() for r in part):
                seen.add(record.key or b"")
                sizes.append(len(record.value or b""))
        spent = cpu_seconds(pid) - cpu_first
    finally:
        await consumer.stop()
    measured = len(seen) - before_first
    rate = measured / (last - first) if last > first else 0.0
    return rate, 1e6 * spent / max(measured, 1), float(np.mean(sizes)) if sizes else 0.0


async def drain(setup: Setup, workload: Workload, backlog: Sequence[Sent]) -> tuple[float, ...]:
    kafka = await fresh_topics(setup.bootstrap, "enc")
    await _publish(kafka, backlog)
    flags = ("--max-job-bytes", str(16 * 2**20))
    process = start("maas", kafka, setup, workload, flags)
    try:
        return await _collect(kafka, len(backlog), process.pid)
    finally:
        terminate(process, timeout_s=30)


def codec_us(setup: Setup, backlog: Sequence[Sent], encoding: str) -> tuple[float, float]:
    """CPU µs per job of the edge's stages alone, the best of five passes over ``backlog``:
    record → the runtime's arrays (decode and ``prepare``), and outputs → record (encode)."""
    with Registry.open(setup.registry) as opened:
        version = opened.models.resolve(setup.model)
    runtime = load_runtime(version.path, version.format, version.signature, RuntimeSettings())
    try:
        decode = _json_decode if encoding == "json" else _binary_decode
        jobs = [decode(runtime.prepare, record) for record in backlog]  # and a warm-up
        outputs = runtime.infer(runtime.prepare(jobs[0].inputs))
        encode_one = _json_encode if encoding == "json" else _binary_encode
        decoding = _best(lambda: [decode(runtime.prepare, record) for record in backlog])
        encoding_s = _best(
            lambda: [encode_one(r, job, outputs) for r, job in zip(backlog, jobs, strict=True)]
        )
        return 1e6 * decoding / len(backlog), 1e6 * encoding_s / len(backlog)
    finally:
        runtime.close()


def _best(run: Callable[[], object], passes: int = 5) -> float:
    times = []
    for _ in range(passes):  # CPU time: the machine is shared, its wall clock is not ours
        started = time.process_time()
        run()
        times.append(time.process_time() - started)
    return min(times)


def _result(job_id: str, model: str, outputs: dict[str, np.ndarray]) -> Result:
    return Result(job_id=job_id, status="ok", model=model, version=1, outputs=outputs)


def _json_decode(prepare: Callable[..., Any], record: Sent) -> Any:
    job = decode_predict(record.value)
    prepare(job.inputs)
    return job


def _binary_decode(prepare: Callable[..., Any], record: Sent) -> Any:
    job = oip.read(record, record.value)
    prepare(job.inputs)
    return job


def _json_encode(_: Sent, job: Any, outputs: dict[str, np.ndarray]) -> bytes:
    return encode(_result(job.job_id, job.model, outputs))


def _binary_encode(record: Sent, job: Any, outputs: dict[str, np.ndarray]) -> bytes:
    result = _result(job.job_id, job.model, outputs)
    return oip.answer(record, job, result, "maas.results", "default").value


async def bench_encodings(bootstrap: str, workdir: Path, sizes: dict[str, int]) -> list[Row]:
    """JSON and binary rows for MiniLM and the image model."""
    registry = RegistrySettings(
        database_url=f"sqlite:///{workdir / 'registry.db'}", artifact_dir=workdir / "artifacts"
    )
    builds: dict[str, tuple[Callable[[], Path], Callable[[int], Workload]]] = {
        "minilm": (lambda: build_artifact("minilm", workdir), minilm_workload),
        "image": (lambda: build_image_model(workdir), image_workload),
    }
    rows = []
    for name, (artifact, make) in builds.items():
        if not sizes.get(name):
            continue
        with Registry.open(registry) as opened:
            opened.models.register(name, Draft(artifact(), promote=True), actor="bench")
        workload = replace(make(sizes[name]), max_batch_size=32, processes=1)
        setup = Setup(bootstrap, registry, name)
        for encoding in ("json", "binary"):
            backlog = records(workload, name, encoding)
            rate, cpu, answer = await drain(setup, workload, backlog)
            job_bytes = float(np.mean([len(r.value) for r in backlog]))
            decode, encode_us = codec_us(setup, backlog[: min(len(backlog), 300)], encoding)
            rows.append(Row(name, encoding, rate, cpu, job_bytes, answer, decode, encode_us))
            print(rows[-1], flush=True)
    return rows


def report(rows: list[Row]) -> str:
    lines = [
        "| model | encoding | jobs/s | worker CPU µs/job | decode+prepare µs/job "
        "| encode µs/job | job record bytes | answer record bytes |",
        "|---|---|---:|---:|---:|---:|---:|---:|",
    ]
    for r in rows:
        lines.append(
            f"| {r.model} | {r.encoding} | {r.rows_per_s:.0f} | {r.cpu_us_per_job:.0f} "
            f"| {r.decode_us_per_job:.1f} | {r.encode_us_per_job:.1f} | {r.job_bytes:.0f} "
            f"| {r.answer_bytes:.0f} |"
        )
    by = {(r.model, r.encoding): r for r in rows}
    for model in dict.fromkeys(r.model for r in rows):
        json_row, binary = by.get((model, "json")), by.get((model, "binary"))
        if json_row and binary:
            ratio = {
                "decode+prepare": json_row.decode_us_per_job / binary.decode_us_per_job,
                "encode": json_row.encode_us_per_job / binary.encode_us_per_job,
                "worker CPU per job": json_row.cpu_us_per_job / binary.cpu_us_per_job,
                "answer bytes": json_row.answer_bytes / binary.answer_bytes,
                "job bytes": json_row.job_bytes / binary.job_bytes,
            }
            found = ", ".join(f"{what} {value:.1f}x" for what, value in ratio.items())
            speed = binary.rows_per_s / json_row.rows_per_s
            lines.append(f"\n{model}, JSON over binary: {found}; binary {speed:.2f}x the jobs/s")
    return "\n".join(lines)


def main() -> None:
    import tempfile

    from bench.run import running_broker

    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--broker", choices=["embedded", "kafka"], default="embedded")
    parser.add_argument("--minilm-jobs", type=int, default=600)
    parser.add_argument("--image-jobs", type=int, default=300)
    args = parser.parse_args()
    sizes = {"minilm": args.minilm_jobs, "image": args.image_jobs}
    with running_broker(args.broker) as (bootstrap, name), tempfile.TemporaryDirectory() as tmp:
        rows = asyncio.run(bench_encodings(bootstrap, Path(tmp), sizes))
    print(f"\nJSON vs binary through {name}, {time.strftime('%Y-%m-%d')}")
    print(report(rows))


if __name__ == "__main__":
    main()
