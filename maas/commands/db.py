"""``maas db upgrade``: migrate the registry database once, before the services start."""

from __future__ import annotations

import argparse
import sys

from alembic.runtime.migration import MigrationContext
from sqlalchemy import Engine
from sqlalchemy.exc import ArgumentError, OperationalError

from maas.commands.common import Subparsers, add_registry_options, add_verb_group, registry_settings
from registry import db


def register(subparsers: Subparsers) -> None:
    verbs = add_verb_group(
        subparsers,
        "db",
        summary="registry database: apply the migrations",
        description="The registry's schema belongs to its Alembic migrations.",
    )
    upgrade = verbs.add_parser(
        "upgrade",
        help="migrate the registry database to the latest schema, then exit",
        description="Apply every pending migration and exit: the one-shot job that runs "
        "before a deployment's workers, trainer and scheduler start (compose.yaml's "
        "`migrate`, the Kubernetes Job). Safe to run again; a database already at the "
        "latest schema is left as it is.",
    )
    add_registry_options(upgrade)
    upgrade.set_defaults(func=run_upgrade)


def run_upgrade(args: argparse.Namespace) -> int:
    database_url = registry_settings(args).database_url
    try:
        engine = db.make_engine(database_url)
    except ArgumentError as exc:  # NoSuchModuleError too: an unknown dialect or driver
        return _fail(f"MAAS_DATABASE_URL is not a database URL that maas can use ({exc})")
    except OSError as exc:  # SQLite: the database's folder cannot be made
        return _fail(f"the registry database cannot be created ({exc})")
    url = engine.url.render_as_string(hide_password=True)
    try:
        before = _revision(engine)
        db.upgrade(engine)
        revision = _revision(engine)
    except OperationalError as exc:
        reason = str(exc.orig or exc).strip().splitlines()[0]
        return _fail(
            f"the registry database {url} is unreachable ({reason}); check "
            "MAAS_DATABASE_URL or --database-url and that the server is running"
        )
    finally:
        engine.dispose()
    print(_outcome(url, before, revision))
    return 0


def _outcome(url: str, before: str | None, after: str | None) -> str:
    """What the upgrade did: created the schema, migrated it, or found it current."""
    if before is None:
        return f"registry database {url}: created its schema (revision {after})"
    if before != after:
        return f"registry database {url}: migrated from revision {before} to {after}"
    return f"registry database {url} is at the latest schema (revision {after})"


def _revision(engine: Engine) -> str | None:
    with engine.connect() as connection:
        return MigrationContext.configure(connection).get_current_revision()


def _fail(message: str) -> int:
    print(f"error: {message}", file=sys.stderr)
    return 1
