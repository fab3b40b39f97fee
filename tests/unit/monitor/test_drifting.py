"""Drift windows from capture records, and policies that fire retrains: against a real
(SQLite) registry, no broker."""

from __future__ import annotations

from collections.abc import Callable
from datetime import UTC, datetime, timedelta
from pathlib import Path

import numpy as np
import pytest
from numpy.typing import NDArray
from sklearn.datasets import load_digits

from producer.contract.messages import CaptureRecord
from registry import Registry
from registry.drafts import Draft, ReferenceDraft
from registry.drift import DriftWindow, Policy
from workers.drift import build_profile
from workers.monitor.acting import PolicyActor
from workers.monitor.drifting import DriftSettings, DriftTracker

pytest_plugins = ["tests.registry_fixtures"]

MakeOnnx = Callable[..., Path]
WINDOW_MS = 60_000
T0 = 1_800_000_000_000 - 1_800_000_000_000 % WINDOW_MS


@pytest.fixture(scope="module")
def pixels() -> NDArray[np.float32]:
    return load_digits().data.astype(np.float32)


@pytest.fixture
def served(registry: Registry, make_onnx: MakeOnnx, pixels: NDArray[np.float32]) -> Registry:
    profile = build_profile({"x": pixels[:1000]}, {}, source="training split")
    reference = ReferenceDraft(profile.rows, profile.source, profile.encode().decode())
    registry.models.register("digits", Draft(make_onnx(), reference=reference), actor="t")
    registry.models.register("digits", Draft(make_onnx()), actor="t")  # version 2: none
    return registry


def capture(rows: NDArray[np.float32], ts_ms: int, version: int = 1, **kw: object) -> CaptureRecord:
    fields: dict[str, object] = {
        "job_id": f"j{ts_ms}-{version}",
        "model": "digits",
        "version": version,
        "status": "ok",
        "ts_ms": ts_ms,
        "inputs": {"x": rows.tolist()},
        "outputs": {"label": [0] * len(rows)},
        **kw,
    }
    return CaptureRecord(**fields)  # type: ignore[arg-type]


def test_windows_close_after_the_grace_and_a_shift_shows(
    served: Registry, pixels: NDArray[np.float32]
) -> None:
    tracker = DriftTracker(served.drift, DriftSettings(window_s=60, grace_s=10))
    clean, moved = pixels[1000:1400], pixels[1397:1797].copy()
    moved[:, :16] = np.clip(moved[:, :16] + 6, 0, 16)
    for i in range(0, 400, 20):  # four jobs a second, twenty rows each
        tracker.capture(capture(clean[i : i + 20], T0 + i * 100))
        tracker.capture(capture(moved[i : i + 20], T0 + WINDOW_MS + i * 100))
        tracker.capture(capture(clean[i : i + 20], T0 + i * 100, version=2))
    tracker.capture(capture(clean[:5], T0 + 5, status="error"))
    (first,) = tracker.due()  # the second window has not ended, nor its grace passed
    assert tracker.due() == []
    tracker.capture(capture(clean[:20], T0 + 2 * WINDOW_MS + 10_000))  # past the grace
    (second,) = tracker.due()
    windows = [first, second]
    assert [(w.version, w.rows) for w in windows] == [(1, 400), (1, 400)]
    assert first.share_drifted < 0.05 and second.share_drifted >= 12 / 64
    assert second.end - second.start == timedelta(minutes=1)
    assert {n for n, f in second.features.items() if f["drifted"]} <= {f"x[{i}]" for i in range(16)}
    assert tracker.counts.no_reference == 1  # version 2's window
    tracker.capture(capture(clean[:20], T0 + 100))
    assert tracker.counts.late == 1
    assert served.drift.record_windows(windows) == windows
    assert served.drift.record_windows(windows) == []  # a restarted monitor writes nothing twice


def test_inputs_dropped_by_the_capture_policy_leave_the_prediction_to_judge(
    served: Registry, pixels: NDArray[np.float32]
) -> None:
    tracker = DriftTracker(served.drift, DriftSettings(window_s=60, grace_s=0, max_rows=100))
    for i in range(10):
        tracker.capture(capture(pixels[i * 20 : (i + 1) * 20], T0 + i, inputs=None))
    tracker.capture(capture(pixels[:1], T0 + WINDOW_MS))
    (window,) = tracker.due()
    assert window.rows == 100 and window.share_drifted == 0.0  # no input judged, max_rows kept


def drifted_window(minute: int, share: float) -> DriftWindow:
    start = datetime(2026, 12, 6, 12, minute, tzinfo=UTC)
    return DriftWindow("digits", 1, start, start + timedelta(minutes=1), 300, share)


def test_a_policy_fires_once_when_its_condition_holds_over_consecutive_windows(
    served: Registry,
) -> None:
    policy = served.drift.set_policy(
        Policy("digits", "drift > 0.25 for 3 windows", cooldown_s=3600, dataset="digits"), "t"
    )
    now = datetime(2026, 12, 6, 13, 0, tzinfo=UTC)
    actor = PolicyActor(served.drift, served.quality, served.runs, lambda: now)
    served.drift.record_windows([drifted_window(0, 0.5), drifted_window(1, 0.4)])
    assert actor.check("digits") == []
    served.drift.record_windows([drifted_window(3, 0.3)])  # a gap: the run starts again
    assert actor.check("digits") == []
    served.drift.record_windows([drifted_window(4, 0.3), drifted_window(5, 0.6)])
    (fired,) = actor.check("digits")
    job = fired.job
    assert job.trigger == "drift" and job.model == "digits" and job.dataset is not None
    assert job.dataset.name == "digits"
    assert job.job_id == f"drift-digits-p{policy.id}-20261206T120500Z"
    assert actor.check("digits") == []  # inside the cooldown
    assert served.drift.policies("digits")[0].last_fired_at == now


def test_a_monitor_catching_up_fires_on_a_run_that_held_between_the_windows_it_wrote(
    served: Registry,
) -> None:
    """A monitor started again writes the windows it missed at once: three drifted then
    a clean one. Judged only on the latest windows the run is broken; judged after each
    window written, as a live monitor would have, it fires, once."""
    policy = served.drift.set_policy(Policy("digits", "drift > 0.25 for 3 windows"), "t")
    now = datetime(2026, 12, 6, 13, 0, tzinfo=UTC)
    actor = PolicyActor(served.drift, served.quality, served.runs, lambda: now)
    written = [drifted_window(m, s) for m, s in ((0, 0.5), (1, 0.4), (2, 0.3), (3, 0.0))]
    assert served.drift.record_windows(written) == written
    assert actor.check("digits") == []  # the latest windows: the run is broken
    (fired,) = actor.check("digits", [w.start for w in written])
    assert fired.job.job_id == f"drift-digits-p{policy.id}-20261206T120200Z"
    assert actor.check("digits", [w.start for w in written]) == []  # claimed: once


def test_no_policy_fires_beside_a_running_retrain(served: Registry) -> None:
    served.drift.set_policy(Policy("digits", "drift > 0.1", cooldown_s=60), "t")
    served.drift.record_windows([drifted_window(0, 0.5)])
    actor = PolicyActor(served.drift, served.quality, served.runs, lambda: datetime.now(UTC))
    served.runs.start_run("manual-1", "digits", trigger="manual")
    assert actor.check("digits") == []
