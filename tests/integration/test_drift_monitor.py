"""Drift through the monitor on each broker: capture records of clean then shifted digits
traffic become drift windows in the registry, a policy fires exactly one retrain job, and
a monitor started again over the same topics writes no window twice and fires nothing."""

from __future__ import annotations

import asyncio
import os
import time
from collections.abc import Callable
from datetime import UTC, datetime
from pathlib import Path

import numpy as np
import pytest
from aiokafka import AIOKafkaProducer
from aiokafka.admin import AIOKafkaAdminClient, NewTopic
from sklearn.datasets import load_digits

from producer.contract.messages import CaptureRecord, decode_capture, decode_retrain, encode
from producer.kafka import KafkaSettings, ensure_topics
from registry.db import utcnow
from registry.drafts import Draft, ReferenceDraft
from registry.drift import Policy
from registry.labelled import CapturePolicy
from registry.registry import Registry
from registry.settings import RegistrySettings
from tests.kafka_helpers import job, publish, read, read_all
from tests.process_helpers import Pieces
from workers.drift import build_profile
from workers.monitor.acting import PolicyActor
from workers.monitor.drifting import DriftSettings, DriftWatch
from workers.monitor.service import Monitor, MonitorSettings
from workers.serving.loop import Worker, WorkerSettings

pytestmark = pytest.mark.both_brokers

MakeOnnx = Callable[..., Path]
WINDOW_S = 2
T0 = int(time.time() * 1000) // 60_000 * 60_000 - 60_000  # a minute boundary, just past


def captures() -> list[bytes]:
    """Six windows of 200 rows: two clean, four with the top two pixel rows brightened,
    then one record far ahead that closes them all."""
    x = load_digits().data.astype(np.float32)
    rng = np.random.default_rng(0)
    records = []
    for window in range(6):
        rows = x[rng.integers(1000, len(x), 200)]
        if window >= 2:
            rows[:, :16] = np.clip(rows[:, :16] + 6 + rng.normal(0, 2, (200, 16)), 0, 16)
        for i in range(0, 200, 20):
            at = T0 + window * WINDOW_S * 1000 + i
            records.append(_capture(f"w{window}-{i}", rows[i : i + 20], at))
    records.append(_capture("closer", x[:1], T0 + 60_000))
    return records


def _capture(job_id: str, rows: np.ndarray, at: int) -> bytes:
    record = CaptureRecord(
        job_id=job_id, model="digits", version=1, status="ok", ts_ms=at,
        inputs={"x": rows.tolist()}, outputs={"label": [0] * len(rows)},
    )  # fmt: skip
    return encode(record)


def _monitor(kafka: KafkaSettings, registry: Registry) -> Monitor:
    actor = PolicyActor(registry.drift, registry.quality, registry.runs, utcnow)
    drift = DriftWatch(registry.drift, DriftSettings(window_s=WINDOW_S, grace_s=0), actor)
    settings = MonitorSettings(flush_s=0.2, rollback=None)
    return Monitor(kafka, registry.quality, settings, models=registry.models, drift=drift)


async def _run_until(monitor: Monitor, done: Callable[[], bool], timeout_s: float = 60) -> None:
    stop = asyncio.Event()
    task = asyncio.create_task(monitor.run(stop))
    try:
        for _ in range(int(timeout_s / 0.2)):
            if done():
                break
            await asyncio.sleep(0.2)
        await asyncio.sleep(1.0)  # anything more it would write or publish, it has
    finally:
        stop.set()
        await asyncio.wait_for(task, 60)


