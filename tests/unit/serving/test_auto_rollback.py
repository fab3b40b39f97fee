"""Automatic rollback in the running system: a broken promotion is undone by the workers.

A good digits version serves traffic; a deliberately broken version with the same
signature (its outputs have one row too few, so every batch fails) is promoted; the
worker's RollbackWatcher sees the error rate after a metrics flush, rolls back through
the registry, and the control event swaps every worker back to the good version.

Latency is judged at the same load: the very same version promoted into a load run
stays, and a version tens of milliseconds slower per batch under the same trickle is
rolled back.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import time
from collections.abc import AsyncIterator, Iterator
from pathlib import Path

import numpy as np
import onnx
import pytest
from aiokafka import AIOKafkaProducer
from onnx import TensorProto, helper, numpy_helper

from maas.commands.serve import register, rollback_settings
from producer.control import alias_move_publisher
from producer.kafka import KafkaSettings
from registry.drafts import Draft
from registry.entities import MetricWindow
from registry.policy import RollbackPolicy, load
from registry.registry import Registry
from registry.settings import RegistrySettings
from tests.kafka_helpers import publish, read, read_results
from workers.recipes.demo import build_digits_model, digits_samples
from workers.serving.loop import Worker, WorkerSettings
from workers.serving.rollback import RollbackSettings

# kafka-python (the control-event publisher) reads a resource through a deprecated API.
pytestmark = pytest.mark.filterwarnings("ignore:open_text is deprecated:DeprecationWarning")


def build_broken_digits(path: Path) -> Path:
    """The digits signature (x [N,64] → probabilities [N,10], label [N]) with N-1 rows out."""
    weights = helper.make_tensor(
        "w", TensorProto.FLOAT, [64, 10], np.full(640, 0.01, np.float32).tolist()
    )
    starts = helper.make_tensor("starts", TensorProto.INT64, [1], [1])
    ends = helper.make_tensor("ends", TensorProto.INT64, [1], [2**62])
    axes = helper.make_tensor("axes", TensorProto.INT64, [1], [0])
    nodes = [
        helper.make_node("MatMul", ["x", "w"], ["logits"]),
        helper.make_node("Slice", ["logits", "starts", "ends", "axes"], ["short"]),
        helper.make_node("Softmax", ["short"], ["probabilities"], axis=1),
        helper.make_node("ArgMax", ["probabilities"], ["label"], axis=1, keepdims=0),
    ]
    graph = helper.make_graph(
        nodes,
        "broken_digits",
        [helper.make_tensor_value_info("x", TensorProto.FLOAT, ["batch", 64])],
        [
            helper.make_tensor_value_info("probabilities", TensorProto.FLOAT, ["batch", 10]),
            helper.make_tensor_value_info("label", TensorProto.INT64, ["batch"]),
        ],
        initializer=[weights, starts, ends, axes],
    )
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", 17)])
    model.ir_version = 8
    onnx.checker.check_model(model)
    onnx.save(model, str(path))
    return path


@pytest.fixture(scope="module")
def artifacts(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, Path]:
    good = build_digits_model(tmp_path_factory.mktemp("digits")).artifact
    broken = build_broken_digits(tmp_path_factory.mktemp("broken") / "model.onnx")
    return good, broken


@pytest.fixture
def registry(tmp_path: Path, kafka: KafkaSettings) -> Iterator[Registry]:
    settings = RegistrySettings(
        database_url=f"sqlite:///{tmp_path / 'registry.db'}", artifact_dir=tmp_path / "artifacts"
    )
    with Registry.open(settings, on_alias_move=alias_move_publisher(kafka)) as opened:
        yield opened


def job(job_id: str, row: list[float]) -> bytes:
    return json.dumps({"job_id": job_id, "model": "digits", "inputs": {"x": [row]}}).encode()


class Stream:
    """Publishes a steady trickle of digits jobs until stopped; remembers when each went."""

    def __init__(self, kafka: KafkaSettings) -> None:
        self.kafka = kafka
        self.sent: dict[str, float] = {}
        self.rows = [r.tolist() for r in digits_samples(50)[0]]

    async def run(self, stop: asyncio.Event) -> None:
        n = 0
        while not stop.is_set():
            ids = [f"s-{n + i}" for i in range(10)]
            raws = [job(j, self.rows[(n + i) % 50]) for i, j in enumerate(ids)]
            await publish(self.kafka, self.kafka.topics.predict, raws)
            now = time.time()
            self.sent.update(dict.fromkeys(ids, now))
            n += len(ids)
            await asyncio.sleep(0.05)


async def wait_for(predicate: object, timeout_s: float, what: str) -> None:
    deadline = time.monotonic() + timeout_s
    while not await asyncio.to_thread(predicate):  # type: ignore[arg-type]
        if time.monotonic() > deadline:
            raise AssertionError(f"timed out waiting for {what}")
        await asyncio.sleep(0.2)


@pytest.mark.slow
async def test_a_broken_promotion_is_rolled_back_and_every_job_answered(
    kafka: KafkaSettings, registry: Registry, artifacts: tuple[Path, Path]
) -> None:
    good, broken = artifacts
    registry.models.register("digits", Draft(good, promote=True), actor="test")
    policy = RollbackPolicy(min_jobs=20, min_baseline_jobs=20)
    settings = WorkerSettings(
        metrics_interval_s=0.5, rollback=RollbackSettings(policy=policy), alias_ttl_s=30.0
    )
    worker = Worker(kafka, registry.models, registry.metrics, settings)
    stop_worker, stop_stream = asyncio.Event(), asyncio.Event()
    serving = asyncio.create_task(worker.run(stop_worker))
    stream = Stream(kafka)
    try:
        await asyncio.wait_for(worker.ready.wait(), 30)
        streaming = asyncio.create_task(stream.run(stop_stream))
        await wait_for(
            lambda: sum(w.jobs for w in registry.metrics.windows("digits", 1)) >= 50, 30, "v1"
        )

        bad = await asyncio.to_thread(
            registry.models.register, "digits", Draft(broken, promote=True), actor="test"
        )
        await wait_for(lambda: registry.models.rollbacks("digits"), 30, "the automatic rollback")
        rolled_back = time.time()
        # Jobs keep coming until some were sent well after the rollback: those must be v1.
        await wait_for(
            lambda: max(stream.sent.values()) > rolled_back + 2.5, 30, "jobs after the rollback"
        )
        stop_stream.set()
        await streaming
        results = await read_results(kafka, set(stream.sent), timeout_s=60)
    finally:
        stop_stream.set()
        stop_worker.set()
        with contextlib.suppress(Exception):
            await asyncio.wait_for(serving, 60)

    (record,) = registry.models.rollbacks("digits")
    assert record.automatic
    assert (record.from_version, record.to_version) == (bad.version, 1)
    assert "error rate" in record.reason
    assert registry.models.resolve("digits").version == 1

    events = await read(kafka, kafka.topics.control, until=lambda rs: len(rs) >= 2)
    bodies = [json.loads(r.value) for r in events if r.value]
    assert [(b["event"], b["version"]) for b in bodies][-1] == ("rollback", 1)
    assert bodies[-1]["reason"] == record.reason

    assert set(results) == set(stream.sent)  # every job answered, none lost
    broken_answers = [r for r in results.values() if r["version"] == bad.version]
    assert broken_answers
    assert all(r["status"] == "error" for r in broken_answers)
    late = [results[j] for j, at in stream.sent.items() if at > rolled_back + 2.0]
    assert late
    assert all((r["status"], r["version"]) == ("ok", 1) for r in late)


def test_worker_flags_configure_the_rollback_policy() -> None:
    import argparse

    parser = argparse.ArgumentParser()
    register(parser.add_subparsers())
    args = parser.parse_args(
        ["worker", "--rollback-max-error-rate", "0.2", "--rollback-max-p95-ratio", "3"]
    )
    settings = rollback_settings(args)
    assert settings.enabled
    assert (settings.policy.max_error_rate, settings.policy.max_p95_ratio) == (0.2, 3.0)
    assert not rollback_settings(parser.parse_args(["worker", "--no-auto-rollback"])).enabled


def build_slow_digits(path: Path, *, layers: int = 16, width: int = 2048) -> Path:
    """The digits signature, tens of milliseconds slower per batch: a chain of matrix
    products on the batch's first row, multiplied by zero before it joins the logits."""
    rng = np.random.default_rng(0)
    tensors = {
        "w": rng.normal(size=(64, 10)).astype(np.float32) * 0.01,
        "a": rng.normal(size=(64, width)).astype(np.float32) * 0.01,
        "b": rng.normal(size=(width, width)).astype(np.float32) * 0.01,
        "zero": np.zeros((1, 1), np.float32),
        "starts": np.array([0], np.int64),
        "ends": np.array([1], np.int64),
        "axes": np.array([0], np.int64),
    }
    nodes = [
        helper.make_node("MatMul", ["x", "w"], ["logits"]),
        helper.make_node("Slice", ["x", "starts", "ends", "axes"], ["first"]),
        helper.make_node("MatMul", ["first", "a"], ["h0"]),
    ]
    for i in range(layers):
        nodes += [
            helper.make_node("MatMul", [f"h{i}", "b"], [f"m{i}"]),
            helper.make_node("Tanh", [f"m{i}"], [f"h{i + 1}"]),
        ]
    nodes += [
        helper.make_node("ReduceSum", [f"h{layers}"], ["total"], keepdims=1),
        helper.make_node("Mul", ["total", "zero"], ["nothing"]),
        helper.make_node("Add", ["logits", "nothing"], ["same"]),
        helper.make_node("Softmax", ["same"], ["probabilities"], axis=1),
        helper.make_node("ArgMax", ["probabilities"], ["label"], axis=1, keepdims=0),
    ]
    graph = helper.make_graph(
        nodes,
        "slow_digits",
        [helper.make_tensor_value_info("x", TensorProto.FLOAT, ["batch", 64])],
        [
            helper.make_tensor_value_info("probabilities", TensorProto.FLOAT, ["batch", 10]),
            helper.make_tensor_value_info("label", TensorProto.INT64, ["batch"]),
        ],
        initializer=[numpy_helper.from_array(value, name) for name, value in tensors.items()],
    )
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", 17)])
    model.ir_version = 8
    onnx.checker.check_model(model)
    onnx.save(model, str(path))
    return path


