"""SQLAlchemy 2.0 models of the registry schema. Alembic owns the schema itself:
every change here needs a migration in ``migrations/versions`` (a test compares them)."""

from __future__ import annotations

from datetime import datetime
from typing import Any

from sqlalchemy import (
    JSON,
    BigInteger,
    Boolean,
    CheckConstraint,
    DateTime,
    Dialect,
    Float,
    ForeignKey,
    ForeignKeyConstraint,
    Index,
    Integer,
    MetaData,
    String,
    Text,
    TypeDecorator,
    UniqueConstraint,
)
from sqlalchemy.orm import DeclarativeBase, Mapped, mapped_column

from producer.contract.names import (
    ALIAS_MAX_LENGTH,
    NAME_MAX_LENGTH,
    PRINCIPAL_MAX_LENGTH,
    TENANT_NAME_MAX_LENGTH,
)
from registry.db import as_utc, utcnow

NAMING_CONVENTION = {
    "ix": "ix_%(table_name)s_%(column_0_N_name)s",
    "uq": "uq_%(table_name)s_%(column_0_N_name)s",
    "ck": "ck_%(table_name)s_%(constraint_name)s",
    "fk": "fk_%(table_name)s_%(column_0_N_name)s_%(referred_table_name)s",
    "pk": "pk_%(table_name)s",
}


class UTCDateTime(TypeDecorator[datetime]):
    """Timestamps in UTC: stored naive-UTC where the database has no time zones
    (SQLite), always returned as aware UTC datetimes."""

    impl = DateTime(timezone=True)
    cache_ok = True

    def process_bind_param(self, value: datetime | None, dialect: Dialect) -> datetime | None:
        if value is None:
            return None
        value = as_utc(value)
        return value.replace(tzinfo=None) if dialect.name == "sqlite" else value

    def process_result_value(self, value: datetime | None, dialect: Dialect) -> datetime | None:
        return None if value is None else as_utc(value)


class Base(DeclarativeBase):
    metadata = MetaData(naming_convention=NAMING_CONVENTION)
    type_annotation_map = {datetime: UTCDateTime(), dict[str, Any]: JSON()}


class ModelRow(Base):
    __tablename__ = "models"

    id: Mapped[int] = mapped_column(primary_key=True)
    name: Mapped[str] = mapped_column(String(NAME_MAX_LENGTH), unique=True)
    created_by: Mapped[str] = mapped_column(String(200))
    created_at: Mapped[datetime] = mapped_column(default=utcnow)


class VersionRow(Base):
    __tablename__ = "model_versions"
    __table_args__ = (
        UniqueConstraint("model_id", "version"),
        CheckConstraint("status IN ('ready', 'archived')", name="status"),
    )

    id: Mapped[int] = mapped_column(primary_key=True)
    model_id: Mapped[int] = mapped_column(ForeignKey("models.id", ondelete="CASCADE"))
    version: Mapped[int] = mapped_column(Integer)
    artifact_uri: Mapped[str] = mapped_column(Text)
    sha256: Mapped[str] = mapped_column(String(64))
    format: Mapped[str] = mapped_column(String(32))
    signature: Mapped[dict[str, Any]]
    status: Mapped[str] = mapped_column(String(16), default="ready")
    parent_version: Mapped[int | None] = mapped_column(Integer)
    dataset_hash: Mapped[str | None] = mapped_column(String(128))
    params: Mapped[dict[str, Any]]
    metrics: Mapped[dict[str, Any]]
    created_by: Mapped[str] = mapped_column(String(200))
    created_at: Mapped[datetime] = mapped_column(default=utcnow)
    derived_from: Mapped[int | None] = mapped_column(Integer)
    method: Mapped[str | None] = mapped_column(String(64))


class AliasRow(Base):
    __tablename__ = "aliases"
    __table_args__ = (
        ForeignKeyConstraint(
            ["model_id", "version"],
            ["model_versions.model_id", "model_versions.version"],
            name="fk_aliases_model_id_version_model_versions",
        ),
    )

    model_id: Mapped[int] = mapped_column(
        ForeignKey("models.id", ondelete="CASCADE"), primary_key=True
    )
    alias: Mapped[str] = mapped_column(String(ALIAS_MAX_LENGTH), primary_key=True)
    version: Mapped[int] = mapped_column(Integer)
    updated_at: Mapped[datetime] = mapped_column(default=utcnow)


