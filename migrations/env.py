"""Alembic environment for the registry.

Run programmatically by ``registry.db.upgrade`` (the connection arrives in
``config.attributes["connection"]``) or from the command line with ``alembic``,
where the URL comes from ``-x url=...``, ``MAAS_DATABASE_URL`` or the default.
"""

from __future__ import annotations

from logging.config import fileConfig

from alembic import context
from sqlalchemy import Connection

from registry.db import make_engine
from registry.settings import RegistrySettings
from registry.tables import metadata


def configure_logging() -> None:
    """Log as alembic.ini says, but only when run from the command line."""
    config = context.config
    if config.config_file_name is not None and "connection" not in config.attributes:
        fileConfig(config.config_file_name, disable_existing_loggers=False)


def run_migrations(connection: Connection) -> None:
    context.configure(
        connection=connection,
        target_metadata=metadata,
        render_as_batch=True,  # SQLite alters tables by copying them
        compare_type=True,
    )
    with context.begin_transaction():
        context.run_migrations()


def database_url() -> str:
    url = context.get_x_argument(as_dictionary=True).get("url")
    return (
        url
        or context.config.get_main_option("sqlalchemy.url")
        or RegistrySettings.from_env().database_url
    )


def run_online() -> None:
    connection = context.config.attributes.get("connection")
    if connection is not None:
        run_migrations(connection)
        return
    engine = make_engine(database_url())
    try:
        with engine.connect() as connection:
            run_migrations(connection)
    finally:
        engine.dispose()


def run_offline() -> None:
    context.configure(url=database_url(), target_metadata=metadata, literal_binds=True)
    with context.begin_transaction():
        context.run_migrations()


configure_logging()
if context.is_offline_mode():
    run_offline()
else:
    run_online()
