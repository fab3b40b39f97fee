"""Initial registry schema: models, versions, aliases and their history, serving
metrics, rollbacks, retraining runs, schedules and the audit log.

Revision ID: 0001
Revises:
Create Date: 2025-01-01

Self-contained: uses only alembic and sqlalchemy, never the registry's ORM.
"""

from __future__ import annotations

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

revision: str = "0001"
down_revision: str | None = None
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None

TIMESTAMP = sa.DateTime(timezone=True)


def _id() -> sa.Column[int]:
    return sa.Column("id", sa.Integer(), nullable=False)


def _model_fk(table: str) -> sa.ForeignKeyConstraint:
    return sa.ForeignKeyConstraint(
        ["model_id"], ["models.id"], name=f"fk_{table}_model_id_models", ondelete="CASCADE"
    )


def upgrade() -> None:
    _create_models()
    _create_aliases()
    _create_metrics_and_rollbacks()
    _create_retraining()
    _create_audit_log()


def _create_models() -> None:
    op.create_table(
        "models",
        _id(),
        sa.Column("name", sa.String(200), nullable=False),
        sa.Column("created_by", sa.String(200), nullable=False),
        sa.Column("created_at", TIMESTAMP, nullable=False),
        sa.PrimaryKeyConstraint("id", name="pk_models"),
        sa.UniqueConstraint("name", name="uq_models_name"),
    )
    op.create_table(
        "model_versions",
        _id(),
        sa.Column("model_id", sa.Integer(), nullable=False),
        sa.Column("version", sa.Integer(), nullable=False),
        sa.Column("artifact_uri", sa.Text(), nullable=False),
        sa.Column("sha256", sa.String(64), nullable=False),
        sa.Column("format", sa.String(32), nullable=False),
        sa.Column("signature", sa.JSON(), nullable=False),
        sa.Column("status", sa.String(16), nullable=False),
        sa.Column("parent_version", sa.Integer(), nullable=True),
        sa.Column("dataset_hash", sa.String(128), nullable=True),
        sa.Column("params", sa.JSON(), nullable=False),
        sa.Column("metrics", sa.JSON(), nullable=False),
        sa.Column("created_by", sa.String(200), nullable=False),
        sa.Column("created_at", TIMESTAMP, nullable=False),
        sa.PrimaryKeyConstraint("id", name="pk_model_versions"),
        _model_fk("model_versions"),
        sa.UniqueConstraint("model_id", "version", name="uq_model_versions_model_id_version"),
        sa.CheckConstraint("status IN ('ready', 'archived')", name="ck_model_versions_status"),
    )


def _create_aliases() -> None:
    op.create_table(
        "aliases",
        sa.Column("model_id", sa.Integer(), nullable=False),
        sa.Column("alias", sa.String(100), nullable=False),
        sa.Column("version", sa.Integer(), nullable=False),
        sa.Column("updated_at", TIMESTAMP, nullable=False),
        sa.PrimaryKeyConstraint("model_id", "alias", name="pk_aliases"),
        _model_fk("aliases"),
        sa.ForeignKeyConstraint(
            ["model_id", "version"],
            ["model_versions.model_id", "model_versions.version"],
            name="fk_aliases_model_id_version_model_versions",
        ),
    )
    op.create_table(
        "alias_events",
        _id(),
        sa.Column("model_id", sa.Integer(), nullable=False),
        sa.Column("alias", sa.String(100), nullable=False),
        sa.Column("from_version", sa.Integer(), nullable=True),
        sa.Column("to_version", sa.Integer(), nullable=False),
        sa.Column("kind", sa.String(16), nullable=False),
        sa.Column("automatic", sa.Boolean(), nullable=False),
        sa.Column("actor", sa.String(200), nullable=False),
        sa.Column("reason", sa.Text(), nullable=False),
        sa.Column("at", TIMESTAMP, nullable=False),
        sa.PrimaryKeyConstraint("id", name="pk_alias_events"),
        _model_fk("alias_events"),
        sa.CheckConstraint("kind IN ('promote', 'rollback')", name="ck_alias_events_kind"),
    )
    op.create_index(
        "ix_alias_events_model_id_alias_id", "alias_events", ["model_id", "alias", "id"]
    )


def _create_metrics_and_rollbacks() -> None:
    op.create_table(
        "metric_windows",
        _id(),
        sa.Column("model_id", sa.Integer(), nullable=False),
        sa.Column("version", sa.Integer(), nullable=False),
        sa.Column("worker", sa.String(200), nullable=False),
        sa.Column("window_start", TIMESTAMP, nullable=False),
        sa.Column("window_end", TIMESTAMP, nullable=False),
        sa.Column("jobs", sa.Integer(), nullable=False),
        sa.Column("rows", sa.Integer(), nullable=False),
        sa.Column("errors", sa.JSON(), nullable=False),
        *(
            sa.Column(f"{kind}_ms_{q}", sa.Float(), nullable=False)
            for kind in ("queue", "infer")
            for q in ("p50", "p95", "p99")
        ),
        sa.Column("mean_batch_size", sa.Float(), nullable=False),
        sa.Column("rows_per_s", sa.Float(), nullable=False),
        sa.PrimaryKeyConstraint("id", name="pk_metric_windows"),
        _model_fk("metric_windows"),
    )
    op.create_index(
        "ix_metric_windows_model_id_version_window_start",
        "metric_windows",
        ["model_id", "version", "window_start"],
    )
    op.create_table(
        "rollbacks",
        _id(),
        sa.Column("model_id", sa.Integer(), nullable=False),
        sa.Column("alias", sa.String(100), nullable=False),
        sa.Column("from_version", sa.Integer(), nullable=False),
        sa.Column("to_version", sa.Integer(), nullable=False),
        sa.Column("reason", sa.Text(), nullable=False),
        sa.Column("automatic", sa.Boolean(), nullable=False),
        sa.Column("actor", sa.String(200), nullable=False),
        sa.Column("at", TIMESTAMP, nullable=False),
        sa.PrimaryKeyConstraint("id", name="pk_rollbacks"),
        _model_fk("rollbacks"),
    )


