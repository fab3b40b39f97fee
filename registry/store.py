"""The registry store: one managed session per call, entities out, domain errors up.

Every mutation writes its audit row in the same transaction. Version numbers are
allocated under a row lock on the model (PostgreSQL) or the database write lock
(SQLite), and a lost race on a unique constraint is retried. Callers that must
react to alias moves (e.g. publish ``maas.control`` events) pass ``on_alias_move``;
it runs after the move is committed. The registry itself knows nothing of Kafka.
"""

from __future__ import annotations

import random
import time
from collections.abc import Callable, Iterator, Sequence
from contextlib import contextmanager
from dataclasses import dataclass, field, replace
from datetime import UTC, datetime
from pathlib import Path
from types import TracebackType
from typing import Any, TypeVar

import structlog
from sqlalchemy import Engine, func, insert, select, update
from sqlalchemy.exc import IntegrityError, OperationalError
from sqlalchemy.orm import Session, sessionmaker

from registry import convert, cron, db
from registry.artifacts import ArtifactStore, inspect
from registry.entities import (
    AliasMove,
    AuditEntry,
    MetricWindow,
    Model,
    ModelSummary,
    ModelVersion,
    RetrainRun,
    RollbackRecord,
    Schedule,
)
from registry.errors import (
    AliasNotFound,
    ConflictError,
    DatabaseError,
    InvalidSchedule,
    ModelNotFound,
    RunNotFound,
    ScheduleNotFound,
    VersionNotFound,
)
from registry.settings import RegistrySettings
from registry.tables import (
    AliasEventRow,
    AliasRow,
    AuditRow,
    MetricWindowRow,
    ModelRow,
    RetrainRunRow,
    RollbackRow,
    ScheduleFireRow,
    ScheduleRow,
    VersionRow,
    utcnow,
)

log = structlog.get_logger(__name__)

AliasMoveHook = Callable[[AliasMove], None]
ArchiveHook = Callable[[ModelVersion], None]
PROMOTE_MODES = ("gate", "never", "always")
RUN_STATUSES = ("ok", "error")
MAX_ATTEMPTS = 20
T = TypeVar("T")


@dataclass(frozen=True, slots=True)
class Draft:
    """A version to register with :meth:`Store.register_derived`: its artifact and what
    to record with it (see :class:`~registry.entities.ModelVersion`)."""

    artifact: Path
    reason: str = ""
    promote: bool = False
    parent_version: int | None = None
    dataset_hash: str | None = None
    params: dict[str, Any] = field(default_factory=dict)
    metrics: dict[str, Any] = field(default_factory=dict)
    method: str | None = None


@dataclass(frozen=True, slots=True)
class _NewVersion:
    """Everything ``register`` writes, gathered before the transaction starts."""

    name: str
    artifact_uri: str
    sha256: str
    format: str
    signature: dict[str, Any]
    actor: str
    reason: str
    parent_version: int | None
    dataset_hash: str | None
    params: dict[str, Any] = field(default_factory=dict)
    metrics: dict[str, Any] = field(default_factory=dict)
    promote: bool = False
    derived_from: int | None = None
    method: str | None = None


