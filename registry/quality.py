"""The quality store: capture policies, labelled-quality windows and the joins counted.

Written by ``maas models monitor`` (policies) and by the monitor (windows and joins),
read by workers (policies) and by ``maas models quality|report``. The monitor hands
over each joined job with its share of a window (:class:`Joined`); :meth:`QualityStore.
add_joined` counts in one transaction those not counted before, and records that they
are: a monitor that restarts and joins the same rows again changes nothing.
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from datetime import datetime

from sqlalchemy import delete, select, tuple_
from sqlalchemy.orm import Session

from registry.db import Database, utcnow
from registry.errors import ModelNotFound
from registry.labelled import CapturePolicy, QualityWindow
from registry.rows import audit, model_row, no_model
from registry.tables import CapturePolicyRow, ModelRow, QualityJoinRow, QualityWindowRow

_KEYS_PER_QUERY = 500  # (tenant, job_id) pairs per IN clause


@dataclass(frozen=True, slots=True)
class Joined:
    """One row of a job whose capture and label were joined: its share of a window."""

    tenant: str | None
    job_id: str
    row: int
    window: QualityWindow

    @property
    def key(self) -> tuple[str, str, int]:
        return self.tenant or "", self.job_id, self.row


class QualityStore:
    """Capture policies and labelled quality; every method is one transaction."""

    def __init__(self, database: Database) -> None:
        self._db = database

    def set_policy(self, name: str, policy: CapturePolicy, *, actor: str) -> None:
        """Store ``name``'s capture policy, replacing the one it had."""
        with self._db.session() as session:
            model = model_row(session, name, lock=True)
            row = session.get(CapturePolicyRow, model.id)
            if row is None:
                row = CapturePolicyRow(model_id=model.id)
                session.add(row)
            row.rate, row.inputs = policy.rate, policy.inputs
            row.retention_ms, row.label_output = policy.retention_ms, policy.label_output
            row.updated_by, row.updated_at = actor, utcnow()
            audit(
                session,
                actor,
                "monitor",
                name,
                None,
                rate=policy.rate,
                inputs=policy.inputs,
                retention_ms=policy.retention_ms,
            )

    def policy(self, name: str) -> CapturePolicy | None:
        """``name``'s capture policy; None: it has none (nothing captured)."""
        with self._db.session() as session:
            model = model_row(session, name)
            row = session.get(CapturePolicyRow, model.id)
            return None if row is None else _policy(row)

    def policies(self) -> dict[str, CapturePolicy]:
        """Every model's capture policy, by model name."""
        with self._db.session() as session:
            rows = session.execute(
                select(ModelRow.name, CapturePolicyRow).join(
                    ModelRow, ModelRow.id == CapturePolicyRow.model_id
                )
            )
            return {name: _policy(row) for name, row in rows}

    def add_joined(self, joined: Sequence[Joined]) -> list[Joined]:
        """Count the rows of ``joined`` not counted before; return those counted."""
        if not joined:
            return []
        with self._db.session() as session:
            counted = _counted(session, [j.key for j in joined])
            fresh, seen = [], set(counted)
            for item in joined:
                if item.key not in seen:
                    seen.add(item.key)
                    fresh.append(item)
            if not fresh:
                return []
            now = utcnow()
            session.add_all(
                QualityJoinRow(tenant=j.key[0], job_id=j.job_id, row=j.row, joined_at=now)
                for j in fresh
            )
            _add_windows(session, _summed(j.window for j in fresh), now)
            return fresh

    def forget_joins(self, before: datetime, *, batch_rows: int = 10_000) -> int:
        """Forget the joins counted before ``before``, ``batch_rows`` at a time (one
        transaction each, by the ``joined_at`` index, so that no delete holds the table
        long); returns how many were forgotten."""
        forgotten = 0
        while True:
            with self._db.session() as session:
                oldest = (
                    select(QualityJoinRow.tenant, QualityJoinRow.job_id, QualityJoinRow.row)
                    .where(QualityJoinRow.joined_at < before)
                    .limit(batch_rows)
                )
                key = tuple_(QualityJoinRow.tenant, QualityJoinRow.job_id, QualityJoinRow.row)
                result = session.execute(delete(QualityJoinRow).where(key.in_(oldest)))
                count = int(getattr(result, "rowcount", 0) or 0)
            forgotten += count
            if count < batch_rows:
                return forgotten

    def windows(
        self, name: str, version: int | None = None, since: datetime | None = None
    ) -> list[QualityWindow]:
        """``name``'s quality windows (one version's; those starting at or after ``since``)."""
        with self._db.session() as session:
            model = model_row(session, name)
            query = select(QualityWindowRow).where(QualityWindowRow.model_id == model.id)
            if version is not None:
                query = query.where(QualityWindowRow.version == version)
            if since is not None:
                query = query.where(QualityWindowRow.window_start >= since)
            rows = session.scalars(
                query.order_by(QualityWindowRow.version, QualityWindowRow.window_start)
            )
            return [_window(row, name) for row in rows]


