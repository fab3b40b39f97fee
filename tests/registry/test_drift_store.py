"""Reference profiles, drift windows and policies in the registry (SQLite and PostgreSQL)."""

from __future__ import annotations

from collections.abc import Callable
from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest

from registry import ModelNotFound, Registry, VersionNotFound
from registry.drafts import Draft, ReferenceDraft
from registry.drift import DriftWindow, Policy, Reference
from registry.errors import ConflictError

pytest_plugins = ["tests.registry_fixtures"]

MakeOnnx = Callable[..., Path]
T0 = datetime(2026, 12, 1, tzinfo=UTC)


def reference(version: int = 1, profile: str = '{"rows": 3}') -> Reference:
    return Reference("m", version, 3, "data digits.csv", profile, "ann", T0)


def test_a_version_holds_one_reference_and_a_new_one_replaces_it(
    any_registry: Registry, make_onnx: MakeOnnx
) -> None:
    any_registry.models.register("m", Draft(make_onnx()), actor="ann")
    store = any_registry.drift
    assert store.reference("m", 1) is None
    store.set_reference(reference())
    store.set_reference(reference(profile='{"rows": 4}'))
    stored = store.reference("m", 1)
    assert stored is not None and stored.profile == '{"rows": 4}' and stored.rows == 3
    with pytest.raises(VersionNotFound):
        store.set_reference(reference(version=7))
    with pytest.raises(ConflictError, match="at most"):
        store.set_reference(reference(profile="x" * 2_000_001))
    with pytest.raises(ModelNotFound):
        store.reference("nope", 1)


def test_windows_are_read_back_in_order(any_registry: Registry, make_onnx: MakeOnnx) -> None:
    any_registry.models.register("m", Draft(make_onnx()), actor="ann")
    windows = [
        DriftWindow("m", 1, T0 + timedelta(minutes=i), T0 + timedelta(minutes=i + 1), 100, i / 10)
        for i in (2, 0, 1)
    ]
    any_registry.drift.record_windows(windows)
    read = any_registry.drift.windows("m", since=T0 + timedelta(minutes=1))
    assert [w.share_drifted for w in read] == [0.1, 0.2]
    assert any_registry.drift.windows("m", version=2) == []


def test_a_policy_fires_once_per_cooldown_however_many_claim_it(
    any_registry: Registry, make_onnx: MakeOnnx
) -> None:
    any_registry.models.register("m", Draft(make_onnx()), actor="ann")
    policy = any_registry.drift.set_policy(
        Policy("m", "drift > 0.25 for 3 windows", cooldown_s=3600), actor="ann"
    )
    again = any_registry.drift.set_policy(
        Policy("m", "drift > 0.25 for 3 windows", cooldown_s=60, dataset="digits"), actor="ann"
    )
    assert policy.id == again.id and again.cooldown_s == 60
    assert [p.dataset for p in any_registry.drift.policies("m")] == ["digits"]
    assert policy.id is not None
    claims = [any_registry.drift.claim_fire(policy.id, T0) for _ in range(3)]
    assert claims == [True, False, False]
    assert not any_registry.drift.claim_fire(policy.id, T0 + timedelta(seconds=59))
    assert any_registry.drift.claim_fire(policy.id, T0 + timedelta(seconds=61))
    any_registry.drift.remove_policy("m", policy.id, actor="ann")
    assert any_registry.drift.policies() == []
    with pytest.raises(ConflictError, match="has no policy"):
        any_registry.drift.remove_policy("m", policy.id, actor="ann")
    with pytest.raises(ConflictError, match="promote must be"):
        any_registry.drift.set_policy(Policy("m", "accuracy < 0.9", promote="maybe"), "ann")


def test_a_version_registered_with_a_reference_has_it_from_its_first_moment(
    any_registry: Registry, make_onnx: MakeOnnx
) -> None:
    draft = Draft(make_onnx(), reference=ReferenceDraft(42, "training split", '{"rows": 42}'))
    version = any_registry.models.register("m", draft, actor="trainer")
    stored = any_registry.drift.reference("m", version.version)
    assert stored is not None and (stored.rows, stored.source) == (42, "training split")
    assert stored.created_by == "trainer"
