"""Drift through the monitor on each broker: capture records of clean then shifted digits
traffic become drift windows in the registry, a policy fires exactly one retrain job, and
a monitor started again over the same topics writes no window twice and fires nothing."""

from __future__ import annotations

import asyncio
import time
from collections.abc import Callable
from pathlib import Path

import numpy as np
import pytest
from sklearn.datasets import load_digits

from producer.contract.messages import CaptureRecord, decode_retrain, encode
from producer.kafka import KafkaSettings, ensure_topics
from registry.db import utcnow
from registry.drafts import Draft, ReferenceDraft
from registry.drift import Policy
from registry.registry import Registry
from tests.kafka_helpers import publish, read_all
from workers.drift import build_profile
from workers.monitor.acting import PolicyActor
from workers.monitor.drifting import DriftSettings, DriftWatch
from workers.monitor.service import Monitor, MonitorSettings

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
