"""The model registry: versions, aliases, metrics, retraining runs, schedules, tenants,
audit.

Open it once with :meth:`Registry.open`; its four stores (:class:`ModelStore`,
:class:`RunStore`, :class:`MetricStore`, :class:`TenantStore`) share one database
handle.

Each name below is imported on first use, so that the registry's errors, entities and
name rules cost no SQLAlchemy import: the client verbs use them without the `worker`
extra installed.
"""

from __future__ import annotations

from importlib import import_module
from typing import TYPE_CHECKING, Any

__all__ = [
    "AliasMove",
    "AliasMoveHook",
    "AliasNotFound",
    "ArchiveHook",
    "ArtifactError",
    "ArtifactStore",
    "AuditEntry",
    "CapturePolicy",
    "ConflictError",
    "DatabaseError",
    "Decision",
    "Draft",
    "IncompatibleSignature",
    "InvalidName",
    "InvalidSchedule",
    "Joined",
    "MetricStore",
    "MetricWindow",
    "Model",
    "ModelNotFound",
    "ModelStore",
    "ModelSummary",
    "ModelVersion",
    "QualityStore",
    "QualityWindow",
    "Refusal",
    "Registry",
    "RegistryError",
    "RegistrySettings",
    "RetrainRun",
    "RollbackPolicy",
    "RollbackRecord",
    "RunNotFound",
    "RunStore",
    "Schedule",
    "ScheduleNotFound",
    "SettingsError",
    "Signature",
    "Tenant",
    "TenantExists",
    "TenantNotFound",
    "TenantStore",
    "TensorSpec",
    "Token",
    "TokenNotFound",
    "TokenStore",
    "VersionNotFound",
    "check_rollback",
    "inspect",
    "sha256_of",
]

# Where each public name lives: the module is imported when the name is first used.
_HOMES = {
    "Token": "registry.entities",
    "TokenNotFound": "registry.errors",
    "TokenStore": "registry.tokens",
    "CapturePolicy": "registry.labelled",
    "QualityWindow": "registry.labelled",
    "Joined": "registry.quality",
    "QualityStore": "registry.quality",
    "AliasMove": "registry.entities",
    "AliasMoveHook": "registry.models",
    "AliasNotFound": "registry.errors",
    "ArchiveHook": "registry.models",
    "ArtifactError": "registry.errors",
    "ArtifactStore": "registry.artifacts",
    "AuditEntry": "registry.entities",
    "ConflictError": "registry.errors",
    "DatabaseError": "registry.errors",
    "Decision": "registry.policy",
    "Draft": "registry.drafts",
    "IncompatibleSignature": "registry.errors",
    "InvalidName": "registry.errors",
    "InvalidSchedule": "registry.errors",
    "MetricStore": "registry.metrics",
    "MetricWindow": "registry.entities",
    "Model": "registry.entities",
    "ModelNotFound": "registry.errors",
    "ModelStore": "registry.models",
    "ModelSummary": "registry.entities",
    "ModelVersion": "registry.entities",
    "Refusal": "registry.entities",
    "Registry": "registry.registry",
    "RegistryError": "registry.errors",
    "RegistrySettings": "registry.settings",
    "RetrainRun": "registry.entities",
    "RollbackPolicy": "registry.policy",
    "RollbackRecord": "registry.entities",
    "RunNotFound": "registry.errors",
    "RunStore": "registry.runs",
    "Schedule": "registry.entities",
    "ScheduleNotFound": "registry.errors",
    "SettingsError": "registry.errors",
    "Signature": "registry.entities",
    "Tenant": "registry.entities",
    "TenantExists": "registry.errors",
    "TenantNotFound": "registry.errors",
    "TenantStore": "registry.tenants",
    "TensorSpec": "registry.entities",
    "VersionNotFound": "registry.errors",
    "check_rollback": "registry.policy",
    "inspect": "registry.artifacts",
    "sha256_of": "registry.artifacts",
}

if TYPE_CHECKING:
    from registry.artifacts import ArtifactStore, inspect, sha256_of
    from registry.drafts import Draft
    from registry.entities import (
        AliasMove,
        AuditEntry,
        MetricWindow,
        Model,
        ModelSummary,
        ModelVersion,
        Refusal,
        RetrainRun,
        RollbackRecord,
        Schedule,
        Signature,
        Tenant,
        TensorSpec,
        Token,
    )
    from registry.errors import (
        AliasNotFound,
        ArtifactError,
        ConflictError,
        DatabaseError,
        IncompatibleSignature,
        InvalidName,
        InvalidSchedule,
        ModelNotFound,
        RegistryError,
        RunNotFound,
        ScheduleNotFound,
        SettingsError,
        TenantExists,
        TenantNotFound,
        TokenNotFound,
        VersionNotFound,
    )
    from registry.labelled import CapturePolicy, QualityWindow
    from registry.metrics import MetricStore
    from registry.models import AliasMoveHook, ArchiveHook, ModelStore
    from registry.policy import Decision, RollbackPolicy, check_rollback
    from registry.quality import Joined, QualityStore
    from registry.registry import Registry
    from registry.runs import RunStore
    from registry.settings import RegistrySettings
    from registry.tenants import TenantStore
    from registry.tokens import TokenStore


def __getattr__(name: str) -> Any:
    home = _HOMES.get(name)
    if home is None:
        raise AttributeError(f"module 'registry' has no attribute {name!r}")
    value = getattr(import_module(home), name)
    globals()[name] = value
    return value