class Store:
    """The model registry. Open it with :meth:`Store.open`; every method is one transaction."""

    def __init__(
        self,
        engine: Engine,
        artifacts: ArtifactStore,
        *,
        on_alias_move: AliasMoveHook | None = None,
        on_archive: ArchiveHook | None = None,
    ) -> None:
        self.engine = engine
        self.artifacts = artifacts
        self._sessions = sessionmaker(engine, expire_on_commit=False)
        self._on_alias_move = on_alias_move
        self._on_archive = on_archive

    @classmethod
    def open(
        cls,
        settings: RegistrySettings,
        *,
        migrate: bool = True,
        on_alias_move: AliasMoveHook | None = None,
        on_archive: ArchiveHook | None = None,
    ) -> Store:
        """Connect to ``settings.database_url``, migrating it to head unless ``migrate=False``."""
        engine = db.make_engine(settings.database_url)
        try:
            if migrate:
                db.upgrade(engine)
        except OperationalError as exc:
            engine.dispose()
            raise _unavailable(engine, exc) from exc
        return cls(
            engine,
            ArtifactStore(settings.artifact_dir),
            on_alias_move=on_alias_move,
            on_archive=on_archive,
        )

    def close(self) -> None:
        self.engine.dispose()

    def __enter__(self) -> Store:
        return self

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        self.close()

    @contextmanager
    def _session(self) -> Iterator[Session]:
        try:
            with self._sessions.begin() as session:
                yield session
        except OperationalError as exc:
            raise _unavailable(self.engine, exc) from exc

    def _retrying(self, attempt: Callable[[], T], what: str) -> T:
        """Run ``attempt`` (one transaction) again when it loses a unique-constraint race."""
        for n in range(MAX_ATTEMPTS):
            try:
                return attempt()
            except IntegrityError:
                time.sleep(random.uniform(0, 0.002 * (n + 1)))
        raise ConflictError(f"{what} kept conflicting with concurrent writers; try again")

    # -- models and versions ------------------------------------------------------

    def register(
        self,
        name: str,
        artifact: Path,
        *,
        actor: str,
        reason: str = "",
        promote: bool = False,
        alias: str = "production",
        parent_version: int | None = None,
        dataset_hash: str | None = None,
        params: dict[str, Any] | None = None,
        metrics: dict[str, Any] | None = None,
        run_job_id: str | None = None,
        derived_from: int | None = None,
        method: str | None = None,
    ) -> ModelVersion:
        """Register ``artifact`` as the next version of ``name`` (creating the model).

        With ``run_job_id`` the retraining run is finished (status ok) in the same
        transaction, so a crash never leaves a version without its run or vice versa.
        ``derived_from`` (a version of ``name``, which must exist) and ``method`` record
        that the artifact was made from that version's, e.g. by quantisation.
        """
        if (derived_from is None) != (method is None):
            raise ValueError("derived_from and method go together: give both or neither")
        draft = Draft(
            Path(artifact),
            reason,
            promote,
            parent_version,
            dataset_hash,
            dict(params or {}),
            dict(metrics or {}),
            method,
        )
        new = replace(self._stage(name, draft, actor), derived_from=derived_from)
        versions, move = self._retrying(
            lambda: self._register_once([new], alias, run_job_id), f"registering {name!r}"
        )
        return self._registered(versions, move)[0]

    def register_derived(
        self,
        name: str,
        base: Draft,
        derived: Draft,
        *,
        actor: str,
        alias: str = "production",
        run_job_id: str | None = None,
    ) -> tuple[ModelVersion, ModelVersion]:
        """Register ``base`` and ``derived``, made from it by ``derived.method``, as two
        consecutive versions of ``name`` in one transaction: both or neither.

        At most one of them is promoted (to ``alias``). With ``run_job_id`` the run is
        finished in the same transaction, recording the promoted version, else ``base``.
        """
        if derived.method is None:
            raise ValueError("the derived draft needs the method it was made by")
        if base.promote and derived.promote:
            raise ValueError("promote base or derived, not both")
        news = [self._stage(name, base, actor), self._stage(name, derived, actor)]
        versions, move = self._retrying(
            lambda: self._register_once(news, alias, run_job_id), f"registering {name!r}"
        )
        first, second = self._registered(versions, move)
        return first, second

    def _stage(self, name: str, draft: Draft, actor: str) -> _NewVersion:
        """Inspect and store the artifact: the work done before the transaction."""
        fmt, signature = inspect(draft.artifact)
        uri, sha = self.artifacts.put(draft.artifact)
        return _NewVersion(
            name=name,
            artifact_uri=uri,
            sha256=sha,
            format=fmt,
            signature=signature.to_dict(),
            actor=actor,
            reason=draft.reason,
            parent_version=draft.parent_version,
            dataset_hash=draft.dataset_hash,
            params=dict(draft.params),
            metrics=dict(draft.metrics),
            promote=draft.promote,
            method=draft.method,
        )

    def _registered(
        self, versions: list[ModelVersion], move: AliasMove | None
    ) -> list[ModelVersion]:
        if move is not None:
            self._notify(move)
        for version in versions:
            log.info(
                "model registered",
                model=version.model,
                version=version.version,
                sha256=version.sha256[:12],
            )
        return versions

    def _register_once(
        self, news: list[_NewVersion], alias: str, run_job_id: str | None
    ) -> tuple[list[ModelVersion], AliasMove | None]:
        """One transaction: each of ``news`` after the first is derived from the one before."""
        with self._session() as session:
            model = _lock_or_create_model(session, news[0].name, news[0].actor)
            rows: list[VersionRow] = []
            for new in news:
                source = rows[-1].version if rows else new.derived_from
                rows.append(_add_version(session, model, replace(new, derived_from=source)))
            chosen = next((i for i, new in enumerate(news) if new.promote), None)
            move = None
            if chosen is not None:
                new, number = news[chosen], rows[chosen].version
                move = _move_alias(session, model, alias, number, new.actor, new.reason)
            if run_job_id is not None:
                recorded, row = news[chosen or 0], rows[chosen or 0]
                _finish_run(
                    session,
                    run_job_id,
                    "ok",
                    row.version,
                    recorded.metrics,
                    move is not None,
                    recorded.reason,
                )
            return [convert.version(row, model.name) for row in rows], move

    def get_model(self, name: str) -> Model:
        with self._session() as session:
            row = _model_row(session, name)
            return Model(name=row.name, created_by=row.created_by, created_at=row.created_at)

    def get_version(self, name: str, version: int) -> ModelVersion:
        with self._session() as session:
            model = _model_row(session, name)
            return convert.version(_version_row(session, model, version), name)

    def resolve(self, name: str, alias: str = "production") -> ModelVersion:
        """The version that ``alias`` of ``name`` points to."""
        with self._session() as session:
            model = _model_row(session, name)
            target = _alias_row(session, model, alias)
            return convert.version(_version_row(session, model, target.version), name)

    def versions(self, name: str) -> list[ModelVersion]:
        with self._session() as session:
            model = _model_row(session, name)
            rows = session.scalars(
                select(VersionRow)
                .where(VersionRow.model_id == model.id)
                .order_by(VersionRow.version)
            )
            return [convert.version(row, name) for row in rows]

    def aliases(self, name: str) -> dict[str, int]:
        with self._session() as session:
            return _aliases(session, _model_row(session, name))

    def list_models(self) -> list[ModelSummary]:
        with self._session() as session:
            counts = session.execute(
                select(ModelRow, func.count(VersionRow.id), func.max(VersionRow.version))
                .outerjoin(VersionRow, VersionRow.model_id == ModelRow.id)
                .group_by(ModelRow.id)
                .order_by(ModelRow.name)
            ).all()
            return [
                ModelSummary(row.name, n, latest, _aliases(session, row))
                for row, n, latest in counts
            ]

    def archive(self, name: str, version: int, *, actor: str, reason: str = "") -> ModelVersion:
        """Mark ``version`` archived: it stays inspectable but can no longer be promoted."""
        with self._session() as session:
            model = _lock_model(session, name)
            row = _version_row(session, model, version)
            holders = sorted(a for a, v in _aliases(session, model).items() if v == version)
            if holders:
                raise ConflictError(
                    f"cannot archive version {version} of {name!r}: alias {holders[0]!r} points "
                    f"to it; promote another version first (maas models promote {name} VERSION)"
                )
            row.status = "archived"
            _audit(session, actor, "archive", name, version, reason=reason)
            archived = convert.version(row, name)
        if self._on_archive is not None:
            _call_hook(self._on_archive, archived)
        return archived

    # -- aliases --------------------------------------------------------------------

    def promote(
        self, name: str, version: int, *, alias: str = "production", actor: str, reason: str = ""
    ) -> AliasMove:
        """Point ``alias`` of ``name`` at ``version``."""
        with self._session() as session:
            model = _lock_model(session, name)
            _require_ready(_version_row(session, model, version), name)
            move = _move_alias(session, model, alias, version, actor, reason)
        self._notify(move)
        return move

    def rollback(
        self,
        name: str,
        *,
        alias: str = "production",
        to: int | None = None,
        actor: str,
        reason: str = "",
        automatic: bool = False,
    ) -> AliasMove:
        """Move ``alias`` back to ``to`` or, by default, to the version it held before."""
        with self._session() as session:
            model = _lock_model(session, name)
            current = _alias_row(session, model, alias).version
            target = to if to is not None else _previous_holder(session, model, alias, current)
            if target == current:
                raise ConflictError(
                    f"alias {alias!r} of {name!r} already points to version {current}"
                )
            _require_ready(_version_row(session, model, target), name)
            move = _move_alias(
                session, model, alias, target, actor, reason, kind="rollback", automatic=automatic
            )
            session.add(
                RollbackRow(
                    model_id=model.id,
                    alias=alias,
                    from_version=current,
                    to_version=target,
                    reason=reason,
                    automatic=automatic,
                    actor=actor,
                    at=move.at,
                )
            )
        self._notify(move)
        return move

    def alias_history(self, name: str, alias: str | None = None) -> list[AliasMove]:
        """Every move of the model's aliases (or of one alias), oldest first."""
        with self._session() as session:
            model = _model_row(session, name)
            query = select(AliasEventRow).where(AliasEventRow.model_id == model.id)
            if alias is not None:
                query = query.where(AliasEventRow.alias == alias)
            rows = session.scalars(query.order_by(AliasEventRow.id))
            return [convert.alias_move(row, name) for row in rows]

    def rollbacks(self, name: str) -> list[RollbackRecord]:
        with self._session() as session:
            model = _model_row(session, name)
            rows = session.scalars(
                select(RollbackRow).where(RollbackRow.model_id == model.id).order_by(RollbackRow.id)
            )
            return [convert.rollback(row, name) for row in rows]

    def _notify(self, move: AliasMove) -> None:
        if self._on_alias_move is not None:
            _call_hook(self._on_alias_move, move)

    # -- metrics and audit ------------------------------------------------------------

    def record_windows(self, windows: Sequence[MetricWindow]) -> None:
        """Store serving-metric windows in one bulk insert."""
        if not windows:
            return
        with self._session() as session:
            names = {w.model for w in windows}
            ids = dict(
                session.execute(
                    select(ModelRow.name, ModelRow.id).where(ModelRow.name.in_(names))
                ).all()
            )
            missing = sorted(names - ids.keys())
            if missing:
                raise ModelNotFound(_no_model(missing[0]))
            values = [convert.window_values(w, ids[w.model]) for w in windows]
            session.execute(insert(MetricWindowRow), values)

    def windows(
        self, name: str, version: int | None = None, since: datetime | None = None
    ) -> list[MetricWindow]:
        """Metric windows of ``name`` (one version, those starting at or after ``since``)."""
        with self._session() as session:
            model = _model_row(session, name)
            query = select(MetricWindowRow).where(MetricWindowRow.model_id == model.id)
            if version is not None:
                query = query.where(MetricWindowRow.version == version)
            if since is not None:
                query = query.where(MetricWindowRow.window_start >= since)
            rows = session.scalars(query.order_by(MetricWindowRow.window_start, MetricWindowRow.id))
            return [convert.window(row, name) for row in rows]

    def audit(self, model: str | None = None, limit: int = 100) -> list[AuditEntry]:
        """The newest audit entries first (of one model, or of the whole registry)."""
        with self._session() as session:
            query = select(AuditRow)
            if model is not None:
                query = query.where(AuditRow.model == model)
            rows = session.scalars(query.order_by(AuditRow.id.desc()).limit(limit))
            return [convert.audit(row) for row in rows]

    # -- retraining runs -----------------------------------------------------------------

    def start_run(
        self, job_id: str, model: str, *, trigger: str, params: dict[str, Any] | None = None
    ) -> tuple[RetrainRun, bool]:
        """Record that retraining job ``job_id`` started; ``False`` if it already existed."""
        return self._retrying(
            lambda: self._start_run_once(job_id, model, trigger, params or {}),
            f"starting run {job_id!r}",
        )

    def _start_run_once(
        self, job_id: str, model: str, trigger: str, params: dict[str, Any]
    ) -> tuple[RetrainRun, bool]:
        with self._session() as session:
            existing = session.scalar(select(RetrainRunRow).where(RetrainRunRow.job_id == job_id))
            if existing is not None:
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

    def finish_run(
        self,
        job_id: str,
        *,
        status: str,
        version: int | None = None,
        metrics: dict[str, Any] | None = None,
        promoted: bool = False,
        reason: str = "",
    ) -> RetrainRun:
        """Record the outcome (``ok`` or ``error``) of a running retraining job."""
        with self._session() as session:
            row = _finish_run(session, job_id, status, version, metrics or {}, promoted, reason)
            return convert.run(row)

    def get_run(self, job_id: str) -> RetrainRun | None:
        with self._session() as session:
            row = session.scalar(select(RetrainRunRow).where(RetrainRunRow.job_id == job_id))
            return None if row is None else convert.run(row)

    # -- schedules ---------------------------------------------------------------------------

    def add_schedule(
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
        cron.validate(cron_expression)
        if promote not in PROMOTE_MODES:
            raise InvalidSchedule(
                f"promote mode {promote!r} is unknown; use one of {', '.join(PROMOTE_MODES)}"
            )
        with self._session() as session:
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
            _audit(
                session, actor, "schedule.add", model, None, schedule=row.id, cron=cron_expression
            )
            return convert.schedule(row)

    def schedules(self, model: str | None = None) -> list[Schedule]:
        with self._session() as session:
            query = select(ScheduleRow)
            if model is not None:
                query = query.where(ScheduleRow.model == model)
            return [
                convert.schedule(row) for row in session.scalars(query.order_by(ScheduleRow.id))
            ]

    def remove_schedule(self, schedule_id: int, *, actor: str) -> None:
        with self._session() as session:
            row = session.get(ScheduleRow, schedule_id)
            if row is None:
                raise ScheduleNotFound(
                    f"no schedule has id {schedule_id}; maas schedule list shows the ids"
                )
            _audit(session, actor, "schedule.remove", row.model, None, schedule=schedule_id)
            session.delete(row)

    def claim_due(self, now: datetime) -> list[tuple[Schedule, datetime]]:
        """Claim every schedule due at ``now``: each due time goes to exactly one caller,
        however many schedulers race. Missed slots collapse into one fire (the latest)."""
        now = _utc(now)
        with self._session() as session:
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
            with self._session() as session:
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


# -- helpers: each runs inside the caller's session ---------------------------------------


def _unavailable(engine: Engine, exc: OperationalError) -> DatabaseError:
    url = engine.url.render_as_string(hide_password=True)
    return DatabaseError(
        f"registry database {url} is unavailable ({str(exc.orig).strip().splitlines()[0]}); "
        "check MAAS_DATABASE_URL or --database-url and that the server is running"
    )


def _call_hook(hook: Callable[[T], None], value: T) -> None:
    try:
        hook(value)
    except Exception:  # the change is committed; a failing listener must not undo it
        log.exception("registry hook failed", hook=getattr(hook, "__name__", repr(hook)))


def _no_model(name: str) -> str:
    return f"no model named {name!r} is registered; maas models list shows the registered models"


def _model_row(session: Session, name: str) -> ModelRow:
    row = session.scalar(select(ModelRow).where(ModelRow.name == name))
    if row is None:
        raise ModelNotFound(_no_model(name))
    return row


def _lock_model(session: Session, name: str) -> ModelRow:
    """The model row, locked until commit: alias moves of one model never interleave."""
    row = session.scalar(select(ModelRow).where(ModelRow.name == name).with_for_update())
    if row is None:
        raise ModelNotFound(_no_model(name))
    return row


def _lock_or_create_model(session: Session, name: str, actor: str) -> ModelRow:
    row = session.scalar(select(ModelRow).where(ModelRow.name == name).with_for_update())
    if row is None:
        row = ModelRow(name=name, created_by=actor)
        session.add(row)
        session.flush()  # IntegrityError if another writer created it first: retried
    return row


def _version_row(session: Session, model: ModelRow, version: int) -> VersionRow:
    row = session.scalar(
        select(VersionRow).where(VersionRow.model_id == model.id, VersionRow.version == version)
    )
    if row is not None:
        return row
    first, last = session.execute(
        select(func.min(VersionRow.version), func.max(VersionRow.version)).where(
            VersionRow.model_id == model.id
        )
    ).one()
    known = "it has no versions yet" if first is None else f"versions are {first}-{last}"
    raise VersionNotFound(
        f"model {model.name!r} has no version {version}; {known} (maas models show {model.name})"
    )


def _add_version(session: Session, model: ModelRow, new: _NewVersion) -> VersionRow:
    if new.derived_from is not None:
        _version_row(session, model, new.derived_from)  # VersionNotFound: no such source
    latest = session.scalar(
        select(func.max(VersionRow.version)).where(VersionRow.model_id == model.id)
    )
    row = VersionRow(
        model_id=model.id,
        version=(latest or 0) + 1,
        artifact_uri=new.artifact_uri,
        sha256=new.sha256,
        format=new.format,
        signature=new.signature,
        status="ready",
        parent_version=new.parent_version,
        dataset_hash=new.dataset_hash,
        params=new.params,
        metrics=new.metrics,
        created_by=new.actor,
        derived_from=new.derived_from,
        method=new.method,
    )
    session.add(row)
    session.flush()
    lineage = {} if new.method is None else {"derived_from": new.derived_from, "method": new.method}
    _audit(
        session,
        new.actor,
        "register",
        model.name,
        row.version,
        reason=new.reason,
        sha256=new.sha256,
        format=new.format,
        **lineage,
    )
    return row


def _require_ready(row: VersionRow, name: str) -> None:
    if row.status != "ready":
        raise ConflictError(
            f"version {row.version} of {name!r} is {row.status}; register its artifact again "
            "to serve it, or choose another version"
        )


def _alias_row(session: Session, model: ModelRow, alias: str) -> AliasRow:
    row = session.get(AliasRow, (model.id, alias))
    if row is None:
        known = ", ".join(sorted(_aliases(session, model))) or "none"
        raise AliasNotFound(
            f"model {model.name!r} has no alias {alias!r} (aliases: {known}); "
            f"promote a version first: maas models promote {model.name} VERSION --alias {alias}"
        )
    return row


def _aliases(session: Session, model: ModelRow) -> dict[str, int]:
    rows = session.execute(
        select(AliasRow.alias, AliasRow.version)
        .where(AliasRow.model_id == model.id)
        .order_by(AliasRow.alias)
    )
    return {alias: version for alias, version in rows}


def _previous_holder(session: Session, model: ModelRow, alias: str, current: int) -> int:
    """The version ``alias`` held before ``current`` was last promoted to it."""
    previous = session.scalar(
        select(AliasEventRow.from_version)
        .where(
            AliasEventRow.model_id == model.id,
            AliasEventRow.alias == alias,
            AliasEventRow.kind == "promote",
            AliasEventRow.to_version == current,
        )
        .order_by(AliasEventRow.id.desc())
        .limit(1)
    )
    if previous is None:
        raise ConflictError(
            f"alias {alias!r} of {model.name!r} held no version before {current}, so there is "
            f"nothing to roll back to; name one: maas models rollback {model.name} --to VERSION"
        )
    return previous


def _move_alias(
    session: Session,
    model: ModelRow,
    alias: str,
    version: int,
    actor: str,
    reason: str,
    *,
    kind: str = "promote",
    automatic: bool = False,
) -> AliasMove:
    at = utcnow()
    row = session.get(AliasRow, (model.id, alias))
    previous = None if row is None else row.version
    if row is None:
        session.add(AliasRow(model_id=model.id, alias=alias, version=version, updated_at=at))
    else:
        row.version, row.updated_at = version, at
    event = AliasEventRow(
        model_id=model.id,
        alias=alias,
        from_version=previous,
        to_version=version,
        kind=kind,
        automatic=automatic,
        actor=actor,
        reason=reason,
        at=at,
    )
    session.add(event)
    _audit(
        session,
        actor,
        kind,
        model.name,
        version,
        alias=alias,
        previous=previous,
        reason=reason,
        automatic=automatic,
    )
    session.flush()
    return convert.alias_move(event, model.name)


def _finish_run(
    session: Session,
    job_id: str,
    status: str,
    version: int | None,
    metrics: dict[str, Any],
    promoted: bool,
    reason: str,
) -> RetrainRunRow:
    if status not in RUN_STATUSES:
        raise ConflictError(f"run status {status!r} is unknown; use 'ok' or 'error'")
    row = session.scalar(
        select(RetrainRunRow).where(RetrainRunRow.job_id == job_id).with_for_update()
    )
    if row is None:
        raise RunNotFound(f"no retraining run has job_id {job_id!r}; call start_run first")
    if row.status != "running":
        raise ConflictError(f"retraining run {job_id!r} already finished with status {row.status}")
    row.status, row.version, row.metrics = status, version, dict(metrics)
    row.promoted, row.reason, row.finished_at = promoted, reason, utcnow()
    return row


def _audit(
    session: Session,
    actor: str,
    action: str,
    model: str | None,
    version: int | None,
    **details: Any,
) -> None:
    session.add(AuditRow(actor=actor, action=action, model=model, version=version, details=details))


def _utc(moment: datetime) -> datetime:
    return moment.replace(tzinfo=UTC) if moment.tzinfo is None else moment
