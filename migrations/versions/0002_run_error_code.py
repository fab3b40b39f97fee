"""Failed retraining runs keep their error code in a column of their own.

Until now the trainer hid the code of a failed run in its ``metrics`` (under
``error_code``). The upgrade moves it out into ``retrain_runs.error_code``; the
downgrade puts it back into ``metrics`` before dropping the column.

Revision ID: 0002
Revises: 0001
Create Date: 2025-02-01

Self-contained: uses only alembic and sqlalchemy, never the registry's ORM.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import sqlalchemy as sa
from alembic import op

revision: str = "0002"
down_revision: str | None = "0001"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None

KEY = "error_code"
RUNS = sa.table(
    "retrain_runs",
    sa.column("id", sa.Integer()),
    sa.column("status", sa.String()),
    sa.column("metrics", sa.JSON()),
    sa.column(KEY, sa.String()),
)


def upgrade() -> None:
    op.add_column("retrain_runs", sa.Column(KEY, sa.String(32), nullable=True))
    failed = op.get_bind().execute(
        sa.select(RUNS.c.id, RUNS.c.metrics).where(RUNS.c.status == "error")
    )
    for run_id, metrics in failed.all():
        if KEY in metrics:
            rest = {name: value for name, value in metrics.items() if name != KEY}
            _update(run_id, metrics=rest, error_code=str(metrics[KEY]))


def downgrade() -> None:
    coded = op.get_bind().execute(
        sa.select(RUNS.c.id, RUNS.c.metrics, RUNS.c.error_code).where(RUNS.c.error_code.isnot(None))
    )
    for run_id, metrics, code in coded.all():
        _update(run_id, metrics={**metrics, KEY: code})
    op.drop_column("retrain_runs", KEY)


def _update(run_id: int, **values: Any) -> None:
    op.get_bind().execute(sa.update(RUNS).where(RUNS.c.id == run_id).values(**values))
