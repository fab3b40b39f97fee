"""Promoting the version an alias already holds changes nothing, so rollback still works
(issue 28 item 4): on SQLite and PostgreSQL, and under three racing processes on PostgreSQL."""

from __future__ import annotations

import itertools
import multiprocessing
import random
from collections.abc import Callable
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import pytest
from sqlalchemy import create_engine, insert, select

from registry import AliasMove, ConflictError, MetricWindow, Registry, RegistrySettings
from registry.drafts import Draft
from registry.policy import RollbackPolicy, check_rollback, last_move
from registry.tables import AliasEventRow, ModelRow

MakeOnnx = Callable[..., Path]


def _moves(registry: Registry, name: str) -> list[tuple[int | None, int, str]]:
    history = registry.models.alias_history(name, "production")
    return [(m.previous_version, m.version, m.kind) for m in history]


def test_a_self_move_is_not_recorded_and_rollback_goes_to_the_last_other_version(
    any_registry: Registry, make_onnx: MakeOnnx
) -> None:
    models = any_registry.models
    models.register("m", Draft(make_onnx(), promote=True), actor="ann")
    models.register("m", Draft(make_onnx()), actor="ann")
    assert models.promote("m", 2, actor="ann").moved
    again = models.promote("m", 2, actor="ann")
    assert not again.moved and (again.previous_version, again.version) == (2, 2)
    assert _moves(any_registry, "m") == [(None, 1, "promote"), (1, 2, "promote")]
    back = models.rollback("m", actor="ann")
    assert (back.previous_version, back.version) == (2, 1)
    audit_kinds = [entry.action for entry in models.audit("m")]
    assert audit_kinds.count("promote") == 2  # the self-move left no audit row either


def test_a_self_move_left_by_an_older_registry_is_skipped(
    registry: Registry, registry_settings: RegistrySettings, make_onnx: MakeOnnx
) -> None:
    models = registry.models
    models.register("m", Draft(make_onnx(), promote=True), actor="ann")
    models.register("m", Draft(make_onnx(), promote=True), actor="ann")
    engine = create_engine(registry_settings.database_url)
    with engine.begin() as connection:  # the "2 -> 2" row issue 28 found
        model_id = connection.scalar(select(ModelRow.id).where(ModelRow.name == "m"))
        connection.execute(
            insert(AliasEventRow).values(
                model_id=model_id,
                alias="production",
                from_version=2,
                to_version=2,
                kind="promote",
                actor="old",
                at=datetime.now(UTC),
            )
        )
    engine.dispose()
    history = models.alias_history("m", "production")
    moved = last_move(history)
    assert moved is not None and (moved.previous_version, moved.version) == (1, 2)
    assert models.rollback("m", actor="ann").version == 1


def racer(url: str, artifacts: str, seed: int, barrier: Any, out: Any) -> None:
    """Twenty promotes and rollbacks in random order; every outcome reported."""
    settings = RegistrySettings(database_url=url, artifact_dir=Path(artifacts))
    rng = random.Random(seed)
    outcomes: list[tuple[str, str]] = []
    with Registry.open(settings, migrate=False) as registry:
        barrier.wait()
        for _ in range(20):
            kind = "promote" if rng.random() < 0.5 else "rollback"
            try:
                if kind == "promote":
                    registry.models.promote("race", rng.randint(1, 3), actor=f"p{seed}")
                else:
                    registry.models.rollback("race", actor=f"p{seed}")
                outcomes.append((kind, "ok"))
            except ConflictError as exc:
                outcomes.append((kind, str(exc)))
    out.put(outcomes)


@pytest.mark.postgres
def test_three_processes_promoting_and_rolling_back(
    pg_url: str, tmp_path: Path, make_onnx: MakeOnnx
) -> None:
    settings = RegistrySettings(database_url=pg_url, artifact_dir=tmp_path / "artifacts")
    with Registry.open(settings) as registry:
        for _ in range(3):
            registry.models.register("race", Draft(make_onnx(), promote=True), actor="ann")
    context = multiprocessing.get_context("fork")
    barrier, out = context.Barrier(3), context.Queue()
    processes = [
        context.Process(target=racer, args=(pg_url, str(settings.artifact_dir), i, barrier, out))
        for i in range(3)
    ]
    for process in processes:
        process.start()
    outcomes = [o for _ in processes for o in out.get(timeout=120)]
    for process in processes:
        process.join(timeout=30)
        assert process.exitcode == 0
    assert all(result == "ok" for kind, result in outcomes if kind == "promote")
    rollbacks = [result for kind, result in outcomes if kind == "rollback"]
    failed = [result for result in rollbacks if result != "ok"]
    # the one clear reason a rollback may fail: the holder was the alias's first version
    assert all("held no version before" in reason for reason in failed), failed
    assert len(rollbacks) - len(failed) > len(failed)
    with Registry.open(settings, migrate=False) as registry:
        history = registry.models.alias_history("race", "production")
    assert all(move.moved for move in history)  # no self-move recorded
    chained = itertools.pairwise(history)
    assert all(after.previous_version == before.version for before, after in chained)


def test_last_move_skips_self_moves() -> None:
    at = datetime.now(UTC)

    def move(frm: int | None, to: int) -> AliasMove:
        return AliasMove("m", "production", to, frm, "promote", "a", "", False, at)

    assert last_move([move(None, 1), move(1, 2), move(2, 2)]) == move(1, 2)
    assert last_move([]) is None


def test_a_broken_version_promoted_twice_is_still_rolled_back_automatically(
    any_registry: Registry, make_onnx: MakeOnnx
) -> None:
    models = any_registry.models
    models.register("m", Draft(make_onnx(), promote=True), actor="ann")
    models.register("m", Draft(make_onnx(), promote=True), actor="ann")
    models.promote("m", 2, actor="ann")  # the 2 -> 2 that made rollback fail every 10 s
    start = datetime.now(UTC)
    broken = MetricWindow("m", 2, "w", start, start, jobs=50, rows=50, errors={"INTERNAL": 20})
    any_registry.metrics.record_windows([broken])
    policy = RollbackPolicy(min_jobs=20)
    move = check_rollback(models, any_registry.metrics, "m", policy=policy)
    assert move is not None and (move.previous_version, move.version) == (2, 1)
    assert move.automatic and "error rate" in move.reason
