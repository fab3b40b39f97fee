"""Aliases inside the caller's session: read them, find the previous holder, check that a
version fits the alias's clients, move one.

A move updates the alias, appends to its history and writes the audit row, all in the
transaction of the store method that makes it (promote, rollback, register).
"""

from __future__ import annotations

from dataclasses import dataclass

from sqlalchemy import select
from sqlalchemy.orm import Session

from registry import convert
from registry.db import utcnow
from registry.entities import AliasMove, Signature
from registry.errors import AliasNotFound, ConflictError
from registry.rows import audit, version_row
from registry.signatures import check_replaces
from registry.tables import AliasEventRow, AliasRow, ModelRow, VersionRow


@dataclass(frozen=True, slots=True)
class AliasChange:
    """An alias move about to be made: by whom, why, and whether a policy made it."""

    alias: str
    version: int
    actor: str
    reason: str
    kind: str = "promote"  # or "rollback"
    automatic: bool = False
    forced: bool = False  # moved despite an incompatible signature


def alias_holder(session: Session, model: ModelRow, alias: str) -> int:
    """The version ``alias`` of ``model`` points to; :class:`AliasNotFound` if unset."""
    row = session.get(AliasRow, (model.id, alias))
    if row is None:
        known = ", ".join(sorted(alias_map(session, model))) or "none"
        raise AliasNotFound(
            f"model {model.name!r} has no alias {alias!r} (aliases: {known}); "
            f"promote a version first: maas models promote {model.name} VERSION --alias {alias}"
        )
    return row.version


def alias_map(session: Session, model: ModelRow) -> dict[str, int]:
    """Every alias of ``model`` and the version it points to, by alias name."""
    rows = session.execute(
        select(AliasRow.alias, AliasRow.version)
        .where(AliasRow.model_id == model.id)
        .order_by(AliasRow.alias)
    )
    return {alias: version for alias, version in rows}


def previous_holder(session: Session, model: ModelRow, alias: str, current: int) -> int:
    """The version ``alias`` held before ``current`` was last promoted to it: the last
    *different* one (a self-move ``current -> current``, recorded by registries before
    0005, is skipped)."""
    previous = session.scalar(
        select(AliasEventRow.from_version)
        .where(
            AliasEventRow.model_id == model.id,
            AliasEventRow.alias == alias,
            AliasEventRow.kind == "promote",
            AliasEventRow.to_version == current,
            AliasEventRow.from_version != current,
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


def move_alias(session: Session, model: ModelRow, change: AliasChange) -> AliasMove:
    """Make ``change``: the alias, its history and the audit row; returns the move.

    An alias that already points to ``change.version`` is left alone: nothing is
    recorded, and the move returned is not :attr:`~AliasMove.moved`."""
    at = utcnow()
    row = session.get(AliasRow, (model.id, change.alias))
    previous = None if row is None else row.version
    if previous == change.version:
        return AliasMove(
            model=model.name,
            alias=change.alias,
            version=change.version,
            previous_version=previous,
            kind=change.kind,
            actor=change.actor,
            reason=change.reason,
            automatic=change.automatic,
            at=at,
        )
    if row is None:
        session.add(
            AliasRow(model_id=model.id, alias=change.alias, version=change.version, updated_at=at)
        )
    else:
        row.version, row.updated_at = change.version, at
    event = AliasEventRow(
        model_id=model.id,
        alias=change.alias,
        from_version=previous,
        to_version=change.version,
        kind=change.kind,
        automatic=change.automatic,
        actor=change.actor,
        reason=change.reason,
        at=at,
    )
    session.add(event)
    audit(
        session,
        change.actor,
        change.kind,
        model.name,
        change.version,
        alias=change.alias,
        previous=previous,
        reason=change.reason,
        automatic=change.automatic,
        forced=change.forced,
    )
    session.flush()
    return convert.alias_move(event, model.name)


def require_fit(
    session: Session, model: ModelRow, alias: str, row: VersionRow, force_hint: str
) -> None:
    """Refuse to move ``alias`` to ``row`` if that breaks what the alias serves now."""
    holder = alias_map(session, model).get(alias)
    if holder is None or holder == row.version:
        return
    serving = version_row(session, model, holder)
    check_replaces(
        Signature.from_dict(serving.signature),
        Signature.from_dict(row.signature),
        what=f"version {row.version} of {model.name!r}",
        instead_of=f"{alias} (version {holder})",
        force_hint=force_hint,
    )
