"""The tenant store on SQLite and PostgreSQL: tenants, grants, their audit, refusals."""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path

import pytest

from registry import (
    ConflictError,
    Draft,
    InvalidName,
    ModelNotFound,
    Refusal,
    Registry,
    TenantExists,
    TenantNotFound,
)

MakeOnnx = Callable[..., Path]


@pytest.fixture
def store(any_registry: Registry, make_onnx: MakeOnnx) -> Registry:
    """A registry with models ``digits``, ``text`` and ``other`` registered."""
    for name in ("digits", "text", "other"):
        any_registry.models.register(name, Draft(make_onnx()), actor="ops")
    return any_registry


def test_a_tenant_is_added_with_its_grants_and_read_back(store: Registry) -> None:
    added = store.tenants.add(
        "acme", models=["digits", "text"], retrain=True, principal="User:acme", actor="ops"
    )
    assert added.models == frozenset({"digits", "text"})
    assert (added.retrain, added.promote_always, added.principal) == (True, False, "User:acme")
    assert added.created_at.tzinfo is not None
    assert store.tenants.get("acme") == added
    assert added.may_use("digits") and not added.may_use("other")
    bare = store.tenants.add("beta", actor="ops")
    assert (bare.models, bare.retrain, bare.principal) == (frozenset(), False, None)
    assert store.tenants.list() == [added, bare]
    assert store.tenants.get("gamma") is None


def test_grant_and_revoke_change_only_the_models_named(store: Registry) -> None:
    store.tenants.add("acme", models=["digits"], actor="ops")
    granted = store.tenants.grant("acme", ["text", "digits"], actor="ann")
    assert granted.models == {"digits", "text"}
    assert store.tenants.revoke("acme", ["digits"], actor="bob").models == {"text"}
    with pytest.raises(ConflictError, match="no grant for other; its models: text"):
        store.tenants.revoke("acme", ["other", "text"], actor="bob")
    assert store.tenants.get("acme").models == {"text"}  # type: ignore[union-attr]


def test_every_change_is_audited_with_its_actor_and_tenant(store: Registry) -> None:
    store.tenants.add("acme", models=["digits"], promote_always=True, actor="ops")
    store.tenants.grant("acme", ["text"], actor="ann")
    store.tenants.revoke("acme", ["digits"], actor="bob")
    store.tenants.remove("acme", actor="cy")
    entries = store.tenants.audit("acme")
    assert [(e.action, e.actor, e.tenant) for e in entries] == [
        ("tenant.remove", "cy", "acme"),
        ("tenant.revoke", "bob", "acme"),
        ("tenant.grant", "ann", "acme"),
        ("tenant.add", "ops", "acme"),
    ]
    assert entries[3].details["promote_always"] is True
    assert entries[1].details["models"] == ["digits"]
    assert store.models.audit()[0] == entries[0]  # the one audit log


def test_remove_deletes_the_tenant_and_its_grants(store: Registry) -> None:
    store.tenants.add("acme", models=["digits"], principal="User:acme", actor="ops")
    removed = store.tenants.remove("acme", actor="ops")
    assert (removed.name, removed.principal, removed.models) == ("acme", "User:acme", {"digits"})
    assert store.tenants.get("acme") is None and store.tenants.list() == []
    again = store.tenants.add("acme", actor="ops")  # the name is free again, with no grants
    assert again.models == frozenset()


def test_clear_errors_and_nothing_half_done(store: Registry) -> None:
    store.tenants.add("acme", actor="ops")
    with pytest.raises(TenantExists, match="'acme' already exists"):
        store.tenants.add("acme", models=["digits"], actor="ops")
    for verb in (
        lambda: store.tenants.grant("nope", ["digits"], actor="ops"),
        lambda: store.tenants.revoke("nope", ["digits"], actor="ops"),
        lambda: store.tenants.remove("nope", actor="ops"),
    ):
        with pytest.raises(TenantNotFound, match="no tenant named 'nope'; maas tenants list"):
            verb()
    with pytest.raises(ModelNotFound, match="'missing'"):
        store.tenants.add("beta", models=["digits", "missing"], actor="ops")
    with pytest.raises(ModelNotFound):
        store.tenants.grant("acme", ["digits", "missing"], actor="ops")
    assert [t.name for t in store.tenants.list()] == ["acme"]
    assert store.tenants.get("acme").models == frozenset()  # type: ignore[union-attr]


