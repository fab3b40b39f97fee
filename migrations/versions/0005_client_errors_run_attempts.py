"""Client mistakes counted apart from the model's errors; retrain runs count their attempts.

``metric_windows.client_errors`` holds, by code, the jobs a window answered with a
client's mistake (``INVALID_INPUT``, ``UNAUTHORIZED``, ``TOO_LARGE``, ``EXPIRED``,
``MODEL_NOT_FOUND``, ``VERSION_NOT_FOUND``); ``errors`` keeps only the model's and the
service's (``INTERNAL``), which alone count toward error rate, rollback and retraining.
The upgrade moves the client codes of existing windows out of ``errors``; the
downgrade merges them back before dropping the column.

``retrain_runs.attempts`` counts how often a run was started: a run left running by a
crashed trainer is tried again only a bounded number of times.

Revision ID: 0005
Revises: 0004
Create Date: 2025-02-04

Self-contained: uses only alembic and sqlalchemy, never the registry's ORM.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import sqlalchemy as sa
from alembic import op

revision: str = "0005"
down_revision: str | None = "0004"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None

# The codes that name a client's mistake (producer.contract.messages.CLIENT_ERROR_CODES
# when this revision was written; copied: a migration imports nothing of the project).
CLIENT_CODES = frozenset(
    {
        "INVALID_INPUT",
        "UNAUTHORIZED",
        "TOO_LARGE",
        "EXPIRED",
        "MODEL_NOT_FOUND",
        "VERSION_NOT_FOUND",
    }
)
WINDOWS = sa.table(
    "metric_windows",
    sa.column("id", sa.Integer()),
    sa.column("errors", sa.JSON()),
    sa.column("client_errors", sa.JSON()),
)


def upgrade() -> None:
    op.add_column(
        "metric_windows",
        sa.Column("client_errors", sa.JSON(), nullable=False, server_default="{}"),
    )
    op.add_column(
        "retrain_runs", sa.Column("attempts", sa.Integer(), nullable=False, server_default="1")
    )
    rows = op.get_bind().execute(sa.select(WINDOWS.c.id, WINDOWS.c.errors))
    for window_id, errors in rows.all():
        theirs = {code: n for code, n in errors.items() if code in CLIENT_CODES}
        if theirs:
            ours = {code: n for code, n in errors.items() if code not in CLIENT_CODES}
            _update(window_id, errors=ours, client_errors=theirs)


def downgrade() -> None:
    rows = op.get_bind().execute(sa.select(WINDOWS.c.id, WINDOWS.c.errors, WINDOWS.c.client_errors))
    for window_id, errors, client_errors in rows.all():
        if client_errors:
            _update(window_id, errors={**errors, **client_errors})
    op.drop_column("retrain_runs", "attempts")
    op.drop_column("metric_windows", "client_errors")


def _update(window_id: int, **values: Any) -> None:
    op.get_bind().execute(sa.update(WINDOWS).where(WINDOWS.c.id == window_id).values(**values))
