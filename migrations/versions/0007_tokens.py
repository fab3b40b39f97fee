"""Bearer tokens of tenants, for the gateway: only each token's SHA-256 is stored.

``tokens`` holds one row per token: its public id (shown by ``maas tenants token
list``, named by ``revoke``), the tenant it acts for (removed with the tenant), the hex
SHA-256 of the secret token (unique: the gateway looks a token up by it), who made it
and when, and when it was revoked (a revoked token is kept for the audit trail).

Revision ID: 0007
Revises: 0006
Create Date: 2026-12-06

Self-contained: uses only alembic and sqlalchemy, never the registry's ORM.
"""

from __future__ import annotations

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

revision: str = "0007"
down_revision: str | None = "0006"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None

TIMESTAMP = sa.DateTime(timezone=True)


def upgrade() -> None:
    op.create_table(
        "tokens",
        sa.Column("id", sa.String(32), nullable=False),
        sa.Column("tenant_id", sa.Integer(), nullable=False),
        sa.Column("token_hash", sa.String(64), nullable=False),
        sa.Column("created_by", sa.String(200), nullable=False),
        sa.Column("created_at", TIMESTAMP, nullable=False),
        sa.Column("revoked_at", TIMESTAMP, nullable=True),
        sa.PrimaryKeyConstraint("id", name="pk_tokens"),
        sa.UniqueConstraint("token_hash", name="uq_tokens_token_hash"),
        sa.ForeignKeyConstraint(
            ["tenant_id"], ["tenants.id"], name="fk_tokens_tenant_id_tenants", ondelete="CASCADE"
        ),
    )


def downgrade() -> None:
    op.drop_table("tokens")