async def test_drift_windows_are_written_once_and_a_policy_fires_once(
    kafka: KafkaSettings, registry: Registry, make_onnx: MakeOnnx
) -> None:
    x = load_digits().data.astype(np.float32)
    profile = build_profile({"x": x[:1000]}, {}, source="training split")
    reference = ReferenceDraft(profile.rows, profile.source, profile.encode().decode())
    registry.models.register(
        "digits", Draft(make_onnx(features=64), promote=True, reference=reference), actor="t"
    )
    registry.drift.set_policy(Policy("digits", "drift > 0.2 for 3 windows", 3600), "t")
    await ensure_topics(kafka)
    await publish(kafka, kafka.topics.capture, captures())
    windows = lambda: registry.drift.windows("digits")  # noqa: E731
    await _run_until(_monitor(kafka, registry), lambda: len(windows()) >= 6)
    shares = [w.share_drifted for w in windows()]
    assert len(shares) == 6, shares
    assert max(shares[:2]) < 0.05 and min(shares[2:]) >= 0.2, shares
    jobs = [decode_retrain(r.value) for r in await read_all(kafka, kafka.topics.retrain)]
    assert [(j.trigger, j.model) for j in jobs] == [("drift", "digits")]
    (fired,) = jobs
    assert fired.job_id.startswith("drift-digits-p1-")

    await _run_until(_monitor(kafka, registry), lambda: False, timeout_s=8)  # started again
    assert [w.share_drifted for w in windows()] == shares  # nothing written twice
    assert len(await read_all(kafka, kafka.topics.retrain)) == 1  # nothing fired twice


class Traffic:
    """Digits jobs sent to a real worker in real time by one producer: clean rows, or
    rows with the top two pixel rows brightened; remembers which job carried which."""

    def __init__(self, producer: AIOKafkaProducer, topic: str) -> None:
        self.producer, self.topic = producer, topic
        self.x = load_digits().data.astype(np.float32)
        self.rng = np.random.default_rng(1)
        self.drifted: set[str] = set()
        self.sent = 0

    async def send(self, *, drifted: bool, for_s: float, rows: int = 25) -> None:
        """A job of ``rows`` rows every 0.25 s for ``for_s`` seconds."""
        for _ in range(int(for_s / 0.25)):
            batch = self.x[self.rng.integers(1000, len(self.x), rows)]
            if drifted:
                shift = 6 + self.rng.normal(0, 2, (rows, 16))
                batch[:, :16] = np.clip(batch[:, :16] + shift, 0, 16)
            job_id = f"live-{self.sent}"
            self.sent += 1
            if drifted:
                self.drifted.add(job_id)
            await self.producer.send_and_wait(self.topic, job(job_id, {"x": batch.tolist()}))
            await asyncio.sleep(0.25)


async def _until_window_starts() -> None:
    """Sleep until just after a drift window starts, so that a phase fills whole windows."""
    width = WINDOW_S * 1000
    now = int(time.time() * 1000)
    await asyncio.sleep((width - now % width) / 1000 + 0.1)


async def one_partition_monitor_topics(kafka: KafkaSettings) -> None:
    """The capture and feedback topics with one partition each (before ensure_topics):
    captures are read in the order the worker answered."""
    admin = AIOKafkaAdminClient(bootstrap_servers=kafka.bootstrap_servers)
    await admin.start()
    try:
        topics = [NewTopic(t, 1, 1) for t in (kafka.topics.capture, kafka.topics.feedback)]
        await admin.create_topics(topics)
    finally:
        await admin.close()


