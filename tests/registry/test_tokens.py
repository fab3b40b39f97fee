"""The token store on SQLite and PostgreSQL: tokens shown once, kept as hashes, revoked."""

from __future__ import annotations

import pytest
from sqlalchemy import select

from registry import Registry, TenantNotFound, TokenNotFound
from registry.tables import TokenRow
from registry.tokens import token_hash


@pytest.fixture
def store(any_registry: Registry) -> Registry:
    any_registry.tenants.add("acme", actor="ops")
    any_registry.tenants.add("beta", actor="ops")
    return any_registry


def test_a_token_names_its_tenant_and_only_its_hash_is_stored(store: Registry) -> None:
    token, secret = store.tokens.create("acme", actor="ops")
    assert secret.startswith(f"maas_{token.id}_") and len(secret) > 40
    assert store.tokens.tenant_of(secret) == "acme"
    assert store.tokens.tenant_of(secret + "x") is None
    with store.database.session() as session:
        stored = session.scalars(select(TokenRow)).all()
    assert [row.token_hash for row in stored] == [token_hash(secret)]
    assert all(secret not in str(value) for row in stored for value in vars(row).values())


def test_tokens_are_listed_per_tenant_and_revoked_by_id(store: Registry) -> None:
    first, secret = store.tokens.create("acme", actor="ops")
    second, _ = store.tokens.create("acme", actor="ops")
    store.tokens.create("beta", actor="ops")
    assert {t.id for t in store.tokens.list("acme")} == {first.id, second.id}
    revoked = store.tokens.revoke(first.id, actor="ops")
    assert not revoked.active and revoked.revoked_at is not None
    assert store.tokens.revoke(first.id, actor="ops").revoked_at == revoked.revoked_at
    assert store.tokens.tenant_of(secret) is None
    assert {t.id: t.active for t in store.tokens.list("acme")} == {first.id: False, second.id: True}
    actions = [entry.action for entry in store.tenants.audit("acme")]
    assert actions[:3] == ["token.revoke", "token.create", "token.create"]


def test_unknown_tenants_and_tokens_are_named(store: Registry) -> None:
    with pytest.raises(TenantNotFound, match="nope"):
        store.tokens.create("nope", actor="ops")
    with pytest.raises(TokenNotFound, match="abc"):
        store.tokens.revoke("abc", actor="ops")


def test_removing_a_tenant_removes_its_tokens(store: Registry) -> None:
    _, secret = store.tokens.create("beta", actor="ops")
    store.tenants.remove("beta", actor="ops")
    assert store.tokens.tenant_of(secret) is None