@pytest.mark.parametrize(
    ("name", "message"),
    [
        ("Acme", "lower-case letters, digits and '-'"),
        ("a_b", "not allowed"),
        ("x" * 64, "1 to 63 characters"),
        ("", "1 to 63 characters"),
        ("acme\x00", "not allowed"),
        ("predict", "topic word"),
    ],
)
def test_tenant_names_are_checked_on_both_databases(
    store: Registry, name: str, message: str
) -> None:
    with pytest.raises(InvalidName, match=message):
        store.tenants.add(name, actor="ops")
    assert store.tenants.list() == []


def test_the_longest_tenant_name_and_principal_fit(store: Registry) -> None:
    longest = "t" * 63
    principal = "User:" + "p" * 195
    added = store.tenants.add(longest, models=["digits"], principal=principal, actor="ops")
    assert store.tenants.get(longest) == added
    store.tenants.record_refusals([Refusal(longest, "model-not-granted", "x" * 200)], actor="w")
    assert store.tenants.audit(longest)[0].tenant == longest


@pytest.mark.parametrize(
    "principal", ["acme", "User:", "User:*", "User:a b", "User:a\nb", ":acme", "User:" + "p" * 196]
)
def test_principals_are_checked(store: Registry, principal: str) -> None:
    with pytest.raises(InvalidName, match="Kafka principal"):
        store.tenants.add("acme", principal=principal, actor="ops")
    assert store.tenants.get("acme") is None


def test_model_names_in_grants_are_checked(store: Registry) -> None:
    with pytest.raises(InvalidName, match="model name"):
        store.tenants.add("acme", models=["bad name"], actor="ops")
    store.tenants.add("acme", actor="ops")
    with pytest.raises(InvalidName):
        store.tenants.grant("acme", ["a/b"], actor="ops")


def test_refusals_are_written_in_one_batch_with_their_tenant(store: Registry) -> None:
    store.tenants.add("acme", actor="ops")
    written = store.tenants.record_refusals(
        [
            Refusal("acme", "model-not-granted", model="other", job_id="j1"),
            Refusal(
                "acme", "reply-to-outside-namespace", model="digits", job_id="j2", suppressed=41
            ),
            Refusal(None, "reply-to-internal-topic", job_id="j3"),
        ],
        actor="host:1",
    )
    assert written == 3 and store.tenants.record_refusals([], actor="host:1") == 0
    newest = store.tenants.audit("acme", limit=2)
    assert [(e.action, e.actor, e.model) for e in newest] == [
        ("refusal", "host:1", "digits"),
        ("refusal", "host:1", "other"),
    ]
    assert newest[0].details == {
        "reason": "reply-to-outside-namespace",
        "job_id": "j2",
        "suppressed": 41,
    }
    default = store.models.audit()[0]
    assert (default.tenant, default.details["reason"]) == (None, "reply-to-internal-topic")


def test_retrain_and_promote_always_are_granted_and_revoked_by_name(store: Registry) -> None:
    store.tenants.add("acme", models=["digits"], actor="ops")
    granted = store.tenants.grant("acme", retrain=True, promote_always=True, actor="ann")
    assert (granted.retrain, granted.promote_always, granted.models) == (True, True, {"digits"})
    kept = store.tenants.revoke("acme", ["digits"], promote_always=True, actor="bob")
    assert (kept.retrain, kept.promote_always, kept.models) == (True, False, frozenset())
    assert store.tenants.grant("acme", ["text"], actor="cy").retrain  # untouched unless named
    entries = store.tenants.audit("acme", limit=3)
    assert [e.details for e in entries] == [
        {"models": ["text"]},
        {"models": ["digits"], "promote_always": True},
        {"models": [], "retrain": True, "promote_always": True},
    ]
