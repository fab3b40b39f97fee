"""Concurrency on PostgreSQL: version numbers and schedule fires under real races."""

from __future__ import annotations

import multiprocessing
import threading
from collections.abc import Callable
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import pytest

from registry import MetricWindow, Registry, RegistrySettings
from registry.drafts import Draft

pytestmark = pytest.mark.postgres

MakeOnnx = Callable[..., Path]
T0 = datetime(2025, 1, 1, tzinfo=UTC)


def test_flow_on_postgres(pg_registry: Registry, make_onnx: MakeOnnx) -> None:
    pg_registry.models.register("digits", Draft(make_onnx(), promote=True), actor="ann")
    pg_registry.models.register("digits", Draft(make_onnx(), promote=True), actor="ann")
    move = pg_registry.models.rollback("digits", actor="ann", reason="bad")
    assert (move.version, move.previous_version) == (1, 2)
    assert pg_registry.models.resolve("digits").created_at.tzinfo is not None
    window = MetricWindow(
        "digits", 1, "w:1", T0, T0 + timedelta(seconds=10), 30, 60, {"EXPIRED": 1}
    )
    pg_registry.metrics.record_windows([window])
    assert pg_registry.metrics.windows("digits", 1, since=T0) == [window]
    run, created = pg_registry.runs.start_run("j", "digits", trigger="manual")
    again, created_again = pg_registry.runs.start_run("j", "digits", trigger="manual")
    assert created and not created_again  # a run started again counts its attempts
    assert (again.job_id, again.status, run.attempts, again.attempts) == ("j", "running", 1, 2)


def test_concurrent_registrations_get_distinct_versions(
    pg_url: str, tmp_path: Path, make_onnx: MakeOnnx
) -> None:
    settings = RegistrySettings(database_url=pg_url, artifact_dir=tmp_path / "artifacts")
    Registry.open(settings).close()  # migrate once, before the race
    artifacts = [make_onnx(seed=i % 3) for i in range(16)]  # equal content races in put too
    results: list[int] = []
    barrier = threading.Barrier(4)

    def writer(mine: list[Path]) -> None:
        with Registry.open(settings, migrate=False) as registry:
            barrier.wait()
            results.extend(
                registry.models.register("race", Draft(a), actor="t").version for a in mine
            )

    threads = [threading.Thread(target=writer, args=(artifacts[i::4],)) for i in range(4)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(timeout=60)
    assert sorted(results) == list(range(1, 17))
    with Registry.open(settings, migrate=False) as registry:
        assert [v.version for v in registry.models.versions("race")] == list(range(1, 17))


def claimer(url: str, artifacts: str, nows: list[datetime], barrier: Any, out: Any) -> None:
    settings = RegistrySettings(database_url=url, artifact_dir=Path(artifacts))
    with Registry.open(settings, migrate=False) as registry:
        barrier.wait()
        claimed = [(s.id, due) for now in nows for s, due in registry.runs.claim_due(now)]
    out.put(claimed)


def test_three_schedulers_fire_each_due_time_exactly_once(pg_url: str, tmp_path: Path) -> None:
    settings = RegistrySettings(database_url=pg_url, artifact_dir=tmp_path / "artifacts")
    with Registry.open(settings) as registry:
        ids = [
            registry.runs.add_schedule(f"m{i}", "* * * * *", actor="t", now=T0).id for i in range(6)
        ]
    nows = [T0 + timedelta(minutes=m, seconds=5) for m in range(1, 6)]
    context = multiprocessing.get_context("fork")
    barrier, out = context.Barrier(3), context.Queue()
    args = (pg_url, str(settings.artifact_dir), nows, barrier, out)
    processes = [context.Process(target=claimer, args=args) for _ in range(3)]
    for process in processes:
        process.start()
    per_process = [out.get(timeout=60) for _ in processes]
    claims = [claim for p in per_process for claim in p]
    for process in processes:
        process.join(timeout=30)
        assert process.exitcode == 0
    expected = {(i, T0 + timedelta(minutes=m)) for i in ids for m in range(1, 6)}
    assert len(claims) == len(expected)  # no due time claimed twice
    assert set(claims) == expected  # and none missed
    with Registry.open(settings, migrate=False) as registry:
        assert {s.next_fire_at for s in registry.runs.schedules()} == {T0 + timedelta(minutes=6)}


def test_missed_fires_fire_once_on_postgres(pg_registry: Registry) -> None:
    pg_registry.runs.add_schedule("digits", "*/5 * * * *", actor="ann", now=T0)
    back = T0 + timedelta(hours=3, minutes=1)
    assert [due for _, due in pg_registry.runs.claim_due(back)] == [T0 + timedelta(hours=3)]
    assert pg_registry.runs.claim_due(back) == []