async def test_a_monitor_killed_mid_run_still_flags_drift_a_real_worker_captured(
    kafka: KafkaSettings, registry: Registry, registry_settings: RegistrySettings,
    make_onnx: MakeOnnx, tmp_path: Path,
) -> None:  # fmt: skip
    """Issue 23: a worker answers clean then drifted digits and captures them; the
    monitor, SIGKILLed while drifted traffic flows and started again, writes every
    window once (none lost, none twice, each from every captured row) and fires the
    policy's retrain once."""
    x = load_digits().data.astype(np.float32)
    profile = build_profile({"x": x[:1000]}, {}, source="training split")
    reference = ReferenceDraft(profile.rows, profile.source, profile.encode().decode())
    registry.models.register(
        "digits", Draft(make_onnx(features=64), promote=True, reference=reference), actor="t"
    )
    registry.drift.set_policy(Policy("digits", "drift > 0.2 for 3 windows", 3600), "t")
    registry.quality.set_policy("digits", CapturePolicy(rate=1.0, inputs="full"), actor="t")
    await one_partition_monitor_topics(kafka)
    await ensure_topics(kafka)
    worker = Worker(kafka, registry.models, registry.metrics, WorkerSettings())
    worker.capture.follow(registry.quality)
    stop = asyncio.Event()
    serving = asyncio.create_task(worker.run(stop))
    monitor = Pieces(dict(os.environ), tmp_path)
    args = (
        kafka.bootstrap_servers,
        kafka.topics.prefix,
        str(registry_settings.artifact_dir.parent),
    )
    windows = lambda: registry.drift.windows("digits")  # noqa: E731
    producer = AIOKafkaProducer(bootstrap_servers=kafka.bootstrap_servers)
    traffic = Traffic(producer, kafka.topics.predict)
    try:
        await producer.start()
        await asyncio.wait_for(worker.ready.wait(), 60)
        monitor.start_module("tests.monitor_process", *args, str(WINDOW_S))
        await _until_window_starts()
        await traffic.send(drifted=False, for_s=2 * WINDOW_S)
        await traffic.send(drifted=True, for_s=WINDOW_S)
        await _until(lambda: len(windows()) >= 2)  # the monitor to kill has written some
        before = {w.start: w.share_drifted for w in windows()}
        monitor.kill("tests.monitor_process")  # SIGKILL, mid-run
        await traffic.send(drifted=True, for_s=3 * WINDOW_S)  # while no monitor runs
        monitor.start_module("tests.monitor_process", *args, str(WINDOW_S))
        await _until_window_starts()
        await traffic.send(drifted=False, for_s=0.25)  # the window after: closes the last
        captured = await _captured_by_window(kafka, traffic.sent)
        last = max(captured)  # still open: nothing after it closes it
        await _until(lambda: {w.start for w in windows()} >= set(captured) - {last})
        await asyncio.sleep(1.0)  # anything more it would write or publish, it has
    finally:
        await producer.stop()
        monitor.stop()
        stop.set()
        await asyncio.wait_for(serving, 60)

    written = windows()
    starts = [w.start for w in written]
    assert starts == sorted(set(captured) - {last})  # each window once, none lost
    for window in written:  # from every row captured in it: none counted twice
        assert window.rows == sum(rows for _, rows in captured[window.start])
        assert before.get(window.start, window.share_drifted) == window.share_drifted
        kinds = {job_id in traffic.drifted for job_id, _ in captured[window.start]}
        if window.rows < 100:  # a window the traffic only touched: too few rows to judge
            continue
        if kinds == {False}:
            assert window.share_drifted < 0.05, (window.start, window.share_drifted)
        elif kinds == {True}:
            assert window.share_drifted >= 0.2, (window.start, window.share_drifted)
    assert sum(w.share_drifted >= 0.2 for w in written) >= 3  # drift flagged
    jobs = [decode_retrain(r.value) for r in await read_all(kafka, kafka.topics.retrain)]
    assert [(j.trigger, j.model) for j in jobs] == [("drift", "digits")]  # fired once


async def _until(done: Callable[[], bool], timeout_s: float = 60) -> None:
    """Wait until ``done()`` (the assertions after say what is missing if never)."""
    for _ in range(int(timeout_s / 0.2)):
        if done():
            return
        await asyncio.sleep(0.2)


async def _captured_by_window(
    kafka: KafkaSettings, jobs: int
) -> dict[datetime, list[tuple[str, int]]]:
    """(job_id, rows) of each captured job, by the start of its drift window, once all
    ``jobs`` are captured."""
    records = await read(kafka, kafka.topics.capture, until=lambda rs: len(rs) >= jobs)
    width = WINDOW_S * 1000
    by_window: dict[datetime, list[tuple[str, int]]] = {}
    for record in records:
        capture = decode_capture(record.value or b"")
        start = datetime.fromtimestamp((capture.ts_ms - capture.ts_ms % width) / 1000, UTC)
        rows = len((capture.outputs or {})["probabilities"])
        by_window.setdefault(start, []).append((capture.job_id, rows))
    return by_window
