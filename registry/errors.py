"""The registry's errors: one root, a small tree, each message says how to fix it.

RegistryError
├── ModelNotFound
├── VersionNotFound
│   └── AliasNotFound
├── ArtifactError
├── InvalidName
├── ConflictError
│   └── TenantExists
├── TenantNotFound
├── IncompatibleSignature (moving an alias would break its clients; force to do it anyway)
├── InvalidSchedule
├── ScheduleNotFound
├── RunNotFound
├── TokenNotFound
├── SettingsError        (the settings cannot work, e.g. an unsupported database URL)
└── DatabaseError        (retriable: the database was unreachable or busy)

``retriable`` is read by the workers: a prediction job whose version lookup fails with
a retriable error is left unanswered and read again after a backoff (a bounded number
of times, then answered INTERNAL); the trainer tries a retrain job again likewise.
"""

from __future__ import annotations


class RegistryError(Exception):
    """Root of every error the registry raises; ``retriable`` says whether to try again."""

    retriable: bool = False


class ModelNotFound(RegistryError):
    """No model of that name is registered."""


class VersionNotFound(RegistryError):
    """The model exists but has no such version."""


class AliasNotFound(VersionNotFound):
    """The model has no such alias (so no version to resolve to)."""


class ArtifactError(RegistryError):
    """An artifact is missing, corrupt, unloadable or fails its checksum."""


class InvalidName(RegistryError):
    """A model name, alias, job id, tenant name or Kafka principal breaks the rules of
    :mod:`producer.contract.names`."""


class ConflictError(RegistryError):
    """The request contradicts the registry's state (e.g. archiving a promoted version)."""


class TenantExists(ConflictError):
    """A tenant of that name already exists."""


class TenantNotFound(RegistryError):
    """No tenant of that name exists."""


class IncompatibleSignature(RegistryError):
    """Moving an alias to a version would break its clients: input names, dtypes or
    shapes, or output names, differ from what the alias serves now."""


class InvalidSchedule(RegistryError):
    """A schedule's cron expression or promote mode is invalid."""


class SettingsError(RegistryError):
    """The registry's settings cannot work, e.g. a database URL it does not support."""


class DatabaseError(RegistryError):
    """The database could not be reached or stayed busy; safe to retry."""

    retriable = True


class ScheduleNotFound(RegistryError):
    """No schedule has that id."""


class RunNotFound(RegistryError):
    """No retraining run has that job id."""


class TokenNotFound(RegistryError):
    """No gateway token has that id."""
