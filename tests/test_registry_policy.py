"""Automatic rollback: pure policy decisions, then the check against a real store."""

from __future__ import annotations

from collections.abc import Callable
from datetime import UTC, datetime, timedelta
from pathlib import Path

from registry import MetricWindow, Registry, RollbackPolicy, check_rollback

MakeOnnx = Callable[..., Path]
T0 = datetime(2025, 1, 1, tzinfo=UTC)
POLICY = RollbackPolicy(
    max_error_rate=0.05, max_error_rate_increase=0.02, max_p95_ratio=2.0, min_jobs=20
)


def windows(
    version: int, *, jobs: int, errors: int = 0, p95: float = 5.0, start: datetime = T0
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


def test_check_rollback_rolls_back_a_bad_promotion(registry: Registry, make_onnx: MakeOnnx) -> None:
    registry.models.register("digits", make_onnx(), actor="ann", promote=True)
    registry.metrics.record_windows(
        windows(1, jobs=200, start=datetime.now(UTC) - timedelta(hours=1))
    )
    registry.models.register("digits", make_onnx(), actor="ann", promote=True)
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
    registry.models.register("digits", make_onnx(), actor="ann", promote=True)
    registry.metrics.record_windows(windows(1, jobs=50, errors=50, start=datetime.now(UTC)))
    assert check_rollback(registry.models, registry.metrics, "digits", policy=POLICY) is None
