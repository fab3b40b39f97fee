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
from registry.metrics import MetricStore
from registry.models import AliasMoveHook, ArchiveHook, ModelStore
from registry.policy import Decision, RollbackPolicy, check_rollback
from registry.registry import Registry
from registry.runs import RunStore
from registry.settings import RegistrySettings
from registry.tenants import TenantStore
from registry.tokens import TokenStore

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
