"""Registry settings: one frozen dataclass, built once at the entrypoint.

The registry runs on SQLite (the embedded default, a file relative to the current
directory unless the URL gives an absolute path) or on PostgreSQL through psycopg 3.
A URL for anything else is refused when the settings are built, with a message that
says what is supported.
"""

from __future__ import annotations

import importlib.util
import os
import re
import socket
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING

from registry.errors import SettingsError

if TYPE_CHECKING:  # SQLAlchemy is imported when a URL is parsed, not by `maas --help`
    from sqlalchemy.engine import URL

DEFAULT_DATABASE_URL = "sqlite:///./.maas/registry.db"
DEFAULT_ARTIFACT_DIR = "./.maas/artifacts"
SUPPORTED_DATABASES = (
    "SQLite (sqlite:///path/to/registry.db, relative to the current directory, or "
    "sqlite:////absolute/path/registry.db) and PostgreSQL "
    "(postgresql+psycopg://user:password@host:5432/database)"
)
# (backend, driver) pairs the registry runs on; ``postgresql://`` means psycopg 3.
_SUPPORTED = {("sqlite", "pysqlite"), ("postgresql", "psycopg")}
# ``postgres://`` and ``postgres+driver://``: the older spelling SQLAlchemy dropped.
_POSTGRES_ALIAS = re.compile(r"^postgres(?=[+:])")


@dataclass(frozen=True, slots=True)
class RegistrySettings:
    """Where the registry keeps its rows (``database_url``) and its artifacts."""

    database_url: str = DEFAULT_DATABASE_URL
    artifact_dir: Path = Path(DEFAULT_ARTIFACT_DIR)

    def __post_init__(self) -> None:
        database_url(self.database_url)

    def __repr__(self) -> str:
        """Without the database's password: settings may be logged."""
        return f"RegistrySettings(location={self.location!r}, artifact_dir={self.artifact_dir!r})"

    @classmethod
    def from_env(
        cls,
        env: Mapping[str, str] | None = None,
        *,
        database_url: str | None = None,
        artifact_dir: str | Path | None = None,
    ) -> RegistrySettings:
        """Settings from ``MAAS_DATABASE_URL`` / ``MAAS_ARTIFACT_DIR``; arguments win."""
        env = os.environ if env is None else env
        url = database_url or env.get("MAAS_DATABASE_URL") or DEFAULT_DATABASE_URL
        directory = artifact_dir or env.get("MAAS_ARTIFACT_DIR") or DEFAULT_ARTIFACT_DIR
        return cls(database_url=url, artifact_dir=Path(directory))

    @property
    def identity(self) -> str:
        """Which registry this is, as control events name it (``ControlEvent.registry``):
        a SQLite file as ``host:/absolute/path``, else ``host:port/database`` of the URL
        (no user, password or driver). Two processes that print different identities may
        read different registries: models registered through one are unknown to the other."""
        path = sqlite_path(self.database_url)
        if path is not None:
            return f"{socket.gethostname()}:{path.resolve()}"
        url = database_url(self.database_url)
        if url.get_backend_name() == "sqlite":
            return "sqlite in memory"
        return f"{url.host or 'localhost'}:{url.port or 5432}/{url.database or ''}"

    @property
    def location(self) -> str:
        """Where the rows are, for people: a SQLite file's absolute path, else the URL
        without its password."""
        path = sqlite_path(self.database_url)
        if path is not None:
            return f"{path.resolve()} (SQLite)"
        return database_url(self.database_url).render_as_string(hide_password=True)


def database_url(text: str) -> URL:
    """``text`` parsed, if the registry supports it; else :class:`SettingsError`.

    ``postgres://`` (the scheme Heroku and many tools print) is PostgreSQL: read as
    ``postgresql://``, which the registry runs through psycopg 3.
    """
    from sqlalchemy.engine import make_url
    from sqlalchemy.exc import ArgumentError

    try:
        url = make_url(_POSTGRES_ALIAS.sub("postgresql", text, count=1))
    except ArgumentError:
        raise SettingsError(
            f"database URL {_redacted(text)!r} is not a URL; the registry runs on "
            f"{SUPPORTED_DATABASES}"
        ) from None
    backend = url.get_backend_name()
    if (backend, _driver(url)) not in _SUPPORTED:
        raise SettingsError(
            f"database URL {url.render_as_string(hide_password=True)!r} names "
            f"{url.drivername}, which the registry does not support; it runs on "
            f"{SUPPORTED_DATABASES}"
        )
    if backend == "postgresql" and importlib.util.find_spec("psycopg") is None:
        raise SettingsError("a PostgreSQL registry needs psycopg 3: pip install 'maas[postgres]'")
    return url


def _driver(url: URL) -> str | None:
    """The URL's driver, or None for a scheme SQLAlchemy has no dialect for."""
    from sqlalchemy.exc import NoSuchModuleError

    try:
        return url.get_driver_name()
    except NoSuchModuleError:
        return None


def sqlite_path(text: str) -> Path | None:
    """The file of a SQLite URL (None for other databases and for in-memory SQLite)."""
    url = database_url(text)
    if url.get_backend_name() != "sqlite" or url.database in (None, "", ":memory:"):
        return None
    return Path(url.database)


def _redacted(text: str) -> str:
    """``text`` without what could be a password (``//user:secret@`` becomes ``//***@``)."""
    return re.sub(r"//[^/@]*@", "//***@", text)
