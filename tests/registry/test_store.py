"""The registry store on SQLite: versions, aliases, history, archive, metrics, runs, audit."""

from __future__ import annotations

import dataclasses
import threading
from collections.abc import Callable
from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest

from registry import (
    AliasMove,
    AliasNotFound,
    ArtifactError,
    ConflictError,
    MetricWindow,
    ModelNotFound,
    Registry,
    RegistrySettings,
    RunNotFound,
    VersionNotFound,
)
from registry.drafts import Draft
from registry.runs import RunOutcome

MakeOnnx = Callable[..., Path]
T0 = datetime(2025, 1, 1, tzinfo=UTC)


def test_register_numbers_versions_and_records_lineage(
    registry: Registry, make_onnx: MakeOnnx
) -> None:
    first = registry.models.register("digits", Draft(make_onnx(), reason="baseline"), actor="ann")
    second = registry.models.register(
        "digits",
        Draft(
            make_onnx(),
            parent_version=1,
            dataset_hash="abc",
            params={"epochs": 3},
            metrics={"accuracy": 0.9},
        ),
        actor="bob",
    )
    assert (first.version, second.version) == (1, 2)
    assert second.parent_version == 1 and second.dataset_hash == "abc"
    assert second.params == {"epochs": 3} and second.metrics == {"accuracy": 0.9}
    assert second.format == "onnx" and second.status == "ready"
    assert [t.name for t in second.signature.inputs] == ["x"]
    assert second.signature.inputs[0].dtype == "float32"
    assert second.signature.inputs[0].shape == ("batch", 4)
    assert second.path.is_file() and second.sha256 in str(second.path)
    assert second.created_at.tzinfo is not None
    assert registry.models.get_version("digits", 2) == second
    assert [v.version for v in registry.models.versions("digits")] == [1, 2]
    assert registry.models.get_model("digits").created_by == "ann"


def test_promote_resolve_rollback_and_history(registry: Registry, make_onnx: MakeOnnx) -> None:
    for _ in range(3):
        registry.models.register("digits", Draft(make_onnx(), promote=True), actor="ann")
    assert registry.models.resolve("digits").version == 3
    back = registry.models.rollback("digits", actor="ann", reason="accuracy dropped")
    assert (back.version, back.previous_version, back.kind) == (2, 3, "rollback")
    again = registry.models.rollback("digits", actor="ann")
    assert again.version == 1  # rolls back past the previous promotion, not forward to 3
    with pytest.raises(ConflictError, match="--to VERSION"):
        registry.models.rollback("digits", actor="ann")
    forward = registry.models.rollback("digits", to=3, actor="ann")
    assert forward.version == 3
    history = registry.models.alias_history("digits", "production")
    assert [(m.previous_version, m.version, m.kind) for m in history] == [
        (None, 1, "promote"),
        (1, 2, "promote"),
        (2, 3, "promote"),
        (3, 2, "rollback"),
        (2, 1, "rollback"),
        (1, 3, "rollback"),
    ]
    records = registry.models.rollbacks("digits")
    assert [(r.from_version, r.to_version) for r in records] == [(3, 2), (2, 1), (1, 3)]
    assert records[0].reason == "accuracy dropped" and not records[0].automatic


def test_aliases_are_independent(registry: Registry, make_onnx: MakeOnnx) -> None:
    registry.models.register("digits", Draft(make_onnx(), promote=True), actor="ann")
    registry.models.register(
        "digits", Draft(make_onnx(), promote=True), actor="ann", alias="staging"
    )
    assert registry.models.aliases("digits") == {"production": 1, "staging": 2}
    assert registry.models.resolve("digits", "staging").version == 2
    assert [m.alias for m in registry.models.alias_history("digits")] == ["production", "staging"]
    summary = registry.models.list_models()
    assert [(s.name, s.n_versions, s.latest_version, s.aliases) for s in summary] == [
        ("digits", 2, 2, {"production": 1, "staging": 2})
    ]


def test_archive_refuses_promoted_versions(registry: Registry, make_onnx: MakeOnnx) -> None:
    registry.models.register("digits", Draft(make_onnx(), promote=True), actor="ann")
    registry.models.register("digits", Draft(make_onnx()), actor="ann")
    with pytest.raises(ConflictError, match="alias 'production' points to it"):
        registry.models.archive("digits", 1, actor="ann")
    archived = registry.models.archive("digits", 2, actor="ann", reason="superseded")
    assert archived.status == "archived"
    with pytest.raises(ConflictError, match="archived"):
        registry.models.promote("digits", 2, actor="ann")


