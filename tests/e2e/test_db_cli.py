"""``maas db upgrade``: the one-shot migration a deployment runs before its services."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pytest
from alembic.script import ScriptDirectory
from sqlalchemy import inspect

from maas.broker import free_port
from maas.cli import main
from registry import db


def test_upgrade_migrates_an_empty_database_and_is_safe_to_run_again(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    url = f"sqlite:///{tmp_path / 'registry.db'}"

    assert main(["db", "upgrade", "--database-url", url]) == 0
    assert main(["db", "upgrade", "--database-url", url]) == 0

    head = ScriptDirectory.from_config(db.alembic_config()).get_current_head()
    out = capsys.readouterr().out.splitlines()
    assert out == [
        f"registry database {url}: created its schema (revision {head})",
        f"registry database {url} is at the latest schema (revision {head})",
    ]
    engine = db.make_engine(url)
    try:
        assert {"models", "model_versions", "schedules"} <= set(inspect(engine).get_table_names())
    finally:
        engine.dispose()


def test_an_unreachable_database_is_one_line_and_exit_1_without_the_password(
    capsys: pytest.CaptureFixture[str],
) -> None:
    url = f"postgresql+psycopg://maas:s3cret@127.0.0.1:{free_port()}/maas"

    assert main(["db", "upgrade", "--database-url", url]) == 1

    err = capsys.readouterr().err
    assert err.count("\n") == 1, err
    assert err.startswith("error: the registry database postgresql+psycopg://maas:***@127.0.0.1:")
    assert "unreachable" in err and "MAAS_DATABASE_URL" in err
    assert "s3cret" not in err


def test_a_url_that_is_not_a_database_url_is_refused_in_one_line(
    capsys: pytest.CaptureFixture[str],
) -> None:
    assert main(["db", "upgrade", "--database-url", "kafka:9092"]) == 1
    err = capsys.readouterr().err
    assert err.startswith("error: database URL 'kafka:9092' is not a URL") and err.count("\n") == 1
    assert "SQLite" in err and "PostgreSQL" in err  # says which databases are supported


@pytest.mark.postgres
def test_a_postgres_url_as_heroku_prints_it_is_postgresql(
    pg_url: str, capsys: pytest.CaptureFixture[str]
) -> None:
    heroku = pg_url.replace("postgresql+psycopg://", "postgres://").replace(
        "postgresql://", "postgres://"
    )
    assert heroku.startswith("postgres://")

    assert main(["db", "upgrade", "--database-url", heroku]) == 0

    assert "created its schema" in capsys.readouterr().out


def test_an_unknown_scheme_is_refused_in_one_line(capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["db", "upgrade", "--database-url", "postgresx://db/maas"]) == 1
    err = capsys.readouterr().err
    assert err.startswith("error: database URL 'postgresx://db/maas' names postgresx"), err
    assert err.count("\n") == 1


@pytest.mark.postgres
def test_services_that_start_together_migrate_one_after_the_other(pg_url: str) -> None:
    """Without the advisory lock, two of four such processes failed on a unique violation."""
    command = [sys.executable, "-m", "maas.cli", "db", "upgrade", "--database-url", pg_url]
    processes = [
        subprocess.Popen(command, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)
        for _ in range(4)
    ]
    outputs = [p.communicate(timeout=90)[0] for p in processes]

    assert [p.returncode for p in processes] == [0] * 4, outputs
    engine = db.make_engine(pg_url)
    try:
        assert "model_versions" in inspect(engine).get_table_names()
    finally:
        engine.dispose()