class AliasEventRow(Base):
    __tablename__ = "alias_events"
    __table_args__ = (
        CheckConstraint("kind IN ('promote', 'rollback')", name="kind"),
        Index(None, "model_id", "alias", "id"),
    )

    id: Mapped[int] = mapped_column(primary_key=True)
    model_id: Mapped[int] = mapped_column(ForeignKey("models.id", ondelete="CASCADE"))
    alias: Mapped[str] = mapped_column(String(ALIAS_MAX_LENGTH))
    from_version: Mapped[int | None] = mapped_column(Integer)
    to_version: Mapped[int] = mapped_column(Integer)
    kind: Mapped[str] = mapped_column(String(16))
    automatic: Mapped[bool] = mapped_column(Boolean, default=False)
    actor: Mapped[str] = mapped_column(String(200))
    reason: Mapped[str] = mapped_column(Text, default="")
    at: Mapped[datetime] = mapped_column(default=utcnow)


class MetricWindowRow(Base):
    __tablename__ = "metric_windows"
    __table_args__ = (Index(None, "model_id", "version", "window_start"),)

    id: Mapped[int] = mapped_column(primary_key=True)
    model_id: Mapped[int] = mapped_column(ForeignKey("models.id", ondelete="CASCADE"))
    version: Mapped[int] = mapped_column(Integer)
    worker: Mapped[str] = mapped_column(String(200))
    window_start: Mapped[datetime]
    window_end: Mapped[datetime]
    jobs: Mapped[int] = mapped_column(Integer)
    rows: Mapped[int] = mapped_column(Integer)
    errors: Mapped[dict[str, Any]]  # the model's and the service's, by code
    client_errors: Mapped[dict[str, Any]] = mapped_column(default=dict, server_default="{}")
    queue_ms_p50: Mapped[float] = mapped_column(Float)
    queue_ms_p95: Mapped[float] = mapped_column(Float)
    queue_ms_p99: Mapped[float] = mapped_column(Float)
    infer_ms_p50: Mapped[float] = mapped_column(Float)
    infer_ms_p95: Mapped[float] = mapped_column(Float)
    infer_ms_p99: Mapped[float] = mapped_column(Float)
    mean_batch_size: Mapped[float] = mapped_column(Float)
    rows_per_s: Mapped[float] = mapped_column(Float)


class RollbackRow(Base):
    __tablename__ = "rollbacks"

    id: Mapped[int] = mapped_column(primary_key=True)
    model_id: Mapped[int] = mapped_column(ForeignKey("models.id", ondelete="CASCADE"))
    alias: Mapped[str] = mapped_column(String(ALIAS_MAX_LENGTH))
    from_version: Mapped[int] = mapped_column(Integer)
    to_version: Mapped[int] = mapped_column(Integer)
    reason: Mapped[str] = mapped_column(Text, default="")
    automatic: Mapped[bool] = mapped_column(Boolean, default=False)
    actor: Mapped[str] = mapped_column(String(200))
    at: Mapped[datetime] = mapped_column(default=utcnow)


class RetrainRunRow(Base):
    __tablename__ = "retrain_runs"
    __table_args__ = (CheckConstraint("status IN ('running', 'ok', 'error')", name="status"),)

    id: Mapped[int] = mapped_column(primary_key=True)
    job_id: Mapped[str] = mapped_column(String(NAME_MAX_LENGTH), unique=True)
    model: Mapped[str] = mapped_column(String(NAME_MAX_LENGTH), index=True)
    trigger: Mapped[str] = mapped_column(String(32))
    status: Mapped[str] = mapped_column(String(16), default="running")
    params: Mapped[dict[str, Any]]
    version: Mapped[int | None] = mapped_column(Integer)
    metrics: Mapped[dict[str, Any]]
    promoted: Mapped[bool] = mapped_column(Boolean, default=False)
    reason: Mapped[str] = mapped_column(Text, default="")
    error_code: Mapped[str | None] = mapped_column(String(32))  # of an "error" run
    attempts: Mapped[int] = mapped_column(Integer, default=1, server_default="1")
    started_at: Mapped[datetime] = mapped_column(default=utcnow)
    finished_at: Mapped[datetime | None]