async def burst(kafka: KafkaSettings, ids: list[str], rows: list[list[float]]) -> None:
    """Publish ``ids`` as fast as the producer can: a load the trickle never makes."""
    producer = AIOKafkaProducer(bootstrap_servers=kafka.bootstrap_servers)
    await producer.start()
    try:
        for n, job_id in enumerate(ids):
            await producer.send(kafka.topics.predict, job(job_id, rows[n % len(rows)]))
        await producer.flush()
    finally:
        await producer.stop()


class Serving:
    """A worker whose rollback policy judges promotions, and a trickle of digits jobs."""

    def __init__(self, kafka: KafkaSettings, registry: Registry) -> None:
        policy = RollbackPolicy(min_jobs=20, min_baseline_jobs=20)
        settings = WorkerSettings(
            metrics_interval_s=0.5, rollback=RollbackSettings(policy=policy), alias_ttl_s=30.0
        )
        self.registry = registry
        self.worker = Worker(kafka, registry.models, registry.metrics, settings)
        self.stream = Stream(kafka)

    def served(self, version: int) -> list[MetricWindow]:
        return self.registry.metrics.windows("digits", version)

    @contextlib.asynccontextmanager
    async def running(self) -> AsyncIterator[asyncio.Event]:
        """Serving, with the trickle on until the returned event is set."""
        stop_worker, stop_stream = asyncio.Event(), asyncio.Event()
        serving = asyncio.create_task(self.worker.run(stop_worker))
        try:
            await asyncio.wait_for(self.worker.ready.wait(), 30)
            streaming = asyncio.create_task(self.stream.run(stop_stream))
            await wait_for(lambda: sum(w.jobs for w in self.served(1)) >= 200, 60, "v1 traffic")
            yield stop_stream
            stop_stream.set()
            await streaming
        finally:
            stop_stream.set()
            stop_worker.set()
            with contextlib.suppress(Exception):
                await asyncio.wait_for(serving, 60)


