"""What several stores do inside their own session: find a model by name, write an audit row.

Every mutation writes its audit row in the transaction that makes it, so the log and
the state it describes never disagree.
"""

from __future__ import annotations

from typing import Any

from sqlalchemy import select
from sqlalchemy.orm import Session

from registry.errors import ModelNotFound
from registry.tables import AuditRow, ModelRow


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
