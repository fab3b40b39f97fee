"""Drift: reference profiles per version, drift windows, and monitoring policies.

``reference_profiles`` holds one bounded JSON profile per model version (what its inputs
and outputs looked like: quantile bins, frequencies), ``drift_windows`` each window of
captured traffic compared with it (share of drifted features, the prediction's drift, the
accuracy estimated from confidences, per-feature statistics), and ``monitor_policies`` the
conditions that publish a retrain job, with the time each last fired (claimed by one
monitor with a conditional update, so a policy fires once however many monitors run).

Revision ID: 0009
Revises: 0007
Create Date: 2026-12-06

Self-contained: uses only alembic and sqlalchemy, never the registry's ORM.
"""

from __future__ import annotations

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

revision: str = "0009"
down_revision: str | None = "0007"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None

TIMESTAMP = sa.DateTime(timezone=True)


def _model_id(table: str) -> sa.ForeignKeyConstraint:
    return sa.ForeignKeyConstraint(
        ["model_id"], ["models.id"], name=f"fk_{table}_model_id_models", ondelete="CASCADE"
    )


def upgrade() -> None:
    op.create_table(
        "reference_profiles",
        sa.Column("id", sa.Integer(), nullable=False),
        sa.Column("model_id", sa.Integer(), nullable=False),
        sa.Column("version", sa.Integer(), nullable=False),
        sa.Column("rows", sa.Integer(), nullable=False),
        sa.Column("source", sa.String(200), nullable=False),
        sa.Column("profile", sa.Text(), nullable=False),
        sa.Column("created_by", sa.String(200), nullable=False),
        sa.Column("created_at", TIMESTAMP, nullable=False),
        _model_id("reference_profiles"),
        sa.PrimaryKeyConstraint("id", name="pk_reference_profiles"),
        sa.UniqueConstraint("model_id", "version", name="uq_reference_profiles_model_id_version"),
    )
    op.create_table(
        "drift_windows",
        sa.Column("id", sa.Integer(), nullable=False),
        sa.Column("model_id", sa.Integer(), nullable=False),
        sa.Column("version", sa.Integer(), nullable=False),
        sa.Column("window_start", TIMESTAMP, nullable=False),
        sa.Column("window_end", TIMESTAMP, nullable=False),
        sa.Column("rows", sa.Integer(), nullable=False),
        sa.Column("share_drifted", sa.Float(), nullable=False),
        sa.Column("prediction_drift", sa.Float(), nullable=True),
        sa.Column("estimated_accuracy", sa.Float(), nullable=True),
        sa.Column("features", sa.JSON(), nullable=False),
        _model_id("drift_windows"),
        sa.PrimaryKeyConstraint("id", name="pk_drift_windows"),
        sa.UniqueConstraint(
            "model_id",
            "version",
            "window_start",
            name="uq_drift_windows_model_id_version_window_start",
        ),
    )
    op.create_table(
        "monitor_policies",
        sa.Column("id", sa.Integer(), nullable=False),
        sa.Column("model_id", sa.Integer(), nullable=False),
        sa.Column("condition", sa.String(200), nullable=False),
        sa.Column("cooldown_s", sa.Integer(), nullable=False),
        sa.Column("dataset", sa.String(1000), nullable=True),
        sa.Column("promote", sa.String(10), nullable=False),
        sa.Column("created_by", sa.String(200), nullable=False),
        sa.Column("created_at", TIMESTAMP, nullable=False),
        sa.Column("last_fired_at", TIMESTAMP, nullable=True),
        _model_id("monitor_policies"),
        sa.PrimaryKeyConstraint("id", name="pk_monitor_policies"),
        sa.UniqueConstraint("model_id", "condition", name="uq_monitor_policies_model_id_condition"),
    )


def downgrade() -> None:
    op.drop_table("monitor_policies")
    op.drop_table("drift_windows")
    op.drop_table("reference_profiles")
