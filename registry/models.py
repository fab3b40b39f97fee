"""The model store: models, their versions and aliases, rollbacks and the audit log.

Version numbers are allocated under a row lock on the model (PostgreSQL) or the
database write lock (SQLite), and a lost race on a unique constraint is retried.
Callers that must react to alias moves (e.g. publish ``maas.control`` events) pass
``on_alias_move``; it runs after the move is committed. The registry itself knows
nothing of Kafka.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, TypeVar

import structlog
from sqlalchemy import func, select
from sqlalchemy.orm import Session

from registry import convert
from registry.aliases import (
    AliasChange,
    alias_holder,
    alias_map,
    move_alias,
    previous_holder,
    require_fit,
)
from registry.artifacts import ArtifactStore, inspect
from registry.db import Database, retrying
from registry.entities import (
    AliasMove,
    AuditEntry,
    Model,
    ModelSummary,
    ModelVersion,
    RollbackRecord,
)
from registry.errors import ConflictError
from registry.rows import audit, find_model, model_row, version_row
from registry.runs import RunOutcome, finish
from registry.tables import AliasEventRow, AuditRow, ModelRow, RollbackRow, VersionRow

log = structlog.get_logger(__name__)

AliasMoveHook = Callable[[AliasMove], None]
ArchiveHook = Callable[[ModelVersion], None]
T = TypeVar("T")


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


class ModelStore:
    """Models, versions, aliases, rollbacks and audit; every method is one transaction."""

    def __init__(
        self,
        database: Database,
        artifacts: ArtifactStore,
        *,
        on_alias_move: AliasMoveHook | None = None,
        on_archive: ArchiveHook | None = None,
    ) -> None:
        self._db = database
        self.artifacts = artifacts
        self._on_alias_move = on_alias_move
        self._on_archive = on_archive

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
        force: bool = False,
    ) -> ModelVersion:
        """Register ``artifact`` as the next version of ``name`` (creating the model).

        With ``promote``, ``alias`` moves to the new version, unless that would break its
        clients (:class:`~registry.errors.IncompatibleSignature`, nothing registered) and
        ``force`` is not given. With ``run_job_id`` the retraining run is finished
        (status ok) in the same transaction, so a crash never leaves a version without
        its run or vice versa.
        """
        fmt, signature = inspect(Path(artifact))
        uri, sha = self.artifacts.put(Path(artifact))
        new = _NewVersion(
            name=name,
            artifact_uri=uri,
            sha256=sha,
            format=fmt,
            signature=signature.to_dict(),
            actor=actor,
            reason=reason,
            parent_version=parent_version,
            dataset_hash=dataset_hash,
            params=dict(params or {}),
            metrics=dict(metrics or {}),
        )
        promote_to = alias if promote else None
        version, move = retrying(
            lambda: self._register_once(new, promote_to, run_job_id, force),
            f"registering {name!r}",
        )
        if move is not None:
            self._notify(move)
        log.info("model registered", model=name, version=version.version, sha256=sha[:12])
        return version

    def _register_once(
        self, new: _NewVersion, alias: str | None, run_job_id: str | None, force: bool
    ) -> tuple[ModelVersion, AliasMove | None]:
        with self._db.session() as session:
            model = _lock_or_create_model(session, new.name, new.actor)
            row = _add_version(session, model, new)
            move = None
            if alias is not None:
                if not force:
                    hint = "Register it without --promote, or with --force to promote it anyway."
                    require_fit(session, model, alias, row, hint)
                change = AliasChange(alias, row.version, new.actor, new.reason, forced=force)
                move = move_alias(session, model, change)
            if run_job_id is not None:
                outcome = RunOutcome(
                    "ok", row.version, new.metrics, promoted=move is not None, reason=new.reason
                )
                finish(session, run_job_id, outcome)
            return convert.version(row, new.name), move

    def get_model(self, name: str) -> Model:
        with self._db.session() as session:
            row = model_row(session, name)
            return Model(name=row.name, created_by=row.created_by, created_at=row.created_at)

    def get_version(self, name: str, version: int) -> ModelVersion:
        with self._db.session() as session:
            model = model_row(session, name)
            return convert.version(version_row(session, model, version), name)

    def resolve(self, name: str, alias: str = "production") -> ModelVersion:
        """The version that ``alias`` of ``name`` points to."""
        with self._db.session() as session:
            model = model_row(session, name)
            target = alias_holder(session, model, alias)
            return convert.version(version_row(session, model, target), name)

    def versions(self, name: str) -> list[ModelVersion]:
        with self._db.session() as session:
            model = model_row(session, name)
            rows = session.scalars(
                select(VersionRow)
                .where(VersionRow.model_id == model.id)
                .order_by(VersionRow.version)
            )
            return [convert.version(row, name) for row in rows]

    def aliases(self, name: str) -> dict[str, int]:
        with self._db.session() as session:
            return alias_map(session, model_row(session, name))

    def list_models(self) -> list[ModelSummary]:
        with self._db.session() as session:
            counts = session.execute(
                select(ModelRow, func.count(VersionRow.id), func.max(VersionRow.version))
                .outerjoin(VersionRow, VersionRow.model_id == ModelRow.id)
                .group_by(ModelRow.id)
                .order_by(ModelRow.name)
            ).all()
            return [
                ModelSummary(row.name, n, latest, alias_map(session, row))
                for row, n, latest in counts
            ]

    def archive(self, name: str, version: int, *, actor: str, reason: str = "") -> ModelVersion:
        """Mark ``version`` archived: it stays inspectable but can no longer be promoted."""
        with self._db.session() as session:
            model = model_row(session, name, lock=True)
            row = version_row(session, model, version)
            holders = sorted(a for a, v in alias_map(session, model).items() if v == version)
            if holders:
                raise ConflictError(
                    f"cannot archive version {version} of {name!r}: alias {holders[0]!r} points "
                    f"to it; promote another version first (maas models promote {name} VERSION)"
                )
            row.status = "archived"
            audit(session, actor, "archive", name, version, reason=reason)
            archived = convert.version(row, name)
        if self._on_archive is not None:
            _call_hook(self._on_archive, archived)
        return archived

    # -- aliases and rollbacks ------------------------------------------------------------

    def promote(
        self,
        name: str,
        version: int,
        *,
        alias: str = "production",
        actor: str,
        reason: str = "",
        force: bool = False,
    ) -> AliasMove:
        """Point ``alias`` of ``name`` at ``version``; refused with
        :class:`~registry.errors.IncompatibleSignature` when that would break the alias's
        clients, unless ``force``."""
        with self._db.session() as session:
            model = model_row(session, name, lock=True)
            row = version_row(session, model, version)
            _require_ready(row, name)
            if not force:
                hint = f"To promote it anyway: maas models promote {name} {version} --force"
                require_fit(session, model, alias, row, hint)
            change = AliasChange(alias, version, actor, reason, forced=force)
            move = move_alias(session, model, change)
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
        force: bool = False,
    ) -> AliasMove:
        """Move ``alias`` back to ``to`` or, by default, to the version it held before.

        Refused with :class:`~registry.errors.IncompatibleSignature` when the target would
        break the alias's clients, unless ``force``; an ``automatic`` rollback returns to
        what served before the promotion it undoes and is never refused for that.
        """
        with self._db.session() as session:
            model = model_row(session, name, lock=True)
            current = alias_holder(session, model, alias)
            target = to if to is not None else previous_holder(session, model, alias, current)
            if target == current:
                raise ConflictError(
                    f"alias {alias!r} of {name!r} already points to version {current}"
                )
            row = version_row(session, model, target)
            _require_ready(row, name)
            if not (force or automatic):
                hint = f"To roll back anyway: maas models rollback {name} --to {target} --force"
                require_fit(session, model, alias, row, hint)
            change = AliasChange(
                alias, target, actor, reason, kind="rollback", automatic=automatic, forced=force
            )
            move = move_alias(session, model, change)
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
        with self._db.session() as session:
            model = model_row(session, name)
            query = select(AliasEventRow).where(AliasEventRow.model_id == model.id)
            if alias is not None:
                query = query.where(AliasEventRow.alias == alias)
            rows = session.scalars(query.order_by(AliasEventRow.id))
            return [convert.alias_move(row, name) for row in rows]

    def rollbacks(self, name: str) -> list[RollbackRecord]:
        with self._db.session() as session:
            model = model_row(session, name)
            rows = session.scalars(
                select(RollbackRow).where(RollbackRow.model_id == model.id).order_by(RollbackRow.id)
            )
            return [convert.rollback(row, name) for row in rows]

    def audit(self, model: str | None = None, limit: int = 100) -> list[AuditEntry]:
        """The newest audit entries first (of one model, or of the whole registry)."""
        with self._db.session() as session:
            query = select(AuditRow)
            if model is not None:
                query = query.where(AuditRow.model == model)
            rows = session.scalars(query.order_by(AuditRow.id.desc()).limit(limit))
            return [convert.audit(row) for row in rows]

    def _notify(self, move: AliasMove) -> None:
        if self._on_alias_move is not None:
            _call_hook(self._on_alias_move, move)


# -- helpers: each runs inside the caller's session ---------------------------------------


def _call_hook(hook: Callable[[T], None], value: T) -> None:
    try:
        hook(value)
    except Exception:  # the change is committed; a failing listener must not undo it
        log.exception("registry hook failed", hook=getattr(hook, "__name__", repr(hook)))


def _lock_or_create_model(session: Session, name: str, actor: str) -> ModelRow:
    row = find_model(session, name, lock=True)
    if row is None:
        row = ModelRow(name=name, created_by=actor)
        session.add(row)
        session.flush()  # IntegrityError if another writer created it first: retried
    return row


def _add_version(session: Session, model: ModelRow, new: _NewVersion) -> VersionRow:
    """The next version of ``model``, numbered after the latest and audited."""
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
    )
    session.add(row)
    session.flush()
    audit(
        session,
        new.actor,
        "register",
        new.name,
        row.version,
        reason=new.reason,
        sha256=new.sha256,
        format=new.format,
    )
    return row


def _require_ready(row: VersionRow, name: str) -> None:
    if row.status != "ready":
        raise ConflictError(
            f"version {row.version} of {name!r} is {row.status}; register its artifact again "
            "to serve it, or choose another version"
        )
