"""The drift store: versions' reference profiles, drift windows and monitoring policies.

The monitor writes drift windows and claims policy fires; the trainer and ``maas models
baseline`` store reference profiles; ``maas models drift|policy|show`` read them. The
profile itself is an opaque JSON document here (its shape is the monitor's,
``workers.drift.profile``); the store bounds its size so a profile stays small.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field
from datetime import datetime, timedelta
from typing import Any

from sqlalchemy import CursorResult, delete, insert, or_, select, update

from producer.contract.messages import PROMOTE_MODES
from registry.db import Database, as_utc, utcnow
from registry.errors import ConflictError
from registry.names import check_model_name
from registry.rows import audit, model_row, version_row
from registry.tables import DriftWindowRow, ModelRow, MonitorPolicyRow, ReferenceProfileRow

MAX_PROFILE_BYTES = 2_000_000


@dataclass(frozen=True, slots=True)
class Reference:
    """A version's reference profile, as stored."""

    model: str
    version: int
    rows: int
    source: str
    profile: str
    created_by: str
    created_at: datetime


@dataclass(frozen=True, slots=True)
class DriftWindow:
    """One window of a version's captured traffic compared with its reference."""

    model: str
    version: int
    start: datetime
    end: datetime
    rows: int
    share_drifted: float
    prediction_drift: float | None = None
    estimated_accuracy: float | None = None
    features: dict[str, Any] = field(default_factory=dict)


@dataclass(frozen=True, slots=True)
class Policy:
    """A condition over a model's windows that publishes a retrain job when it holds."""

    model: str
    condition: str
    cooldown_s: int = 6 * 3600
    dataset: str | None = None
    promote: str = "gate"
    id: int | None = None
    last_fired_at: datetime | None = None