class ScheduleRow(Base):
    __tablename__ = "schedules"
    __table_args__ = (
        CheckConstraint("promote IN ('gate', 'never', 'always')", name="promote"),
        Index(None, "enabled", "next_fire_at"),
    )

    id: Mapped[int] = mapped_column(primary_key=True)
    model: Mapped[str] = mapped_column(String(NAME_MAX_LENGTH))
    cron: Mapped[str] = mapped_column(String(200))
    dataset: Mapped[dict[str, Any] | None]
    params: Mapped[dict[str, Any]]
    promote: Mapped[str] = mapped_column(String(16), default="gate")
    enabled: Mapped[bool] = mapped_column(Boolean, default=True)
    next_fire_at: Mapped[datetime]
    last_fired_at: Mapped[datetime | None]
    created_by: Mapped[str] = mapped_column(String(200))
    created_at: Mapped[datetime] = mapped_column(default=utcnow)


class ScheduleFireRow(Base):
    __tablename__ = "schedule_fires"
    __table_args__ = (UniqueConstraint("schedule_id", "due_at"),)

    id: Mapped[int] = mapped_column(primary_key=True)
    schedule_id: Mapped[int] = mapped_column(ForeignKey("schedules.id", ondelete="CASCADE"))
    due_at: Mapped[datetime]
    job_id: Mapped[str] = mapped_column(String(NAME_MAX_LENGTH))
    fired_at: Mapped[datetime] = mapped_column(default=utcnow)


class TenantRow(Base):
    __tablename__ = "tenants"

    id: Mapped[int] = mapped_column(primary_key=True)
    name: Mapped[str] = mapped_column(String(TENANT_NAME_MAX_LENGTH), unique=True)
    retrain: Mapped[bool] = mapped_column(Boolean, default=False)
    promote_always: Mapped[bool] = mapped_column(Boolean, default=False)
    principal: Mapped[str | None] = mapped_column(String(PRINCIPAL_MAX_LENGTH))
    created_by: Mapped[str] = mapped_column(String(200))
    created_at: Mapped[datetime] = mapped_column(default=utcnow)


class TenantGrantRow(Base):
    """A model a tenant may predict with (and, with its retrain grant, retrain)."""

    __tablename__ = "tenant_grants"

    tenant_id: Mapped[int] = mapped_column(
        ForeignKey("tenants.id", ondelete="CASCADE"), primary_key=True
    )
    model: Mapped[str] = mapped_column(String(NAME_MAX_LENGTH), primary_key=True)
    granted_by: Mapped[str] = mapped_column(String(200))
    granted_at: Mapped[datetime] = mapped_column(default=utcnow)


class TokenRow(Base):
    """A tenant's bearer token for the gateway: only its SHA-256 is stored."""

    __tablename__ = "tokens"

    id: Mapped[str] = mapped_column(String(32), primary_key=True)
    tenant_id: Mapped[int] = mapped_column(ForeignKey("tenants.id", ondelete="CASCADE"))
    token_hash: Mapped[str] = mapped_column(String(64), unique=True)
    created_by: Mapped[str] = mapped_column(String(200))
    created_at: Mapped[datetime] = mapped_column(default=utcnow)
    revoked_at: Mapped[datetime | None]


class AuditRow(Base):
    __tablename__ = "audit_log"
    __table_args__ = (Index(None, "model", "id"), Index(None, "tenant", "id"))

    id: Mapped[int] = mapped_column(primary_key=True)
    at: Mapped[datetime] = mapped_column(default=utcnow)
    actor: Mapped[str] = mapped_column(String(200))
    action: Mapped[str] = mapped_column(String(64))
    model: Mapped[str | None] = mapped_column(String(NAME_MAX_LENGTH))
    version: Mapped[int | None] = mapped_column(Integer)
    details: Mapped[dict[str, Any]]
    tenant: Mapped[str | None] = mapped_column(String(TENANT_NAME_MAX_LENGTH))


metadata = Base.metadata


class CapturePolicyRow(Base):
    """A model's capture policy (monitoring): ``inputs`` is full, drop or hash:F,..."""

    __tablename__ = "capture_policies"
    __table_args__ = (CheckConstraint("rate >= 0 AND rate <= 1", name="rate"),)

    model_id: Mapped[int] = mapped_column(
        ForeignKey("models.id", ondelete="CASCADE"), primary_key=True
    )
    rate: Mapped[float] = mapped_column(Float)
    inputs: Mapped[str] = mapped_column(String(2000))
    retention_ms: Mapped[int | None] = mapped_column(BigInteger)
    label_output: Mapped[str | None] = mapped_column(String(NAME_MAX_LENGTH))
    updated_by: Mapped[str] = mapped_column(String(200))
    updated_at: Mapped[datetime] = mapped_column(default=utcnow)


