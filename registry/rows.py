"""What several stores do inside their own session: find a model by name or a version by
number, write an audit row.

Every mutation writes its audit row in the transaction that makes it, so the log and
the state it describes never disagree.
"""

from __future__ import annotations

from typing import Any

from sqlalchemy import func, select
from sqlalchemy.orm import Session

from producer.contract.names import VERSION_MAX
from registry.errors import ModelNotFound, VersionNotFound
from registry.tables import AuditRow, ModelRow, VersionRow


def no_model(name: str) -> str:
    """The message of :class:`ModelNotFound` for ``name``."""
    return f"no model named {name!r} is registered; maas models list shows the registered models"


def find_model(session: Session, name: str, *, lock: bool = False) -> ModelRow | None:
    """The model row named ``name``; ``lock``: held until commit (alias moves never interleave)."""
    query = select(ModelRow).where(ModelRow.name == name)
    return session.scalar(query.with_for_update() if lock else query)


def model_row(session: Session, name: str, *, lock: bool = False) -> ModelRow:
    """Like :func:`find_model`, but a missing model raises :class:`ModelNotFound`."""
    row = find_model(session, name, lock=lock)
    if row is None:
        raise ModelNotFound(no_model(name))
    return row


def audit(
    session: Session,
    actor: str,
    action: str,
    model: str | None,
    version: int | None,
    **details: Any,
) -> None:
    """Record that ``actor`` did ``action`` (to ``model``/``version``, if any) and why."""
    session.add(AuditRow(actor=actor, action=action, model=model, version=version, details=details))


def version_row(session: Session, model: ModelRow, version: int) -> VersionRow:
    """The row of ``version`` of ``model``; :class:`VersionNotFound` if it has none."""
    row = None
    if 1 <= version <= VERSION_MAX:  # beyond it, a query would overflow SQLite's integers
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
