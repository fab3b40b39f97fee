"""The registry, opened once at an entrypoint: four stores over one database handle.

Like MLflow's tracking and registry stores, each store serves one concern; they share
the engine, so a process holds one connection pool however many stores it uses::

    with Registry.open(settings) as registry:
        Worker(kafka, registry.models, registry.metrics, worker_settings)

Components take the store they need (better: a Protocol of the methods they call),
never the whole registry.
"""

from __future__ import annotations

from registry.artifacts import ArtifactStore
from registry.db import Database
from registry.drift import DriftStore
from registry.metrics import MetricStore
from registry.models import AliasMoveHook, ArchiveHook, ModelStore
from registry.quality import QualityStore
from registry.runs import RunStore
from registry.settings import RegistrySettings
from registry.tenants import TenantStore
from registry.tokens import TokenStore


class Registry:
    """``models`` (versions, aliases, rollbacks, audit), ``runs`` (retraining runs and
    schedules), ``metrics`` (serving-metric windows) and ``tenants`` (tenants, their
    grants and refused jobs) and ``drift`` (reference profiles, drift windows and
    monitoring policies) and ``tokens`` (tenants' gateway tokens, hashed), sharing one :class:`Database`."""

    def __init__(self, database: Database, models: ModelStore) -> None:
        """``models`` must be a store over ``database``; :meth:`open` builds both."""
        self.database = database
        self.models = models
        self.runs = RunStore(database)
        self.metrics = MetricStore(database)
        self.tenants = TenantStore(database)
        self.drift = DriftStore(database)
        self.quality = QualityStore(database)  # capture policies, labelled quality
        self.tokens = TokenStore(database)

    @classmethod
    def open(
        cls,
        settings: RegistrySettings,
        *,
        migrate: bool = True,
        on_alias_move: AliasMoveHook | None = None,
        on_archive: ArchiveHook | None = None,
    ) -> Registry:
        """Connect to ``settings.database_url``, migrating it to head unless ``migrate=False``.

        ``on_alias_move`` / ``on_archive`` run after an alias move / an archive commits.
        """
        database = Database.open(settings.database_url, migrate=migrate)
        models = ModelStore(
            database,
            ArtifactStore(settings.artifact_dir),
            on_alias_move=on_alias_move,
            on_archive=on_archive,
        )
        return cls(database, models)

    def close(self) -> None:
        self.database.close()

    def __enter__(self) -> Registry:
        return self

    def __exit__(self, *exc_info: object) -> None:
        self.close()