def test_errors_say_what_is_wrong_and_how_to_fix_it(
    registry: Registry, make_onnx: MakeOnnx
) -> None:
    with pytest.raises(ModelNotFound, match="maas models list"):
        registry.models.resolve("nope")
    for _ in range(3):
        registry.models.register("digits", Draft(make_onnx()), actor="ann")
    with pytest.raises(VersionNotFound) as caught:
        registry.models.get_version("digits", 9)
    assert str(caught.value) == (
        "model 'digits' has no version 9; versions are 1-3 (maas models show digits)"
    )
    with pytest.raises(AliasNotFound, match="promote a version first"):
        registry.models.resolve("digits")
    with pytest.raises(VersionNotFound):  # AliasNotFound is a VersionNotFound
        registry.models.resolve("digits", "canary")
    with pytest.raises(AliasNotFound):
        registry.models.rollback("digits", actor="ann")


def test_every_mutation_is_audited(registry: Registry, make_onnx: MakeOnnx) -> None:
    registry.models.register("digits", Draft(make_onnx(), reason="first"), actor="ann")
    registry.models.register("digits", Draft(make_onnx()), actor="ann")
    registry.models.promote("digits", 1, actor="bob", reason="go")
    registry.models.promote("digits", 2, actor="bob")
    registry.models.rollback("digits", actor="cat", reason="bad")
    registry.models.archive("digits", 2, actor="dan", reason="old")
    schedule = registry.runs.add_schedule("digits", "0 3 * * *", actor="eve")
    registry.runs.remove_schedule(schedule.id, actor="eve")
    entries = registry.models.audit("digits")
    assert [e.action for e in reversed(entries)] == [
        "register",
        "register",
        "promote",
        "promote",
        "rollback",
        "archive",
        "schedule.add",
        "schedule.remove",
    ]
    assert entries[-1].details["reason"] == "first" and entries[-1].actor == "ann"
    assert entries[2].actor == "dan" and entries[2].details["reason"] == "old"
    assert len(registry.models.audit(limit=3)) == 3


def test_alias_move_hook_sees_committed_moves(
    registry_settings: RegistrySettings, make_onnx: MakeOnnx
) -> None:
    seen: list[AliasMove] = []

    def hook(move: AliasMove) -> None:
        assert probe.models.resolve(move.model, move.alias).version == move.version
        seen.append(move)

    settings = registry_settings
    with Registry.open(settings) as probe, Registry.open(settings, on_alias_move=hook) as registry:
        registry.models.register("digits", Draft(make_onnx(), promote=True), actor="ann")
        registry.models.register("digits", Draft(make_onnx()), actor="ann")
        registry.models.promote("digits", 2, actor="ann")
        registry.models.roll_back_automatically(
            "digits", alias="production", to=1, actor="ann", reason="bad promotion"
        )
    assert [(m.kind, m.version, m.automatic) for m in seen] == [
        ("promote", 1, False),
        ("promote", 2, False),
        ("rollback", 1, True),
    ]


def test_corrupt_artifact_registers_nothing(registry: Registry, tmp_path: Path) -> None:
    bad = tmp_path / "broken.onnx"
    bad.write_bytes(b"definitely not protobuf")
    with pytest.raises(ArtifactError, match=r"broken\.onnx is not a loadable ONNX model"):
        registry.models.register("digits", Draft(bad), actor="ann")
    with pytest.raises(ModelNotFound):
        registry.models.versions("digits")


def window(version: int, start: datetime, *, jobs: int = 10, errors: int = 0) -> MetricWindow:
    return MetricWindow(
        model="digits",
        version=version,
        worker="host:1",
        start=start,
        end=start + timedelta(seconds=10),
        jobs=jobs,
        rows=jobs * 4,
        errors={"INTERNAL": errors} if errors else {},
        infer_ms_p95=5.0,
        mean_batch_size=4.0,
        rows_per_s=4.0,
    )


def test_metric_windows_round_trip(registry: Registry, make_onnx: MakeOnnx) -> None:
    registry.models.register("digits", Draft(make_onnx()), actor="ann")
    registry.models.register("digits", Draft(make_onnx()), actor="ann")
    windows = [window(1, T0), window(2, T0 + timedelta(seconds=10), errors=2), window(2, T0)]
    registry.metrics.record_windows(windows)
    assert registry.metrics.windows("digits") == [windows[0], windows[2], windows[1]]
    assert registry.metrics.windows("digits", 2, since=T0 + timedelta(seconds=5)) == [windows[1]]
    assert registry.metrics.windows("digits", 2)[1].errors == {"INTERNAL": 2}
    with pytest.raises(ModelNotFound):
        registry.metrics.record_windows(
            [window(1, T0).__class__(**{**_fields(window(1, T0)), "model": "x"})]
        )


def _fields(item: MetricWindow) -> dict[str, object]:
    return {name: getattr(item, name) for name in item.__dataclass_fields__}


