"""Alembic owns the schema: up, down and up again, and the result matches the models."""

from __future__ import annotations

from pathlib import Path

import pytest
from alembic.autogenerate import compare_metadata
from alembic.migration import MigrationContext
from alembic.script import ScriptDirectory
from sqlalchemy import Engine, inspect

from registry import db
from registry.tables import metadata

pytest_plugins = ["tests.registry_fixtures"]

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
    assert head() == "0003"


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
