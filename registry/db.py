"""The database under the stores: engines, one managed session per call, migrations, time.

Every store call runs in one session (one transaction) from :meth:`Database.session`,
which turns an unreachable or busy database into a :class:`DatabaseError`. A write that
can lose a unique-constraint race to another writer (numbering a version, creating a
model) runs through :func:`retrying`. Timestamps are aware UTC datetimes throughout;
:func:`as_utc` is the one place that reads a naive one as UTC.
"""

from __future__ import annotations

import random
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from datetime import UTC, datetime
from pathlib import Path
from typing import Any, TypeVar

from alembic import command
from alembic.config import Config
from sqlalchemy import Engine, create_engine, event, text
from sqlalchemy.exc import IntegrityError, OperationalError
from sqlalchemy.orm import Session, sessionmaker

import migrations
from registry.errors import ConflictError, DatabaseError
from registry.settings import database_url as parse_url

SQLITE_BUSY_TIMEOUT_MS = 15_000
# The PostgreSQL advisory lock that migrations hold (any key no other application uses).
MIGRATION_LOCK_KEY = 0x6D616173  # "maas"
MAX_ATTEMPTS = 20
T = TypeVar("T")


def utcnow() -> datetime:
    return datetime.now(UTC)


def as_utc(moment: datetime) -> datetime:
    """``moment`` as an aware UTC datetime; a naive one is taken to be UTC already."""
    return moment.replace(tzinfo=UTC) if moment.tzinfo is None else moment.astimezone(UTC)


class Database:
    """One engine and its sessions, shared by every store of a registry."""

    def __init__(self, engine: Engine) -> None:
        self.engine = engine
        self._sessions = sessionmaker(engine, expire_on_commit=False)

    @classmethod
    def open(cls, database_url: str, *, migrate: bool = True) -> Database:
        """Connect to ``database_url``, migrating it to head unless ``migrate=False``."""
        engine = make_engine(database_url)
        try:
            if migrate:
                upgrade(engine)
        except OperationalError as exc:
            engine.dispose()
            raise _unavailable(engine, exc) from exc
        return cls(engine)

    @contextmanager
    def session(self) -> Iterator[Session]:
        """One transaction: committed when the block ends, rolled back if it raises."""
        try:
            with self._sessions.begin() as session:
                yield session
        except OperationalError as exc:
            raise _unavailable(self.engine, exc) from exc

    def close(self) -> None:
        self.engine.dispose()


def retrying(attempt: Callable[[], T], what: str) -> T:
    """Run ``attempt`` (one transaction) again when it loses a unique-constraint race."""
    for n in range(MAX_ATTEMPTS):
        try:
            return attempt()
        except IntegrityError:
            time.sleep(random.uniform(0, 0.002 * (n + 1)))
    raise ConflictError(f"{what} kept conflicting with concurrent writers; try again")


def _unavailable(engine: Engine, exc: OperationalError) -> DatabaseError:
    url = engine.url.render_as_string(hide_password=True)
    return DatabaseError(
        f"registry database {url} is unavailable ({str(exc.orig).strip().splitlines()[0]}); "
        "check MAAS_DATABASE_URL or --database-url and that the server is running"
    )


def make_engine(database_url: str) -> Engine:
    """An engine for ``database_url`` (one the registry supports, else
    :class:`~registry.errors.SettingsError`); SQLite gets WAL, a busy timeout and
    foreign keys, and the directory of its file is created."""
    url = parse_url(database_url)
    if url.get_backend_name() != "sqlite":
        return create_engine(url, pool_pre_ping=True)
    if url.database and url.database != ":memory:":
        _make_parent(Path(url.database))
    engine = create_engine(url, connect_args={"timeout": SQLITE_BUSY_TIMEOUT_MS / 1000})
    event.listen(engine, "connect", _sqlite_on_connect)
    event.listen(engine, "begin", _sqlite_on_begin)
    return engine


def _make_parent(file: Path) -> None:
    try:
        file.parent.mkdir(parents=True, exist_ok=True)
    except OSError as exc:
        raise DatabaseError(
            f"cannot create {file.parent} for the registry database {file}: {exc.strerror}"
        ) from exc


def _sqlite_on_connect(dbapi_connection: Any, _record: Any) -> None:
    # Let SQLAlchemy, not pysqlite, issue BEGIN, so that a write transaction can take
    # the write lock up front (BEGIN IMMEDIATE) instead of failing to upgrade later.
    dbapi_connection.isolation_level = None
    cursor = dbapi_connection.cursor()
    cursor.execute("PRAGMA journal_mode=WAL")
    cursor.execute(f"PRAGMA busy_timeout={SQLITE_BUSY_TIMEOUT_MS}")
    cursor.execute("PRAGMA foreign_keys=ON")
    cursor.execute("PRAGMA synchronous=NORMAL")
    cursor.close()


def _sqlite_on_begin(connection: Any) -> None:
    connection.exec_driver_sql("BEGIN IMMEDIATE")


def alembic_config(engine: Engine | None = None) -> Config:
    """Alembic configuration located through the installed ``migrations`` package."""
    config = Config()
    config.set_main_option("script_location", str(Path(migrations.__file__).parent))
    if engine is not None:
        config.set_main_option(
            "sqlalchemy.url", engine.url.render_as_string(hide_password=False).replace("%", "%%")
        )
    return config


def upgrade(engine: Engine, revision: str = "head") -> None:
    """Migrate the database behind ``engine`` to ``revision`` (default: head)."""
    _migrate(engine, command.upgrade, revision)


def downgrade(engine: Engine, revision: str = "base") -> None:
    """Migrate the database behind ``engine`` down to ``revision`` (default: base)."""
    _migrate(engine, command.downgrade, revision)


def _migrate(engine: Engine, step: Callable[[Config, str], None], revision: str) -> None:
    """Run an Alembic ``step`` on one connection of ``engine``, in one transaction.

    Processes that start together migrate one after the other, never at once: on
    PostgreSQL under an advisory lock held until the step commits, on SQLite under the
    write lock that every transaction takes first. The ones that come later find the
    schema at ``revision`` and change nothing.
    """
    with engine.begin() as connection:
        if connection.dialect.name == "postgresql":
            connection.execute(
                text("SELECT pg_advisory_xact_lock(:key)"), {"key": MIGRATION_LOCK_KEY}
            )
        config = alembic_config(engine)
        config.attributes["connection"] = connection
        step(config, revision)
