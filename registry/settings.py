"""Registry settings: one frozen dataclass, built once at the entrypoint."""

from __future__ import annotations

import os
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path

DEFAULT_DATABASE_URL = "sqlite:///./.maas/registry.db"
DEFAULT_ARTIFACT_DIR = "./.maas/artifacts"


@dataclass(frozen=True, slots=True)
class RegistrySettings:
    """Where the registry keeps its rows (``database_url``) and its artifacts."""

    database_url: str = DEFAULT_DATABASE_URL
    artifact_dir: Path = Path(DEFAULT_ARTIFACT_DIR)

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