def test_runs_are_idempotent_by_job_id(registry: Registry) -> None:
    run, created = registry.runs.start_run(
        "job-1", "digits", trigger="manual", params={"epochs": 2}
    )
    assert created and run.status == "running" and run.params == {"epochs": 2}
    again, created_again = registry.runs.start_run("job-1", "digits", trigger="schedule", params={})
    assert not created_again and again == dataclasses.replace(run, attempts=2)  # one more start
    done = registry.runs.finish_run("job-1", RunOutcome("error", reason="dataset missing"))
    assert done.status == "error" and done.finished_at is not None
    assert registry.runs.get_run("job-1") == done
    assert registry.runs.get_run("job-2") is None
    with pytest.raises(ConflictError, match="already finished"):
        registry.runs.finish_run("job-1", RunOutcome("ok"))
    with pytest.raises(RunNotFound):
        registry.runs.finish_run("job-2", RunOutcome("ok"))


@pytest.fixture(params=["sqlite", pytest.param("postgres", marks=pytest.mark.postgres)])
def any_registry(request: pytest.FixtureRequest) -> Registry:
    """The SQLite registry, then (marked ``postgres``) one on PostgreSQL."""
    registry: Registry = request.getfixturevalue(
        "registry" if request.param == "sqlite" else "pg_registry"
    )
    return registry


def test_a_failed_run_stores_and_returns_its_error_code(any_registry: Registry) -> None:
    runs = any_registry.runs
    runs.start_run("bad", "digits", trigger="manual")
    failed = runs.finish_run(
        "bad", RunOutcome("error", reason="epochs must be positive", error_code="INVALID_INPUT")
    )
    assert (failed.status, failed.error_code, failed.metrics) == ("error", "INVALID_INPUT", {})
    assert runs.get_run("bad") == failed
    runs.start_run("good", "digits", trigger="manual")
    with pytest.raises(ConflictError, match="only 'error' runs do"):
        runs.finish_run("good", RunOutcome("ok", error_code="INTERNAL"))
    done = runs.finish_run("good", RunOutcome("ok", version=None))
    assert done.error_code is None and runs.get_run("good") == done


def test_register_finishes_its_run_in_the_same_transaction(
    registry: Registry, make_onnx: MakeOnnx
) -> None:
    registry.runs.start_run("job-1", "digits", trigger="schedule")
    version = registry.models.register(
        "digits",
        Draft(make_onnx(), promote=True, metrics={"f1": 0.8}),
        actor="trainer",
        run_job_id="job-1",
    )
    run = registry.runs.get_run("job-1")
    assert run is not None
    assert (run.status, run.version, run.promoted, run.metrics) == ("ok", 1, True, {"f1": 0.8})
    assert version.version == 1
    with pytest.raises(RunNotFound):  # an unknown run rolls the whole registration back
        registry.models.register(
            "digits", Draft(make_onnx()), actor="trainer", run_job_id="missing"
        )
    assert [v.version for v in registry.models.versions("digits")] == [1]


def test_concurrent_writers_share_one_sqlite_file(
    registry_settings: RegistrySettings, make_onnx: MakeOnnx
) -> None:
    artifacts = [make_onnx() for _ in range(9)]
    barrier = threading.Barrier(3)
    numbers: list[int] = []

    def writer(mine: list[Path]) -> None:
        with Registry.open(registry_settings, migrate=False) as registry:
            barrier.wait()
            numbers.extend(
                registry.models.register("digits", Draft(a), actor="t").version for a in mine
            )

    Registry.open(registry_settings).close()
    threads = [threading.Thread(target=writer, args=(artifacts[i::3],)) for i in range(3)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(timeout=60)
    assert sorted(numbers) == list(range(1, 10))


def test_archive_hook(registry_settings: RegistrySettings, make_onnx: MakeOnnx) -> None:
    archived: list[int] = []
    with Registry.open(
        registry_settings, on_archive=lambda v: archived.append(v.version)
    ) as registry:
        registry.models.register("digits", Draft(make_onnx()), actor="ann")
        registry.models.archive("digits", 1, actor="ann")
    assert archived == [1]


def test_settings_from_env(tmp_path: Path) -> None:
    env = {"MAAS_DATABASE_URL": "sqlite:///x.db", "MAAS_ARTIFACT_DIR": str(tmp_path)}
    assert RegistrySettings.from_env(env) == RegistrySettings("sqlite:///x.db", tmp_path)
    override = RegistrySettings.from_env(env, database_url="sqlite:///y.db")
    assert override.database_url == "sqlite:///y.db"
    defaults = RegistrySettings.from_env({})
    assert defaults.database_url == "sqlite:///./.maas/registry.db"
    assert defaults.artifact_dir == Path(".maas/artifacts")


def test_two_stores_share_one_sqlite_file(tmp_path: Path, make_onnx: MakeOnnx) -> None:
    settings = RegistrySettings(
        f"sqlite:///{tmp_path / 'deep' / 'dir' / 'r.db'}", tmp_path / "artifacts"
    )
    with Registry.open(settings) as worker, Registry.open(settings) as cli:
        cli.models.register("digits", Draft(make_onnx(), promote=True), actor="ann")
        assert worker.models.resolve("digits").version == 1
