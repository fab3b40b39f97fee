"""Alembic owns the schema: up, down and up again, and the result matches the models."""

from __future__ import annotations

from datetime import UTC, datetime
from pathlib import Path

import pytest
import sqlalchemy as sa
from alembic.autogenerate import compare_metadata
from alembic.migration import MigrationContext
from alembic.script import ScriptDirectory
from sqlalchemy import Engine, inspect

from registry import db
from registry.tables import metadata

TABLES = {
    "models",
    "model_versions",
    "aliases",
    "alias_events",
    "metric_windows",
    "rollbacks",
    "retrain_runs",
    "schedules",
    "schedule_fires",
    "audit_log",
    "tenants",
    "tenant_grants",
}


def round_trip(engine: Engine) -> None:
    db.upgrade(engine)
    assert set(inspect(engine).get_table_names()) >= TABLES
    db.downgrade(engine)
    assert set(inspect(engine).get_table_names()) <= {"alembic_version"}
    db.upgrade(engine)
    with engine.connect() as connection:
        context = MigrationContext.configure(connection, opts={"compare_type": True})
        assert compare_metadata(context, metadata) == []
        assert context.get_current_revision() == head()


def head() -> str:
    heads = ScriptDirectory.from_config(db.alembic_config()).get_heads()
    assert len(heads) == 1, f"migrations must have one head, found {heads}"
    return heads[0]


def test_one_head_located_through_the_package() -> None:
    assert head() == "0007"


def test_sqlite_up_down_up_matches_models(tmp_path: Path) -> None:
    engine = db.make_engine(f"sqlite:///{tmp_path / 'nested' / 'registry.db'}")
    try:
        round_trip(engine)
    finally:
        engine.dispose()


@pytest.mark.postgres
def test_postgres_up_down_up_matches_models(pg_url: str) -> None:
    engine = db.make_engine(pg_url)
    try:
        round_trip(engine)
    finally:
        engine.dispose()


RUNS = sa.table(
    "retrain_runs",
    *(sa.column(name) for name in ("job_id", "model", "trigger", "status", "reason")),
    sa.column("promoted", sa.Boolean()),
    sa.column("params", sa.JSON()),
    sa.column("metrics", sa.JSON()),
    sa.column("started_at", sa.DateTime(timezone=True)),
    sa.column("error_code"),
)
FAILED = {"error_code": "INVALID_INPUT", "loss": 1.5}  # how the trainer kept a failure's code


def moves_error_codes(engine: Engine) -> None:
    """0002 moves a failed run's code out of its metrics into a column, and back down."""
    db.upgrade(engine, "0001")
    with engine.begin() as connection:
        connection.execute(
            sa.insert(RUNS), [run("failed", "error", FAILED), run("ok", "ok", {"error_code": 1})]
        )
    db.upgrade(engine)
    assert stored(engine, RUNS.c.error_code, RUNS.c.metrics) == {
        "failed": ("INVALID_INPUT", {"loss": 1.5}),
        "ok": (None, {"error_code": 1}),  # only failed runs hid their code in metrics
    }
    db.downgrade(engine, "0001")
    assert stored(engine, RUNS.c.metrics) == {"failed": (FAILED,), "ok": ({"error_code": 1},)}


def run(job_id: str, status: str, metrics: dict[str, object]) -> dict[str, object]:
    return {
        "job_id": job_id,
        "model": "digits",
        "trigger": "manual",
        "status": status,
        "reason": "",
        "promoted": False,
        "params": {},
        "metrics": metrics,
        "started_at": datetime(2025, 1, 1, tzinfo=UTC),
    }


def stored(engine: Engine, *columns: sa.ColumnElement[object]) -> dict[str, tuple[object, ...]]:
    """The values of ``columns`` by job id."""
    with engine.connect() as connection:
        rows = connection.execute(sa.select(RUNS.c.job_id, *columns))
        return {job_id: tuple(values) for job_id, *values in rows}


def test_sqlite_moves_error_codes_out_of_metrics_and_back(tmp_path: Path) -> None:
    engine = db.make_engine(f"sqlite:///{tmp_path / 'registry.db'}")
    try:
        moves_error_codes(engine)
    finally:
        engine.dispose()


@pytest.mark.postgres
def test_postgres_moves_error_codes_out_of_metrics_and_back(pg_url: str) -> None:
    engine = db.make_engine(pg_url)
    try:
        moves_error_codes(engine)
    finally:
        engine.dispose()


AUDIT = sa.table(
    "audit_log",
    *(sa.column(name) for name in ("actor", "action", "tenant")),
    sa.column("details", sa.JSON()),
    sa.column("at", sa.DateTime(timezone=True)),
)


def keeps_audited_tenants(engine: Engine) -> None:
    """0004's downgrade keeps an audit row's tenant in its details."""
    db.upgrade(engine, "0004")
    row = {"actor": "w", "action": "refusal", "at": datetime(2025, 1, 1, tzinfo=UTC)}
    with engine.begin() as connection:
        connection.execute(
            sa.insert(AUDIT),
            [
                row | {"tenant": "acme", "details": {"reason": "r"}},
                row | {"tenant": None, "details": {}},
            ],
        )
    db.downgrade(engine, "0003")
    with engine.connect() as connection:
        details = connection.execute(sa.select(AUDIT.c.details)).scalars().all()
    assert sorted(details, key=len) == [{}, {"reason": "r", "tenant": "acme"}]


def test_sqlite_downgrade_keeps_audited_tenants(tmp_path: Path) -> None:
    engine = db.make_engine(f"sqlite:///{tmp_path / 'registry.db'}")
    try:
        keeps_audited_tenants(engine)
    finally:
        engine.dispose()


@pytest.mark.postgres
def test_postgres_downgrade_keeps_audited_tenants(pg_url: str) -> None:
    engine = db.make_engine(pg_url)
    try:
        keeps_audited_tenants(engine)
    finally:
        engine.dispose()
