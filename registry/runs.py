"""The run store: retraining runs (idempotent by job id) and the schedules that start them.

A run is started once per ``job_id`` and finished once: with ``ok`` and the version it
registered (by :meth:`registry.models.ModelStore.register`, in the same transaction
as the version, through :func:`finish`), or with ``error`` and the code of its failure.
Each due time of a schedule is claimed by exactly one caller, however many schedulers
race: the claim is a committed row.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from datetime import datetime
from typing import Any

from sqlalchemy import select, update
from sqlalchemy.exc import IntegrityError
from sqlalchemy.orm import Session

from registry import convert, cron
from registry.db import Database, as_utc, retrying, utcnow
from registry.entities import RetrainRun, Schedule
from registry.errors import ConflictError, InvalidSchedule, RunNotFound, ScheduleNotFound
from registry.names import check_job_id, check_model_name
from registry.rows import audit
from registry.tables import RetrainRunRow, ScheduleFireRow, ScheduleRow

PROMOTE_MODES = ("gate", "never", "always")
RUN_STATUSES = ("ok", "error")
CANCELLED_CODE = "INTERNAL"  # a cancelled run's error code: the service stopped it


@dataclass(frozen=True, slots=True)
class RunOutcome:
    """How a retraining run ended: ``ok`` with its version, or ``error`` with its code."""

    status: str
    version: int | None = None
    metrics: dict[str, Any] = field(default_factory=dict)
    promoted: bool = False
    reason: str = ""
    error_code: str | None = None


class RunStore:
    """Retraining runs and schedules; every method is one transaction."""

    def __init__(self, database: Database) -> None:
        self._db = database

    # -- retraining runs -----------------------------------------------------------------

    def start_run(
        self, job_id: str, model: str, *, trigger: str, params: dict[str, Any] | None = None
    ) -> tuple[RetrainRun, bool]:
        """Record that retraining job ``job_id`` started; ``False`` if it already existed.

        Starting a run that is still "running" (left so by a trainer that stopped) counts
        one more of its ``attempts``."""
        check_job_id(job_id)
        check_model_name(model)
        return retrying(
            lambda: self._start_run_once(job_id, model, trigger, params or {}),
            f"starting run {job_id!r}",
        )

    def _start_run_once(
        self, job_id: str, model: str, trigger: str, params: dict[str, Any]
    ) -> tuple[RetrainRun, bool]:
        with self._db.session() as session:
            existing = session.scalar(
                select(RetrainRunRow).where(RetrainRunRow.job_id == job_id).with_for_update()
            )
            if existing is not None:
                if existing.status == "running":
                    existing.attempts += 1
                return convert.run(existing), False
            row = RetrainRunRow(
                job_id=job_id,
                model=model,
                trigger=trigger,
                status="running",
                params=dict(params),
                metrics={},
                promoted=False,
                reason="",
            )
            session.add(row)
            session.flush()
            return convert.run(row), True

    def finish_run(self, job_id: str, outcome: RunOutcome) -> RetrainRun:
        """Record the outcome (``ok``, or ``error`` and its ``error_code``) of a running job."""
        with self._db.session() as session:
            return convert.run(finish(session, job_id, outcome))

    def cancel_run(self, job_id: str, *, actor: str, reason: str = "") -> RetrainRun:
        """Finish the running run ``job_id`` as cancelled (an ``error`` run, code
        ``INTERNAL``): its trainer stops at its next optimiser step, and the job (and any
        redelivery) is answered with the cancellation."""
        why = f"cancelled by {actor}" + (f": {reason}" if reason else "")
        with self._db.session() as session:
            row = session.scalar(
                select(RetrainRunRow).where(RetrainRunRow.job_id == job_id).with_for_update()
            )
            if row is None:
                raise RunNotFound(
                    f"no retraining run has job_id {job_id!r}: it has not started (a run "
                    "starts when a trainer takes its job); maas runs list shows the runs"
                )
            if row.status != "running":
                raise ConflictError(
                    f"run {job_id!r} already finished ({row.status}); there is nothing to cancel"
                )
            outcome = RunOutcome("error", reason=why, error_code=CANCELLED_CODE)
            cancelled = finish(session, job_id, outcome)
            audit(session, actor, "run.cancel", row.model, None, job_id=job_id, reason=reason)
            return convert.run(cancelled)

    def runs(
        self, model: str | None = None, *, status: str | None = None, limit: int = 50
    ) -> list[RetrainRun]:
        """The newest runs first (of one model, in one status)."""
        with self._db.session() as session:
            query = select(RetrainRunRow)
            if model is not None:
                query = query.where(RetrainRunRow.model == model)
            if status is not None:
                query = query.where(RetrainRunRow.status == status)
            rows = session.scalars(query.order_by(RetrainRunRow.id.desc()).limit(limit))
            return [convert.run(row) for row in rows]

    def running(self, model: str) -> list[RetrainRun]:
        """``model``'s runs that have not finished."""
        with self._db.session() as session:
            rows = session.scalars(
                select(RetrainRunRow).where(
                    RetrainRunRow.model == model, RetrainRunRow.status == "running"
                )
            )
            return [convert.run(row) for row in rows]

    def get_run(self, job_id: str) -> RetrainRun | None:
        with self._db.session() as session:
            row = session.scalar(select(RetrainRunRow).where(RetrainRunRow.job_id == job_id))
            return None if row is None else convert.run(row)

    # -- schedules ---------------------------------------------------------------------------

    def add_schedule(  # noqa: PLR0913 -- keyword-only: callers name each part of the job
        self,
        model: str,
        cron_expression: str,
        *,
        dataset: dict[str, Any] | None = None,
        params: dict[str, Any] | None = None,
        promote: str = "gate",
        actor: str,
        now: datetime | None = None,
    ) -> Schedule:
        """Retrain ``model`` at every slot of ``cron_expression`` (UTC)."""
        check_model_name(model)
        cron.validate(cron_expression)
        if promote not in PROMOTE_MODES:
            raise InvalidSchedule(
                f"promote mode {promote!r} is unknown; use one of {', '.join(PROMOTE_MODES)}"
            )
        with self._db.session() as session:
            row = ScheduleRow(
                model=model,
                cron=cron_expression,
                dataset=None if dataset is None else dict(dataset),
                params=dict(params or {}),
                promote=promote,
                enabled=True,
                next_fire_at=cron.next_after(cron_expression, now or utcnow()),
                created_by=actor,
            )
            session.add(row)
            session.flush()
            audit(
                session, actor, "schedule.add", model, None, schedule=row.id, cron=cron_expression
            )
            return convert.schedule(row)

    def schedules(self, model: str | None = None) -> list[Schedule]:
        with self._db.session() as session:
            query = select(ScheduleRow)
            if model is not None:
                query = query.where(ScheduleRow.model == model)
            return [
                convert.schedule(row) for row in session.scalars(query.order_by(ScheduleRow.id))
            ]

    def remove_schedule(self, schedule_id: int, *, actor: str) -> None:
        with self._db.session() as session:
            row = session.get(ScheduleRow, schedule_id)
            if row is None:
                raise ScheduleNotFound(
                    f"no schedule has id {schedule_id}; maas schedule list shows the ids"
                )
            audit(session, actor, "schedule.remove", row.model, None, schedule=schedule_id)
            session.delete(row)

    def claim_due(self, now: datetime) -> list[tuple[Schedule, datetime]]:
        """Claim every schedule due at ``now`` (naive: UTC): each due time goes to exactly one
        caller, however many schedulers race. Missed slots collapse into one fire (the latest)."""
        now = as_utc(now)
        with self._db.session() as session:
            due = session.execute(
                select(ScheduleRow.id, ScheduleRow.cron, ScheduleRow.next_fire_at)
                .where(ScheduleRow.enabled, ScheduleRow.next_fire_at <= now)
                .order_by(ScheduleRow.next_fire_at)
            ).all()
        claimed = (self._claim_one(id_, expr, expected, now) for id_, expr, expected in due)
        return [fire for fire in claimed if fire is not None]

    def _claim_one(
        self, schedule_id: int, expression: str, expected: datetime, now: datetime
    ) -> tuple[Schedule, datetime] | None:
        due_at = cron.latest_due(expression, now)
        try:
            with self._db.session() as session:
                row = session.scalars(
                    update(ScheduleRow)
                    .where(ScheduleRow.id == schedule_id, ScheduleRow.next_fire_at == expected)
                    .values(next_fire_at=cron.next_after(expression, now), last_fired_at=due_at)
                    .returning(ScheduleRow),
                    execution_options={"synchronize_session": False},
                ).one_or_none()
                if row is None:
                    return None  # another scheduler claimed it first
                schedule = convert.schedule(row)
                session.add(
                    ScheduleFireRow(
                        schedule_id=schedule_id, due_at=due_at, job_id=schedule.job_id(due_at)
                    )
                )
                session.flush()
        except IntegrityError:
            return None
        return schedule, due_at


def finish(session: Session, job_id: str, outcome: RunOutcome) -> RetrainRunRow:
    """Finish the running run ``job_id`` with ``outcome``, inside the caller's session."""
    if outcome.status not in RUN_STATUSES:
        raise ConflictError(f"run status {outcome.status!r} is unknown; use 'ok' or 'error'")
    if outcome.error_code is not None and outcome.status != "error":
        raise ConflictError(f"an {outcome.status!r} run has no error code; only 'error' runs do")
    row = session.scalar(
        select(RetrainRunRow).where(RetrainRunRow.job_id == job_id).with_for_update()
    )
    if row is None:
        raise RunNotFound(f"no retraining run has job_id {job_id!r}; call start_run first")
    if row.status != "running":
        raise ConflictError(f"retraining run {job_id!r} already finished with status {row.status}")
    row.status, row.version, row.metrics = outcome.status, outcome.version, dict(outcome.metrics)
    row.promoted, row.reason, row.finished_at = outcome.promoted, outcome.reason, utcnow()
    row.error_code = outcome.error_code
    return row
