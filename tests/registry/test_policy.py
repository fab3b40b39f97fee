"""Automatic rollback: pure policy decisions, then the check against a real store."""

from __future__ import annotations

from collections.abc import Callable
from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest

from registry import MetricWindow, Registry, RollbackPolicy, check_rollback
from registry.drafts import Draft

MakeOnnx = Callable[..., Path]
T0 = datetime(2025, 1, 1, tzinfo=UTC)
POLICY = RollbackPolicy(
    max_error_rate=0.05, max_error_rate_increase=0.02, max_p95_ratio=2.0, min_jobs=20
)


def windows(
    version: int,
    *,
    jobs: int,
    errors: int = 0,
    p95: float = 5.0,
    start: datetime = T0,
    load: float = 0.0,
) -> list[MetricWindow]:
    return [
        MetricWindow(
            model="digits",
            version=version,
            worker="w:1",
            start=start,
            end=start + timedelta(seconds=10),
            jobs=jobs,
            rows=jobs,
            errors={"INTERNAL": errors} if errors else {},
            infer_ms_p95=p95,
            rows_per_s=load,
        )
    ]


def test_too_little_traffic_is_not_judged() -> None:
    decision = POLICY.decide(windows(2, jobs=10, errors=10), windows(1, jobs=100))
    assert not decision.rollback and "too little traffic" in decision.reason


def test_absolute_error_rate_breach() -> None:
    decision = POLICY.decide(windows(2, jobs=100, errors=6), [])
    assert decision.rollback and "error rate 6.0%" in decision.reason


def test_error_rate_increase_breach() -> None:
    decision = POLICY.decide(windows(2, jobs=100, errors=4), windows(1, jobs=100, errors=1))
    assert decision.rollback and "rose from 1.0% to 4.0%" in decision.reason


def test_latency_breach() -> None:
    decision = POLICY.decide(windows(2, jobs=100, p95=11.0), windows(1, jobs=100, p95=5.0))
    assert decision.rollback and "2.2x" in decision.reason


def test_healthy_version_stays() -> None:
    decision = POLICY.decide(windows(2, jobs=100, errors=1, p95=6.0), windows(1, jobs=100))
    assert not decision.rollback


def test_the_same_version_under_a_heavier_load_is_not_rolled_back() -> None:
    """The issue's case: p95 45.6 ms during a load run after the promotion, 6.6 ms at a
    trickle before it: 6.9x, and nothing but the load changed."""
    idle = windows(1, jobs=500, p95=6.6, load=20.0)
    loaded = windows(2, jobs=50_000, p95=45.6, load=5000.0)
    decision = POLICY.decide(loaded, idle)
    assert not decision.rollback
    assert "latency not judged: the previous version served too few jobs at 4000 rows/s" in (
        decision.reason
    )
    earlier_load = windows(1, jobs=20_000, p95=44.0, load=4800.0)
    decision = POLICY.decide(loaded, idle + earlier_load)
    assert not decision.rollback and decision.reason == "within limits of error rate and latency"


def test_the_same_version_under_a_lighter_load_is_judged_and_kept() -> None:
    decision = POLICY.decide(
        windows(2, jobs=500, p95=6.6, load=20.0), windows(1, jobs=500, p95=45.6, load=5000.0)
    )
    assert not decision.rollback and decision.reason == "within limits of error rate and latency"


def test_a_truly_slower_version_is_rolled_back_at_the_same_load() -> None:
    before = windows(1, jobs=300, p95=8.0, load=100.0) + windows(1, jobs=300, p95=2.0, load=20.0)
    slower = windows(2, jobs=300, p95=35.0, load=110.0)
    decision = POLICY.decide(slower, before)
    assert decision.rollback
    assert decision.reason == (
        "p95 inference latency 35.0 ms is 4.4x the previous version's 8.0 ms at the same "
        "load (88 rows/s or more; limit 2x)"
    )


@pytest.mark.parametrize(("fraction", "judged"), [(0.8, True), (0.79, False)])
def test_the_same_load_is_within_the_tolerance(fraction: float, judged: bool) -> None:
    decision = POLICY.decide(
        windows(2, jobs=100, p95=50.0, load=1000.0),
        windows(1, jobs=100, p95=5.0, load=1000.0 * fraction),
    )
    assert decision.rollback == judged


def test_latency_needs_enough_jobs_on_both_sides_at_that_load() -> None:
    slow = windows(2, jobs=100, p95=50.0, load=100.0)
    thin = windows(1, jobs=19, p95=5.0, load=100.0) + windows(1, jobs=500, p95=5.0, load=10.0)
    assert not POLICY.decide(slow, thin).rollback
    assert POLICY.decide(slow, windows(1, jobs=20, p95=5.0, load=100.0)).rollback


def test_check_rollback_rolls_back_a_bad_promotion(registry: Registry, make_onnx: MakeOnnx) -> None:
    registry.models.register("digits", Draft(make_onnx(), promote=True), actor="ann")
    registry.metrics.record_windows(
        windows(1, jobs=200, start=datetime.now(UTC) - timedelta(hours=1))
    )
    registry.models.register("digits", Draft(make_onnx(), promote=True), actor="ann")
    assert (
        check_rollback(registry.models, registry.metrics, "digits", policy=POLICY) is None
    )  # no traffic yet
    registry.metrics.record_windows(windows(2, jobs=50, errors=10, start=datetime.now(UTC)))
    move = check_rollback(registry.models, registry.metrics, "digits", policy=POLICY)
    assert move is not None and (move.version, move.automatic) == (1, True)
    assert registry.models.resolve("digits").version == 1
    record = registry.models.rollbacks("digits")[-1]
    assert record.automatic and record.actor == "policy" and "error rate" in record.reason
    assert (
        check_rollback(registry.models, registry.metrics, "digits", policy=POLICY) is None
    )  # never rolls forward


def test_first_promotion_is_never_rolled_back(registry: Registry, make_onnx: MakeOnnx) -> None:
    registry.models.register("digits", Draft(make_onnx(), promote=True), actor="ann")
    registry.metrics.record_windows(windows(1, jobs=50, errors=50, start=datetime.now(UTC)))
    assert check_rollback(registry.models, registry.metrics, "digits", policy=POLICY) is None
