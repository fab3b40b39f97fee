"""The token store: tenants' bearer tokens for the gateway, kept as SHA-256 hashes only.

A token is ``maas_<id>_<secret>``: ``id`` is public (listed, named by ``revoke``), the
secret is 32 random bytes (URL-safe base64) and is shown once, at creation; the store
keeps the SHA-256 of the whole token, so a stolen database yields no usable token. The
gateway finds a token's tenant by that hash (:meth:`TokenStore.tenant_of`), never
from anything else a request says. Creating and revoking are audited with the actor.
"""

from __future__ import annotations

import builtins
import hashlib
import secrets

from sqlalchemy import select
from sqlalchemy.orm import Session

from registry.db import Database, utcnow
from registry.entities import Token
from registry.errors import TenantNotFound, TokenNotFound
from registry.tables import AuditRow, TenantRow, TokenRow

TOKEN_PREFIX = "maas_"


def token_hash(token: str) -> str:
    """The hex SHA-256 of ``token``: what the store keeps and looks tokens up by."""
    return hashlib.sha256(token.encode("utf-8", "surrogatepass")).hexdigest()


class TokenStore:
    """Tokens per tenant; every method is one transaction."""

    def __init__(self, database: Database) -> None:
        self._db = database

    def create(self, tenant: str, *, actor: str) -> tuple[Token, str]:
        """A new token for ``tenant``: its entity and the secret token, which is not
        stored and cannot be shown again. :class:`TenantNotFound` for an unknown tenant."""
        token_id = secrets.token_hex(6)
        token = f"{TOKEN_PREFIX}{token_id}_{secrets.token_urlsafe(32)}"
        with self._db.session() as session:
            tenant_row = _tenant(session, tenant)
            row = TokenRow(
                id=token_id, tenant_id=tenant_row.id, token_hash=token_hash(token), created_by=actor
            )
            session.add(row)
            session.add(
                AuditRow(
                    actor=actor, action="token.create", tenant=tenant, details={"id": token_id}
                )
            )
            session.flush()
            return _entity(row, tenant), token

    def list(self, tenant: str) -> builtins.list[Token]:
        """``tenant``'s tokens, oldest first, revoked ones included."""
        with self._db.session() as session:
            tenant_row = _tenant(session, tenant)
            rows = session.scalars(
                select(TokenRow)
                .where(TokenRow.tenant_id == tenant_row.id)
                .order_by(TokenRow.created_at, TokenRow.id)
            )
            return [_entity(row, tenant) for row in rows]

    def revoke(self, token_id: str, *, actor: str) -> Token:
        """Revoke token ``token_id`` (again: a no-op); :class:`TokenNotFound` if unknown."""
        with self._db.session() as session:
            found = session.execute(
                select(TokenRow, TenantRow.name)
                .join(TenantRow, TenantRow.id == TokenRow.tenant_id)
                .where(TokenRow.id == token_id)
            ).first()
            if found is None:
                raise TokenNotFound(
                    f"no token with id {token_id!r}; `maas tenants token list TENANT` shows them"
                )
            row, tenant = found
            if row.revoked_at is None:
                row.revoked_at = utcnow()
                session.add(
                    AuditRow(
                        actor=actor, action="token.revoke", tenant=tenant, details={"id": row.id}
                    )
                )
            session.flush()
            return _entity(row, tenant)

    def tenant_of(self, token: str) -> str | None:
        """The tenant ``token`` acts for, or None when it is unknown or revoked."""
        with self._db.session() as session:
            return session.scalar(
                select(TenantRow.name)
                .join(TokenRow, TenantRow.id == TokenRow.tenant_id)
                .where(TokenRow.token_hash == token_hash(token), TokenRow.revoked_at.is_(None))
            )


def _tenant(session: Session, name: str) -> TenantRow:
    row = session.scalar(select(TenantRow).where(TenantRow.name == name))
    if row is None:
        raise TenantNotFound(f"no tenant named {name!r}; maas tenants list shows the tenants")
    return row


def _entity(row: TokenRow, tenant: str) -> Token:
    return Token(
        id=row.id,
        tenant=tenant,
        created_by=row.created_by,
        created_at=row.created_at,
        revoked_at=row.revoked_at,
    )