def _policy(row: CapturePolicyRow) -> CapturePolicy:
    return CapturePolicy(row.rate, row.inputs, row.retention_ms, row.label_output)


def _counted(session: Session, keys: list[tuple[str, str, int]]) -> set[tuple[str, str, int]]:
    found: set[tuple[str, str, int]] = set()
    for start in range(0, len(keys), _KEYS_PER_QUERY):
        chunk = keys[start : start + _KEYS_PER_QUERY]
        rows = session.execute(
            select(QualityJoinRow.tenant, QualityJoinRow.job_id, QualityJoinRow.row).where(
                tuple_(QualityJoinRow.tenant, QualityJoinRow.job_id, QualityJoinRow.row).in_(chunk)
            )
        )
        found.update((tenant, job_id, row) for tenant, job_id, row in rows)
    return found


def _summed(windows: Iterable[QualityWindow]) -> list[QualityWindow]:
    sums: dict[tuple[str, int, datetime], QualityWindow] = {}
    for window in windows:
        held = sums.get(window.key)
        sums[window.key] = window if held is None else held.plus(window)
    return list(sums.values())


def _add_windows(session: Session, windows: list[QualityWindow], now: datetime) -> None:
    names = {w.model for w in windows}
    ids = dict(
        session.execute(select(ModelRow.name, ModelRow.id).where(ModelRow.name.in_(names))).all()
    )
    for window in windows:
        if window.model not in ids:
            raise ModelNotFound(no_model(window.model))
        row = session.scalar(
            select(QualityWindowRow)
            .where(
                QualityWindowRow.model_id == ids[window.model],
                QualityWindowRow.version == window.version,
                QualityWindowRow.window_start == window.start,
            )
            .with_for_update()
        )
        if row is not None:
            window = _window(row, window.model).plus(window)
        else:
            row = QualityWindowRow(model_id=ids[window.model], version=window.version)
            session.add(row)
        _fill(row, window, now)


def _fill(row: QualityWindowRow, window: QualityWindow, now: datetime) -> None:
    row.window_start, row.window_s, row.kind = window.start, window.window_s, window.kind
    row.rows, row.correct = window.rows, window.correct
    row.abs_error, row.squared_error = window.abs_error, window.squared_error
    row.confusion, row.delays, row.updated_at = window.confusion, window.delays, now


def _window(row: QualityWindowRow, name: str) -> QualityWindow:
    return QualityWindow(
        name,
        row.version,
        row.window_start,
        row.window_s,
        "regressor" if row.kind == "regressor" else "classifier",
        rows=row.rows,
        correct=row.correct,
        abs_error=row.abs_error,
        squared_error=row.squared_error,
        confusion={k: dict(v) for k, v in row.confusion.items()},
        delays=dict(row.delays),
    )