class DriftStore:
    """Reference profiles, drift windows and policies; every method is one transaction."""

    def __init__(self, database: Database) -> None:
        self._db = database

    def set_reference(self, reference: Reference) -> None:
        """Store (or replace) the reference profile of a version."""
        size = len(reference.profile.encode())
        if size > MAX_PROFILE_BYTES:
            raise ConflictError(
                f"a reference profile holds at most {MAX_PROFILE_BYTES} bytes, got {size}"
            )
        with self._db.session() as session:
            model = model_row(session, reference.model)
            version_row(session, model, reference.version)
            session.execute(
                delete(ReferenceProfileRow).where(
                    ReferenceProfileRow.model_id == model.id,
                    ReferenceProfileRow.version == reference.version,
                )
            )
            session.add(
                ReferenceProfileRow(
                    model_id=model.id,
                    version=reference.version,
                    rows=reference.rows,
                    source=reference.source[:200],
                    profile=reference.profile,
                    created_by=reference.created_by,
                )
            )
            audit(
                session,
                reference.created_by,
                "baseline",
                reference.model,
                reference.version,
                rows=reference.rows,
                source=reference.source[:200],
            )

    def reference(self, model: str, version: int) -> Reference | None:
        """The reference profile of ``model`` ``version``, or None when it has none."""
        with self._db.session() as session:
            found = model_row(session, model)
            row = session.scalar(
                select(ReferenceProfileRow).where(
                    ReferenceProfileRow.model_id == found.id,
                    ReferenceProfileRow.version == version,
                )
            )
            if row is None:
                return None
            return Reference(
                model, version, row.rows, row.source, row.profile, row.created_by, row.created_at
            )

    def references(self, model: str) -> list[Reference]:
        """The reference profiles of ``model``'s versions, by version."""
        with self._db.session() as session:
            found = model_row(session, model)
            rows = session.scalars(
                select(ReferenceProfileRow)
                .where(ReferenceProfileRow.model_id == found.id)
                .order_by(ReferenceProfileRow.version)
            )
            return [
                Reference(model, r.version, r.rows, r.source, r.profile, r.created_by, r.created_at)
                for r in rows
            ]

    def record_windows(self, windows: Sequence[DriftWindow]) -> list[DriftWindow]:
        """Store the drift windows not stored before (one per model, version and start)
        in one transaction; returns those it stored."""
        if not windows:
            return []
        with self._db.session() as session:
            ids = {name: model_row(session, name).id for name in {w.model for w in windows}}
            known = {
                (model_id, version, as_utc(start))
                for model_id, version, start in session.execute(
                    select(
                        DriftWindowRow.model_id, DriftWindowRow.version, DriftWindowRow.window_start
                    ).where(
                        DriftWindowRow.model_id.in_(ids.values()),
                        DriftWindowRow.window_start.in_({w.start for w in windows}),
                    )
                )
            }
            fresh = []
            for window in windows:
                key = (ids[window.model], window.version, as_utc(window.start))
                if key not in known:
                    known.add(key)
                    fresh.append(window)
            if fresh:
                session.execute(insert(DriftWindowRow), [_window_values(w, ids) for w in fresh])
            return fresh

    def windows(
        self, model: str, since: datetime | None = None, version: int | None = None
    ) -> list[DriftWindow]:
        """Drift windows of ``model`` (one version; those starting at or after ``since``)."""
        with self._db.session() as session:
            found = model_row(session, model)
            query = select(DriftWindowRow).where(DriftWindowRow.model_id == found.id)
            if since is not None:
                query = query.where(DriftWindowRow.window_start >= since)
            if version is not None:
                query = query.where(DriftWindowRow.version == version)
            rows = session.scalars(query.order_by(DriftWindowRow.window_start, DriftWindowRow.id))
            return [_window(row, model) for row in rows]

    def set_policy(self, policy: Policy, actor: str) -> Policy:
        """Add ``policy`` (a model's condition is stored once; setting it again updates it)."""
        if policy.promote not in PROMOTE_MODES:
            raise ConflictError(f"promote must be one of {', '.join(PROMOTE_MODES)}")
        with self._db.session() as session:
            model = model_row(session, check_model_name(policy.model))
            row = session.scalar(
                select(MonitorPolicyRow).where(
                    MonitorPolicyRow.model_id == model.id,
                    MonitorPolicyRow.condition == policy.condition,
                )
            )
            if row is None:
                row = MonitorPolicyRow(
                    model_id=model.id, condition=policy.condition, created_by=actor
                )
                session.add(row)
            row.cooldown_s, row.dataset, row.promote = (
                policy.cooldown_s,
                policy.dataset,
                policy.promote,
            )
            session.flush()
            audit(session, actor, "policy", policy.model, None, condition=policy.condition)
            return _policy(row, policy.model)

    def remove_policy(self, model: str, policy_id: int, actor: str) -> None:
        with self._db.session() as session:
            found = model_row(session, model)
            removed = session.execute(
                delete(MonitorPolicyRow).where(
                    MonitorPolicyRow.model_id == found.id, MonitorPolicyRow.id == policy_id
                )
            )
            if not _changed(removed):
                raise ConflictError(
                    f"model {model!r} has no policy {policy_id} (maas models policy {model})"
                )
            audit(session, actor, "policy-removed", model, None, policy=policy_id)

    def policies(self, model: str | None = None) -> list[Policy]:
        """Every policy, or one model's."""
        with self._db.session() as session:
            query = select(MonitorPolicyRow, ModelRow.name).join(
                ModelRow, ModelRow.id == MonitorPolicyRow.model_id
            )
            if model is not None:
                query = query.where(ModelRow.name == model)
            rows = session.execute(query.order_by(ModelRow.name, MonitorPolicyRow.id))
            return [_policy(row, name) for row, name in rows]

    def claim_fire(self, policy_id: int, now: datetime | None = None) -> bool:
        """Whether this caller may fire the policy now: True for exactly one caller per
        cooldown, however many monitors race (a conditional update is the claim)."""
        moment = now or utcnow()
        with self._db.session() as session:
            row = session.get(MonitorPolicyRow, policy_id)
            if row is None:
                return False
            cutoff = moment - timedelta(seconds=row.cooldown_s)
            claimed = session.execute(
                update(MonitorPolicyRow)
                .where(
                    MonitorPolicyRow.id == policy_id,
                    or_(
                        MonitorPolicyRow.last_fired_at.is_(None),
                        MonitorPolicyRow.last_fired_at <= cutoff,
                    ),
                )
                .values(last_fired_at=moment)
            )
            return _changed(claimed)


def _changed(result: object) -> bool:
    """Whether an UPDATE or DELETE touched a row."""
    return isinstance(result, CursorResult) and result.rowcount > 0


def _window_values(window: DriftWindow, ids: dict[str, int]) -> dict[str, object]:
    return {
        "model_id": ids[window.model],
        "version": window.version,
        "window_start": window.start,
        "window_end": window.end,
        "rows": window.rows,
        "share_drifted": window.share_drifted,
        "prediction_drift": window.prediction_drift,
        "estimated_accuracy": window.estimated_accuracy,
        "features": window.features,
    }


def _window(row: DriftWindowRow, model: str) -> DriftWindow:
    return DriftWindow(
        model,
        row.version,
        row.window_start,
        row.window_end,
        row.rows,
        row.share_drifted,
        row.prediction_drift,
        row.estimated_accuracy,
        dict(row.features),
    )


def _policy(row: MonitorPolicyRow, model: str) -> Policy:
    return Policy(
        model,
        row.condition,
        row.cooldown_s,
        row.dataset,
        row.promote,
        row.id,
        row.last_fired_at,
    )
