"""Versions record what they were derived from: ``derived_from`` (a version of the same
model) and ``method`` (how, e.g. ``int8-dynamic``), for versions made by
``maas models optimize`` or a retraining job's ``quantize`` param rather than by
training. Both are NULL for trained and uploaded versions.

Revision ID: 0003
Revises: 0002
Create Date: 2025-02-02

Self-contained: uses only alembic and sqlalchemy, never the registry's ORM.
"""

from __future__ import annotations

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

revision: str = "0003"
down_revision: str | None = "0002"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    op.add_column("model_versions", sa.Column("derived_from", sa.Integer(), nullable=True))
    op.add_column("model_versions", sa.Column("method", sa.String(64), nullable=True))


def downgrade() -> None:
    op.drop_column("model_versions", "method")
    op.drop_column("model_versions", "derived_from")
