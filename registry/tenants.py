"""The tenant store: tenants, the models each is granted, and the jobs refused to them.

A tenant is a namespace of topics (``producer.contract.tenancy``); the registry keeps what the
operator granted it: the models its jobs may name, whether it may retrain them, and
whether its retrain jobs may skip the promotion gate (``promote_always``). The default
tenant is not stored: it serves every model, and the trainer's flags say what it may do.

Every change is one transaction with its audit row (actor and tenant). Refused jobs
are written in batches by :meth:`TenantStore.record_refusals`; the worker rate-limits
them before they get here.
"""

from __future__ import annotations

import builtins
from collections.abc import Iterable
from typing import Any

from sqlalchemy import select
from sqlalchemy.exc import IntegrityError
from sqlalchemy.orm import Session

from registry import convert
from registry.db import Database
from registry.entities import AuditEntry, Refusal, Tenant
from registry.errors import ConflictError, TenantExists, TenantNotFound
from registry.names import check_model_name, check_principal, check_tenant_name
from registry.rows import model_row
from registry.tables import AuditRow, TenantGrantRow, TenantRow

REFUSAL_ACTION = "refusal"


class TenantStore:
    """Tenants and their grants; every method is one transaction."""

    def __init__(self, database: Database) -> None:
        self._db = database

    def add(
        self,
        name: str,
        *,
        models: Iterable[str] = (),
        retrain: bool = False,
        promote_always: bool = False,
        principal: str | None = None,
        actor: str,
    ) -> Tenant:
        """Create tenant ``name`` with the grants given; :class:`TenantExists` if it is
        there already, :class:`~registry.errors.ModelNotFound` for a model not registered."""
        check_tenant_name(name)
        if principal is not None:
            check_principal(principal)
        wanted = _model_names(models)
        try:
            with self._db.session() as session:
                if _find(session, name) is not None:
                    raise TenantExists(_exists(name))
                row = TenantRow(
                    name=name,
                    retrain=retrain,
                    promote_always=promote_always,
                    principal=principal,
                    created_by=actor,
                )
                session.add(row)
                session.flush()
                _grant(session, row, wanted, actor)
                _audit(
                    session,
                    actor,
                    "tenant.add",
                    name,
                    models=sorted(wanted),
                    retrain=retrain,
                    promote_always=promote_always,
                    principal=principal,
                )
                return _entity(session, row)
        except IntegrityError as exc:  # another operator added it first
            raise TenantExists(_exists(name)) from exc

    def get(self, name: str) -> Tenant | None:
        """Tenant ``name``, or None if there is no such tenant."""
        with self._db.session() as session:
            row = _find(session, name)
            return None if row is None else _entity(session, row)

    def list(self) -> builtins.list[Tenant]:
        """Every tenant, by name."""
        with self._db.session() as session:
            rows = session.scalars(select(TenantRow).order_by(TenantRow.name)).all()
            grants: dict[int, set[str]] = {row.id: set() for row in rows}
            for tenant_id, model in session.execute(
                select(TenantGrantRow.tenant_id, TenantGrantRow.model)
            ):
                grants.setdefault(tenant_id, set()).add(model)
            return [convert.tenant(row, grants[row.id]) for row in rows]

    def grant(
        self,
        name: str,
        models: Iterable[str] = (),
        *,
        retrain: bool = False,
        promote_always: bool = False,
        actor: str,
    ) -> Tenant:
        """Let tenant ``name`` use ``models`` too (each must be registered), and retrain
        them or skip the promotion gate where ``retrain`` / ``promote_always`` say so."""
        wanted = _model_names(models)
        named = _named(retrain=retrain, promote_always=promote_always)
        with self._db.session() as session:
            row = _row(session, name, lock=True)
            added = _grant(session, row, wanted, actor)
            row.retrain = row.retrain or retrain
            row.promote_always = row.promote_always or promote_always
            _audit(session, actor, "tenant.grant", name, models=sorted(added), **named)
            return _entity(session, row)

    def revoke(
        self,
        name: str,
        models: Iterable[str] = (),
        *,
        retrain: bool = False,
        promote_always: bool = False,
        actor: str,
    ) -> Tenant:
        """Take ``models`` (and the retrain or promote-always grant, where they say so)
        from tenant ``name``; :class:`ConflictError` for a model it was not granted
        (nothing is revoked then)."""
        unwanted = _model_names(models)
        named = _named(retrain=retrain, promote_always=promote_always)
        with self._db.session() as session:
            row = _row(session, name, lock=True)
            granted = _granted(session, row)
            missing = unwanted - granted
            if missing:
                raise ConflictError(
                    f"tenant {name!r} has no grant for {', '.join(sorted(missing))}; its "
                    f"models: {', '.join(sorted(granted)) or 'none'} (maas tenants list)"
                )
            for model in unwanted:
                session.delete(session.get(TenantGrantRow, (row.id, model)))
            row.retrain = row.retrain and not retrain
            row.promote_always = row.promote_always and not promote_always
            _audit(session, actor, "tenant.revoke", name, models=sorted(unwanted), **named)
            session.flush()
            return _entity(session, row)

    def remove(self, name: str, *, actor: str) -> Tenant:
        """Delete tenant ``name`` and its grants; returns what it was (its principal
        says which Kafka ACLs to delete)."""
        with self._db.session() as session:
            row = _row(session, name, lock=True)
            removed = _entity(session, row)
            _audit(session, actor, "tenant.remove", name)
            session.delete(row)
            return removed

    def record_refusals(self, entries: Iterable[Refusal], *, actor: str) -> int:
        """Write one audit row per refusal (action ``refusal``), all in one transaction;
        ``actor`` is who refused (the worker). Returns how many rows were written."""
        rows = [
            AuditRow(
                actor=actor,
                action=REFUSAL_ACTION,
                model=entry.model,
                tenant=entry.tenant,
                details={
                    "reason": entry.reason,
                    "job_id": entry.job_id,
                    "suppressed": entry.suppressed,
                },
            )
            for entry in entries
        ]
        if rows:
            with self._db.session() as session:
                session.add_all(rows)
        return len(rows)

    def audit(self, name: str, limit: int = 100) -> builtins.list[AuditEntry]:
        """The newest audit entries of tenant ``name`` first: its changes and refusals."""
        with self._db.session() as session:
            rows = session.scalars(
                select(AuditRow)
                .where(AuditRow.tenant == name)
                .order_by(AuditRow.id.desc())
                .limit(limit)
            )
            return [convert.audit(row) for row in rows]