@pytest.mark.slow
@pytest.mark.timeout(420)  # 8,000 jobs and their windows: past 120 s on a loaded machine
async def test_the_same_version_under_a_load_change_is_not_rolled_back(
    kafka: KafkaSettings, registry: Registry, artifacts: tuple[Path, Path]
) -> None:
    good, _ = artifacts
    registry.models.register("digits", Draft(good, promote=True), actor="test")
    serving = Serving(kafka, registry)
    async with serving.running() as stop_trickle:
        same = await asyncio.to_thread(
            registry.models.register, "digits", Draft(good, promote=True), actor="test"
        )
        stop_trickle.set()
        rows = serving.stream.rows
        for wave in range(4):  # a load run: every wave far beyond the trickle's rate
            await burst(kafka, [f"load-{wave}-{i}" for i in range(2000)], rows)
        await wait_for(lambda: sum(w.jobs for w in serving.served(2)) >= 8000, 240, "the load")
        await asyncio.sleep(1.5)  # the last windows are written and judged
    assert same.sha256 == registry.models.get_version("digits", 1).sha256
    assert registry.models.rollbacks("digits") == []
    assert registry.models.resolve("digits").version == 2
    before, after = serving.served(1), serving.served(2)
    assert load(after) >= 4 * load(before)  # the load really changed


@pytest.mark.slow
async def test_a_truly_slower_version_is_rolled_back_for_its_latency(
    kafka: KafkaSettings, registry: Registry, artifacts: tuple[Path, Path], tmp_path: Path
) -> None:
    good, _ = artifacts
    slow = build_slow_digits(tmp_path / "slow.onnx")
    registry.models.register("digits", Draft(good, promote=True), actor="test")
    serving = Serving(kafka, registry)
    async with serving.running():
        bad = await asyncio.to_thread(
            registry.models.register, "digits", Draft(slow, promote=True), actor="test"
        )
        await wait_for(lambda: registry.models.rollbacks("digits"), 60, "the automatic rollback")
    (record,) = registry.models.rollbacks("digits")
    assert record.automatic and (record.from_version, record.to_version) == (bad.version, 1)
    assert "p95 inference latency" in record.reason and "at the same load" in record.reason
    assert registry.models.resolve("digits").version == 1
