"""Monitoring: capture policies per model, labelled-quality windows, the joins counted.

``capture_policies`` holds each model's capture policy (rate, what of the inputs is
kept, the capture topic's retention, which output is the prediction), set by ``maas
models monitor``. ``quality_windows`` holds, per model, version and time window, the
sums that labelled quality is computed from (rows, correct rows, confusion counts,
absolute and squared errors, a histogram of label delays): sums, so that the monitor
adds to a window and readers derive accuracy, F1, MAE and RMSE. ``quality_joins``
holds the ``(tenant, job_id, row)`` of every row whose capture and label were joined
and counted, written in the same transaction as the sums: a monitor that restarts and
reads the topics again counts no job twice.

Revision ID: 0006
Revises: 0005
Create Date: 2026-12-06

Self-contained: uses only alembic and sqlalchemy, never the registry's ORM.
"""

from __future__ import annotations

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

revision: str = "0006"
down_revision: str | None = "0005"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None

TIMESTAMP = sa.DateTime(timezone=True)


def upgrade() -> None:
    op.create_table(
        "capture_policies",
        sa.Column("model_id", sa.Integer(), nullable=False),
        sa.Column("rate", sa.Float(), nullable=False),
        sa.Column("inputs", sa.String(2000), nullable=False),
        sa.Column("retention_ms", sa.BigInteger(), nullable=True),
        sa.Column("label_output", sa.String(200), nullable=True),
        sa.Column("updated_by", sa.String(200), nullable=False),
        sa.Column("updated_at", TIMESTAMP, nullable=False),
        sa.PrimaryKeyConstraint("model_id", name="pk_capture_policies"),
        sa.ForeignKeyConstraint(
            ["model_id"],
            ["models.id"],
            name="fk_capture_policies_model_id_models",
            ondelete="CASCADE",
        ),
        sa.CheckConstraint("rate >= 0 AND rate <= 1", name="ck_capture_policies_rate"),
    )
    op.create_table(
        "quality_windows",
        sa.Column("id", sa.Integer(), nullable=False),
        sa.Column("model_id", sa.Integer(), nullable=False),
        sa.Column("version", sa.Integer(), nullable=False),
        sa.Column("window_start", TIMESTAMP, nullable=False),
        sa.Column("window_s", sa.Integer(), nullable=False),
        sa.Column("kind", sa.String(16), nullable=False),
        sa.Column("rows", sa.Integer(), nullable=False),
        sa.Column("correct", sa.Integer(), nullable=False),
        sa.Column("abs_error", sa.Float(), nullable=False),
        sa.Column("squared_error", sa.Float(), nullable=False),
        sa.Column("confusion", sa.JSON(), nullable=False),
        sa.Column("delays", sa.JSON(), nullable=False),
        sa.Column("updated_at", TIMESTAMP, nullable=False),
        sa.PrimaryKeyConstraint("id", name="pk_quality_windows"),
        sa.ForeignKeyConstraint(
            ["model_id"],
            ["models.id"],
            name="fk_quality_windows_model_id_models",
            ondelete="CASCADE",
        ),
        sa.UniqueConstraint(
            "model_id",
            "version",
            "window_start",
            name="uq_quality_windows_model_id_version_window_start",
        ),
        sa.CheckConstraint("kind IN ('classifier', 'regressor')", name="ck_quality_windows_kind"),
    )
    op.create_table(
        "quality_joins",
        sa.Column("tenant", sa.String(63), nullable=False),
        sa.Column("job_id", sa.String(200), nullable=False),
        sa.Column("row", sa.Integer(), nullable=False),
        sa.Column("joined_at", TIMESTAMP, nullable=False),
        sa.PrimaryKeyConstraint("tenant", "job_id", "row", name="pk_quality_joins"),
    )
    op.create_index("ix_quality_joins_joined_at", "quality_joins", ["joined_at"])


def downgrade() -> None:
    op.drop_index("ix_quality_joins_joined_at", table_name="quality_joins")
    op.drop_table("quality_joins")
    op.drop_table("quality_windows")
    op.drop_table("capture_policies")