def _audit(session: Session, actor: str, action: str, tenant: str, **details: Any) -> None:
    """Record that ``actor`` did ``action`` to ``tenant``, in the change's transaction."""
    session.add(AuditRow(actor=actor, action=action, tenant=tenant, details=details))


def _named(*, retrain: bool, promote_always: bool) -> dict[str, bool]:
    """The grants a grant or revoke names, for its audit row."""
    named = {"retrain": retrain, "promote_always": promote_always}
    return {flag: True for flag, given in named.items() if given}


def _model_names(models: Iterable[str]) -> set[str]:
    return {check_model_name(model) for model in models}


def _find(session: Session, name: str, *, lock: bool = False) -> TenantRow | None:
    query = select(TenantRow).where(TenantRow.name == name)
    return session.scalar(query.with_for_update() if lock else query)


def _row(session: Session, name: str, *, lock: bool = False) -> TenantRow:
    row = _find(session, name, lock=lock)
    if row is None:
        raise TenantNotFound(f"no tenant named {name!r}; maas tenants list shows the tenants")
    return row


def _exists(name: str) -> str:
    return (
        f"tenant {name!r} already exists; change its models with maas tenants grant/revoke, "
        "or remove it first"
    )


def _granted(session: Session, row: TenantRow) -> set[str]:
    return set(
        session.scalars(select(TenantGrantRow.model).where(TenantGrantRow.tenant_id == row.id))
    )


def _grant(session: Session, row: TenantRow, models: set[str], actor: str) -> set[str]:
    """Grant ``models`` (each must be registered) to ``row``; returns the ones new to it."""
    for model in sorted(models):
        model_row(session, model)
    added = models - _granted(session, row)
    session.add_all(TenantGrantRow(tenant_id=row.id, model=m, granted_by=actor) for m in added)
    session.flush()
    return added


def _entity(session: Session, row: TenantRow) -> Tenant:
    return convert.tenant(row, _granted(session, row))
