"""The model registry: versions, aliases, metrics, retraining runs, schedules, audit."""

from registry.artifacts import ArtifactStore, inspect, sha256_of
from registry.entities import (
    AliasMove,
    AuditEntry,
    MetricWindow,
    Model,
    ModelSummary,
    ModelVersion,
    RetrainRun,
    RollbackRecord,
    Schedule,
    Signature,
    TensorSpec,
)
from registry.errors import (
    AliasNotFound,
    ArtifactError,
    ConflictError,
    DatabaseError,
    InvalidSchedule,
    ModelNotFound,
    RegistryError,
    RunNotFound,
    ScheduleNotFound,
    VersionNotFound,
)
from registry.policy import Decision, RollbackPolicy, check_rollback
from registry.settings import RegistrySettings
from registry.store import AliasMoveHook, ArchiveHook, Draft, Store

__all__ = [
    "AliasMove",
    "AliasMoveHook",
    "AliasNotFound",
    "ArchiveHook",
    "ArtifactError",
    "ArtifactStore",
    "AuditEntry",
    "ConflictError",
    "DatabaseError",
    "Decision",
    "Draft",
    "InvalidSchedule",
    "MetricWindow",
    "Model",
    "ModelNotFound",
    "ModelSummary",
    "ModelVersion",
    "RegistryError",
    "RegistrySettings",
    "RetrainRun",
    "RollbackPolicy",
    "RollbackRecord",
    "RunNotFound",
    "Schedule",
    "ScheduleNotFound",
    "Signature",
    "Store",
    "TensorSpec",
    "VersionNotFound",
    "check_rollback",
    "inspect",
    "sha256_of",
]