def _create_retraining() -> None:
    op.create_table(
        "retrain_runs",
        _id(),
        sa.Column("job_id", sa.String(200), nullable=False),
        sa.Column("model", sa.String(200), nullable=False),
        sa.Column("trigger", sa.String(32), nullable=False),
        sa.Column("status", sa.String(16), nullable=False),
        sa.Column("params", sa.JSON(), nullable=False),
        sa.Column("version", sa.Integer(), nullable=True),
        sa.Column("metrics", sa.JSON(), nullable=False),
        sa.Column("promoted", sa.Boolean(), nullable=False),
        sa.Column("reason", sa.Text(), nullable=False),
        sa.Column("started_at", TIMESTAMP, nullable=False),
        sa.Column("finished_at", TIMESTAMP, nullable=True),
        sa.PrimaryKeyConstraint("id", name="pk_retrain_runs"),
        sa.UniqueConstraint("job_id", name="uq_retrain_runs_job_id"),
        sa.CheckConstraint("status IN ('running', 'ok', 'error')", name="ck_retrain_runs_status"),
    )
    op.create_index("ix_retrain_runs_model", "retrain_runs", ["model"])
    op.create_table(
        "schedules",
        _id(),
        sa.Column("model", sa.String(200), nullable=False),
        sa.Column("cron", sa.String(200), nullable=False),
        sa.Column("dataset", sa.JSON(), nullable=True),
        sa.Column("params", sa.JSON(), nullable=False),
        sa.Column("promote", sa.String(16), nullable=False),
        sa.Column("enabled", sa.Boolean(), nullable=False),
        sa.Column("next_fire_at", TIMESTAMP, nullable=False),
        sa.Column("last_fired_at", TIMESTAMP, nullable=True),
        sa.Column("created_by", sa.String(200), nullable=False),
        sa.Column("created_at", TIMESTAMP, nullable=False),
        sa.PrimaryKeyConstraint("id", name="pk_schedules"),
        sa.CheckConstraint("promote IN ('gate', 'never', 'always')", name="ck_schedules_promote"),
    )
    op.create_index("ix_schedules_enabled_next_fire_at", "schedules", ["enabled", "next_fire_at"])
    op.create_table(
        "schedule_fires",
        _id(),
        sa.Column("schedule_id", sa.Integer(), nullable=False),
        sa.Column("due_at", TIMESTAMP, nullable=False),
        sa.Column("job_id", sa.String(200), nullable=False),
        sa.Column("fired_at", TIMESTAMP, nullable=False),
        sa.PrimaryKeyConstraint("id", name="pk_schedule_fires"),
        sa.ForeignKeyConstraint(
            ["schedule_id"],
            ["schedules.id"],
            name="fk_schedule_fires_schedule_id_schedules",
            ondelete="CASCADE",
        ),
        sa.UniqueConstraint("schedule_id", "due_at", name="uq_schedule_fires_schedule_id_due_at"),
    )


def _create_audit_log() -> None:
    op.create_table(
        "audit_log",
        _id(),
        sa.Column("at", TIMESTAMP, nullable=False),
        sa.Column("actor", sa.String(200), nullable=False),
        sa.Column("action", sa.String(64), nullable=False),
        sa.Column("model", sa.String(200), nullable=True),
        sa.Column("version", sa.Integer(), nullable=True),
        sa.Column("details", sa.JSON(), nullable=False),
        sa.PrimaryKeyConstraint("id", name="pk_audit_log"),
    )
    op.create_index("ix_audit_log_model_id", "audit_log", ["model", "id"])


def downgrade() -> None:
    op.drop_index("ix_audit_log_model_id", table_name="audit_log")
    op.drop_table("audit_log")
    op.drop_table("schedule_fires")
    op.drop_index("ix_schedules_enabled_next_fire_at", table_name="schedules")
    op.drop_table("schedules")
    op.drop_index("ix_retrain_runs_model", table_name="retrain_runs")
    op.drop_table("retrain_runs")
    op.drop_table("rollbacks")
    op.drop_index("ix_metric_windows_model_id_version_window_start", table_name="metric_windows")
    op.drop_table("metric_windows")
    op.drop_index("ix_alias_events_model_id_alias_id", table_name="alias_events")
    op.drop_table("alias_events")
    op.drop_table("aliases")
    op.drop_table("model_versions")
    op.drop_table("models")
