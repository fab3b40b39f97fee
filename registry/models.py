"""The model store: models, their versions and aliases, rollbacks and the audit log.

Version numbers are allocated under a row lock on the model (PostgreSQL) or the
database write lock (SQLite), and a lost race on a unique constraint is retried.
Callers that must react to alias moves (e.g. publish ``maas.control`` events) pass
``on_alias_move``; it runs after the move is committed. The registry itself knows
nothing of Kafka.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, replace
from typing import TypeVar

import structlog
from sqlalchemy import func, select

from registry import convert
from registry.aliases import (
    AliasChange,
    alias_holder,
    alias_map,
    move_alias,
    previous_holder,
    require_fit,
)
from registry.artifacts import ArtifactStore
from registry.db import Database, retrying
from registry.drafts import Draft, NewVersion, add_version, lock_or_create_model, stage
from registry.entities import (
    AliasMove,
    AuditEntry,
    Model,
    ModelSummary,
    ModelVersion,
    RollbackRecord,
)
from registry.errors import ConflictError
from registry.names import check_alias, check_model_name
from registry.rows import audit, model_row, version_row
from registry.runs import RunOutcome, finish
from registry.tables import AliasEventRow, AuditRow, ModelRow, RollbackRow, VersionRow

log = structlog.get_logger(__name__)

AliasMoveHook = Callable[[AliasMove], None]
ArchiveHook = Callable[[ModelVersion], None]
T = TypeVar("T")


@dataclass(frozen=True, slots=True)
class _Rollback:
    """An alias to move back: to ``to`` (None: the version it held before), by whom and
    why; ``automatic`` (by a policy) or ``forced`` (despite an incompatible signature)."""

    alias: str
    to: int | None
    actor: str
    reason: str
    automatic: bool = False
    forced: bool = False


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
        draft: Draft,
        *,
        actor: str,
        alias: str = "production",
        run_job_id: str | None = None,
        force: bool = False,
    ) -> ModelVersion:
        """Register ``draft`` as the next version of ``name`` (creating the model).

        With ``draft.promote``, ``alias`` moves to the new version, unless that would
        break its clients (:class:`~registry.errors.IncompatibleSignature`, nothing
        registered) and ``force`` is not given. With ``run_job_id`` the retraining run is
        finished (status ok) in the same transaction, so a crash never leaves a version
        without its run or vice versa. ``draft.derived_from`` (a version of ``name``,
        which must exist) and ``draft.method`` record that the artifact was made from
        that version's, e.g. by quantisation.
        """
        if (draft.derived_from is None) != (draft.method is None):
            raise ValueError("derived_from and method go together: give both or neither")
        news = self._stage(name, [draft], actor, alias)
        return self._register(news, alias, run_job_id, force)[0]

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

        At most one of them is promoted (to ``alias``), and only where it keeps the
        alias's clients working. With ``run_job_id`` the run is finished in the same
        transaction, recording the promoted version, else ``base``.
        """
        if derived.method is None:
            raise ValueError("the derived draft needs the method it was made by")
        if base.promote and derived.promote:
            raise ValueError("promote base or derived, not both")
        news = self._stage(name, [base, derived], actor, alias)
        first, second = self._register(news, alias, run_job_id, force=False)
        return first, second

    def _stage(self, name: str, drafts: list[Draft], actor: str, alias: str) -> list[NewVersion]:
        """Check the names and store the artifacts: the work done before the transaction."""
        check_model_name(name)
        if any(draft.promote for draft in drafts):
            check_alias(alias)
        return [stage(self.artifacts, name, draft, actor) for draft in drafts]

    def _register(
        self, news: list[NewVersion], alias: str, run_job_id: str | None, force: bool
    ) -> list[ModelVersion]:
        versions, move = retrying(
            lambda: self._register_once(news, alias, run_job_id, force),
            f"registering {news[0].name!r}",
        )
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
        self, news: list[NewVersion], alias: str, run_job_id: str | None, force: bool
    ) -> tuple[list[ModelVersion], AliasMove | None]:
        """One transaction: each of ``news`` after the first is derived from the one before."""
        with self._db.session() as session:
            model = lock_or_create_model(session, news[0].name, news[0].actor)
            rows: list[VersionRow] = []
            for new in news:
                source = rows[-1].version if rows else new.derived_from
                rows.append(add_version(session, model, replace(new, derived_from=source)))
            chosen = next((i for i, new in enumerate(news) if new.promote), None)
            move = None
            if chosen is not None:
                new, row = news[chosen], rows[chosen]
                if not force:
                    hint = "Register it without --promote, or with --force to promote it anyway."
                    require_fit(session, model, alias, row, hint)
                change = AliasChange(alias, row.version, new.actor, new.reason, forced=force)
                move = move_alias(session, model, change)
            if run_job_id is not None:
                recorded, row = news[chosen or 0], rows[chosen or 0]
                outcome = RunOutcome(
                    "ok",
                    row.version,
                    recorded.metrics,
                    promoted=move is not None,
                    reason=recorded.reason,
                )
                finish(session, run_job_id, outcome)
            return [convert.version(row, model.name) for row in rows], move

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

    def model_names(self) -> list[str]:
        """The names of every registered model (one query: what a worker checks a
        job's model against)."""
        with self._db.session() as session:
            return list(session.scalars(select(ModelRow.name)))

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
        check_alias(alias)
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
        force: bool = False,
    ) -> AliasMove:
        """Move ``alias`` back to ``to`` or, by default, to the version it held before.

        Refused with :class:`~registry.errors.IncompatibleSignature` when the target would
        break the alias's clients, unless ``force``.
        """
        return self._roll_back(name, _Rollback(alias, to, actor, reason, forced=force))

    def roll_back_automatically(
        self, name: str, *, alias: str, to: int, actor: str, reason: str
    ) -> AliasMove:
        """A policy's :meth:`rollback`, recorded as automatic: it returns to what served
        before the promotion it undoes, and is never refused for the signature."""
        return self._roll_back(name, _Rollback(alias, to, actor, reason, automatic=True))

    def _roll_back(self, name: str, rollback: _Rollback) -> AliasMove:
        alias, to, actor, reason = rollback.alias, rollback.to, rollback.actor, rollback.reason
        automatic, force = rollback.automatic, rollback.forced
        with self._db.session() as session:
            model = model_row(session, name, lock=True)
            current = alias_holder(session, model, alias)
            target = to if to is not None else previous_holder(session, model, alias, current)
            if target == current:
                raise ConflictError(
                    f"alias {alias!r} of {name!r} already points to version {current}; "
                    f"name another: maas models rollback {name} --to VERSION"
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
        if self._on_alias_move is not None and move.moved:
            _call_hook(self._on_alias_move, move)


# -- helpers: each runs inside the caller's session ---------------------------------------


def _call_hook(hook: Callable[[T], None], value: T) -> None:
    try:
        hook(value)
    except Exception:  # the change is committed; a failing listener must not undo it
        log.exception("registry hook failed", hook=getattr(hook, "__name__", repr(hook)))


def _require_ready(row: VersionRow, name: str) -> None:
    if row.status != "ready":
        raise ConflictError(
            f"version {row.version} of {name!r} is {row.status}; register its artifact again "
            "to serve it, or choose another version"
        )