class QualityWindowRow(Base):
    """Sums of one model version's labelled rows over one time window."""

    __tablename__ = "quality_windows"
    __table_args__ = (
        UniqueConstraint("model_id", "version", "window_start"),
        CheckConstraint("kind IN ('classifier', 'regressor')", name="kind"),
    )

    id: Mapped[int] = mapped_column(primary_key=True)
    model_id: Mapped[int] = mapped_column(ForeignKey("models.id", ondelete="CASCADE"))
    version: Mapped[int] = mapped_column(Integer)
    window_start: Mapped[datetime]
    window_s: Mapped[int] = mapped_column(Integer)
    kind: Mapped[str] = mapped_column(String(16))
    rows: Mapped[int] = mapped_column(Integer)
    correct: Mapped[int] = mapped_column(Integer)
    abs_error: Mapped[float] = mapped_column(Float)
    squared_error: Mapped[float] = mapped_column(Float)
    confusion: Mapped[dict[str, Any]]
    delays: Mapped[dict[str, Any]]
    updated_at: Mapped[datetime] = mapped_column(default=utcnow)


class QualityJoinRow(Base):
    """A row whose capture and label were joined and counted (tenant '' is the default)."""

    __tablename__ = "quality_joins"
    __table_args__ = (Index(None, "joined_at"),)

    tenant: Mapped[str] = mapped_column(String(TENANT_NAME_MAX_LENGTH), primary_key=True)
    job_id: Mapped[str] = mapped_column(String(NAME_MAX_LENGTH), primary_key=True)
    row: Mapped[int] = mapped_column(Integer, primary_key=True)
    joined_at: Mapped[datetime]


class ReferenceProfileRow(Base):
    """A version's reference profile of inputs and outputs (drift is measured against it)."""

    __tablename__ = "reference_profiles"
    __table_args__ = (UniqueConstraint("model_id", "version"),)

    id: Mapped[int] = mapped_column(primary_key=True)
    model_id: Mapped[int] = mapped_column(ForeignKey("models.id", ondelete="CASCADE"))
    version: Mapped[int] = mapped_column(Integer)
    rows: Mapped[int] = mapped_column(Integer)
    source: Mapped[str] = mapped_column(String(200))
    profile: Mapped[str] = mapped_column(Text)
    created_by: Mapped[str] = mapped_column(String(200))
    created_at: Mapped[datetime] = mapped_column(default=utcnow)


class DriftWindowRow(Base):
    """One window of captured traffic compared with its version's reference."""

    __tablename__ = "drift_windows"
    __table_args__ = (UniqueConstraint("model_id", "version", "window_start"),)

    id: Mapped[int] = mapped_column(primary_key=True)
    model_id: Mapped[int] = mapped_column(ForeignKey("models.id", ondelete="CASCADE"))
    version: Mapped[int] = mapped_column(Integer)
    window_start: Mapped[datetime]
    window_end: Mapped[datetime]
    rows: Mapped[int] = mapped_column(Integer)
    share_drifted: Mapped[float] = mapped_column(Float)
    prediction_drift: Mapped[float | None] = mapped_column(Float, nullable=True)
    estimated_accuracy: Mapped[float | None] = mapped_column(Float, nullable=True)
    features: Mapped[dict[str, Any]]


class MonitorPolicyRow(Base):
    """A condition over a model's windows that publishes a retrain job when it holds."""

    __tablename__ = "monitor_policies"
    __table_args__ = (UniqueConstraint("model_id", "condition"),)

    id: Mapped[int] = mapped_column(primary_key=True)
    model_id: Mapped[int] = mapped_column(ForeignKey("models.id", ondelete="CASCADE"))
    condition: Mapped[str] = mapped_column(String(200))
    cooldown_s: Mapped[int] = mapped_column(Integer)
    dataset: Mapped[str | None] = mapped_column(String(1000), nullable=True)
    promote: Mapped[str] = mapped_column(String(10))
    created_by: Mapped[str] = mapped_column(String(200))
    created_at: Mapped[datetime] = mapped_column(default=utcnow)
    last_fired_at: Mapped[datetime | None] = mapped_column(nullable=True)
