"""The model registry: versions, aliases, metrics, retraining runs, schedules, audit.

Open it once with :meth:`Registry.open`; its three stores (:class:`ModelStore`,
:class:`RunStore`, :class:`MetricStore`) share one database handle.
"""

from registry.artifacts import ArtifactStore, inspect, sha256_of
from registry.bundle import Registry
from registry.drafts import Draft
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
    IncompatibleSignature,
    InvalidName,
    InvalidSchedule,
    ModelNotFound,
    RegistryError,
    RunNotFound,
    ScheduleNotFound,
    SettingsError,
    VersionNotFound,
)
from registry.models import AliasMoveHook, ArchiveHook, ModelStore
from registry.policy import Decision, RollbackPolicy, check_rollback
from registry.runs import RunStore
from registry.settings import RegistrySettings
from registry.windows import MetricStore

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
    "IncompatibleSignature",
    "InvalidName",
    "InvalidSchedule",
    "MetricStore",
    "MetricWindow",
    "Model",
    "ModelNotFound",
    "ModelStore",
    "ModelSummary",
    "ModelVersion",
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
    "TensorSpec",
    "VersionNotFound",
    "check_rollback",
    "inspect",
    "sha256_of",
]
