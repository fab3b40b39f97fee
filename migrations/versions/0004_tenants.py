"""Tenants and their model grants; audit rows name the tenant they concern.

``tenants`` holds each tenant's name (63 characters: it becomes part of topic names),
its retrain and promote-always grants and the Kafka principal its ACLs were made for;
``tenant_grants`` the models each may use. ``audit_log.tenant`` is set on tenant
changes and on refused jobs, indexed like ``model`` for the log of one tenant; the
downgrade keeps it in the row's ``details`` before dropping the column.

Revision ID: 0004
Revises: 0003
Create Date: 2025-02-03

Self-contained: uses only alembic and sqlalchemy, never the registry's ORM.
"""

from __future__ import annotations

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

revision: str = "0004"
down_revision: str | None = "0003"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None

TIMESTAMP = sa.DateTime(timezone=True)
TENANT_NAME = sa.String(63)
AUDIT = sa.table(
    "audit_log",
    sa.column("id", sa.Integer()),
    sa.column("details", sa.JSON()),
    sa.column("tenant", sa.String()),
)


def upgrade() -> None:
    op.create_table(
        "tenants",
        sa.Column("id", sa.Integer(), nullable=False),
        sa.Column("name", TENANT_NAME, nullable=False),
        sa.Column("retrain", sa.Boolean(), nullable=False),
        sa.Column("promote_always", sa.Boolean(), nullable=False),
        sa.Column("principal", sa.String(200), nullable=True),
        sa.Column("created_by", sa.String(200), nullable=False),
        sa.Column("created_at", TIMESTAMP, nullable=False),
        sa.PrimaryKeyConstraint("id", name="pk_tenants"),
        sa.UniqueConstraint("name", name="uq_tenants_name"),
    )
    op.create_table(
        "tenant_grants",
        sa.Column("tenant_id", sa.Integer(), nullable=False),
        sa.Column("model", sa.String(200), nullable=False),
        sa.Column("granted_by", sa.String(200), nullable=False),
        sa.Column("granted_at", TIMESTAMP, nullable=False),
        sa.PrimaryKeyConstraint("tenant_id", "model", name="pk_tenant_grants"),
        sa.ForeignKeyConstraint(
            ["tenant_id"],
            ["tenants.id"],
            name="fk_tenant_grants_tenant_id_tenants",
            ondelete="CASCADE",
        ),
    )
    op.add_column("audit_log", sa.Column("tenant", TENANT_NAME, nullable=True))
    op.create_index("ix_audit_log_tenant_id", "audit_log", ["tenant", "id"])


def downgrade() -> None:
    bind = op.get_bind()
    named = bind.execute(
        sa.select(AUDIT.c.id, AUDIT.c.details, AUDIT.c.tenant).where(AUDIT.c.tenant.isnot(None))
    )
    for row_id, details, tenant in named.all():
        bind.execute(
            sa.update(AUDIT)
            .where(AUDIT.c.id == row_id)
            .values(details={**details, "tenant": tenant})
        )
    op.drop_index("ix_audit_log_tenant_id", table_name="audit_log")
    op.drop_column("audit_log", "tenant")
    op.drop_table("tenant_grants")
    op.drop_table("tenants")
