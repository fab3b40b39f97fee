"""The quality store on SQLite and PostgreSQL: capture policies, windows that add up,
and rows counted once however often they are handed over."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

import pytest

from registry.drafts import Draft
from registry.errors import ModelNotFound
from registry.labelled import CapturePolicy, QualityWindow
from registry.quality import Joined
from registry.registry import Registry
from tests.registry_fixtures import MakeOnnx
from workers.monitor.pruning import PruneSettings, prune

START = datetime(2026, 1, 1, tzinfo=UTC)


def row(
    job_id: str, correct: bool, *, start: datetime = START, tenant: str | None = None
) -> Joined:
    window = QualityWindow(
        "m", 1, start, 3600, "classifier", rows=1, correct=int(correct),
        confusion={"1": {"1" if correct else "2": 1}}, delays={"30": 1},
    )  # fmt: skip
    return Joined(tenant, job_id, 0, window)


def test_policies_windows_and_rows_counted_once(
    any_registry: Registry, make_onnx: MakeOnnx
) -> None:
    registry = any_registry
    registry.models.register("m", Draft(make_onnx(), promote=True), actor="t")
    assert registry.quality.policy("m") is None
    registry.quality.set_policy("m", CapturePolicy(0.5, "hash:x", 86_400_000), actor="t")
    registry.quality.set_policy("m", CapturePolicy(0.25, "drop"), actor="t")
    assert registry.quality.policies() == {"m": CapturePolicy(0.25, "drop")}

    counted = registry.quality.add_joined([row("a", True), row("b", False), row("a", True)])
    assert [j.job_id for j in counted] == ["a", "b"]  # a twice in one batch: once
    assert registry.quality.add_joined([row("a", True), row("c", True)]) == [row("c", True)]
    # the same job id of another tenant is another row
    assert len(registry.quality.add_joined([row("a", True, tenant="acme")])) == 1
    later = START + timedelta(hours=1)
    registry.quality.add_joined([row("d", False, start=later)])

    windows = registry.quality.windows("m", 1)
    assert [(w.start, w.rows, w.correct) for w in windows] == [(START, 4, 3), (later, 1, 0)]
    assert windows[0].confusion == {"1": {"1": 3, "2": 1}}
    assert registry.quality.windows("m", since=later)[0].start == later
    assert registry.quality.forget_joins(datetime.now(UTC) + timedelta(seconds=1)) == 5


def test_unknown_models_are_refused(any_registry: Registry) -> None:
    with pytest.raises(ModelNotFound):
        any_registry.quality.set_policy("nope", CapturePolicy(), actor="t")
    with pytest.raises(ModelNotFound):
        any_registry.quality.add_joined([row("a", True)])


def test_joins_counted_long_ago_are_forgotten_in_batches(
    any_registry: Registry, make_onnx: MakeOnnx
) -> None:
    registry = any_registry
    registry.models.register("m", Draft(make_onnx(), promote=True), actor="t")
    old = [row(f"old-{i}", True) for i in range(5)]
    assert len(registry.quality.add_joined(old)) == 5
    between = datetime.now(UTC)
    assert len(registry.quality.add_joined([row("new", True)])) == 1

    # 5 rows counted before ``between``, forgotten 2 at a time; the newer one stays
    assert registry.quality.forget_joins(between, batch_rows=2) == 5
    assert registry.quality.forget_joins(between, batch_rows=2) == 0
    assert registry.quality.add_joined([row("new", True)]) == []  # still counted
    # the windows keep what was counted; a forgotten key would be counted again
    assert registry.quality.windows("m", 1)[0].rows == 6
    assert len(registry.quality.add_joined([row("old-0", True)])) == 1


def test_the_monitor_prunes_past_the_longest_capture_retention_and_a_segment(
    any_registry: Registry, make_onnx: MakeOnnx
) -> None:
    registry = any_registry
    registry.models.register("m", Draft(make_onnx(), promote=True), actor="t")
    day = timedelta(days=1)
    registry.quality.set_policy("m", CapturePolicy(1.0, "drop", 30 * 86_400_000), actor="t")
    registry.quality.add_joined([row(f"j-{i}", True) for i in range(3)])
    counted = datetime.now(UTC)
    settings = PruneSettings(batch_rows=2)
    window_ms = 7 * 86_400_000  # the join window, shorter than the retention
    # kept 30 days (the retention) + 7 (a segment may outlive it)
    assert prune(registry.quality, window_ms, settings, counted + 36 * day) == 0
    assert prune(registry.quality, window_ms, settings, counted + 37 * day + day) == 3
