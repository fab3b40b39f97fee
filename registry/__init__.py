"""The model registry: versions, aliases, metrics, retraining runs, schedules, tenants,
audit.

Open it once with :meth:`Registry.open`; its four stores (:class:`ModelStore`,
:class:`RunStore`, :class:`MetricStore`, :class:`TenantStore`) share one database
handle.
"""

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
    "VersionNotFound",
    "check_rollback",
    "inspect",
    "sha256_of",
]
