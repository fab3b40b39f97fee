"""The workers' side of tenancy without a broker: what a tenant's job may ask for, the
cache of grants, and the rate-limited audit of refusals (on the real SQLite registry)."""

from __future__ import annotations

import asyncio
import threading
from collections.abc import Iterable
from dataclasses import dataclass, field

import pytest

from producer.contract.messages import ControlEvent, ErrorCode
from producer.contract.tenancy import Namespace
from registry.entities import Refusal
from registry.registry import Registry
from workers.tenancy.audit import RefusalAudit
from workers.tenancy.grants import GrantsUnavailable, TenantGrants, check_promote, check_retrain
from workers.tenancy.guard import Access

DEFAULT = Namespace("maas.")
ACME = Namespace("maas.", "acme")


@dataclass(frozen=True)
class _Grant:
    name: str = "acme"
    models: frozenset[str] = frozenset({"digits"})
    retrain: bool = False
    promote_always: bool = False


@dataclass
class _Lookup:
    """A tenant store that counts its reads; ``gate``, when set, holds each read."""

    tenant: _Grant | None = field(default_factory=_Grant)
    reads: int = 0
    fail: bool = False
    gate: threading.Event | None = None

    def get(self, name: str) -> _Grant | None:
        self.reads += 1
        if self.gate is not None:
            self.gate.wait(5)
        if self.fail:
            raise OSError("database unreachable")
        return self.tenant


@pytest.mark.parametrize(
    ("namespace", "reply_to", "allowed"),
    [
        (DEFAULT, None, True),
        (DEFAULT, "maas.results", True),
        (DEFAULT, "my-replies", True),
        (DEFAULT, "maas.control", False),
        (DEFAULT, "maas.dlq", False),
        (DEFAULT, "maas.predict", False),
        (DEFAULT, "maas.acme.results", False),
        (ACME, None, True),
        (ACME, "maas.acme.results", True),
        (ACME, "maas.acme.results.mine", True),
        (ACME, "maas.results", False),
        (ACME, "maas.other.results", False),
        (ACME, "maas.acme.predict", False),
        (ACME, "my-replies", False),
    ],
)
def test_reply_to_must_lie_in_the_jobs_namespace(
    namespace: Namespace, reply_to: str | None, allowed: bool
) -> None:
    denial = Access(namespace).outside(reply_to)
    assert (denial is None) is allowed
    if denial is not None:
        assert denial.code == ErrorCode.UNAUTHORIZED
        assert denial.reason == "reply-to-outside-namespace"
        assert namespace.results in denial.message  # where it may be answered instead


def test_a_named_tenant_uses_only_its_grants_and_the_default_tenant_everything() -> None:
    grant = _Grant()
    assert Access(DEFAULT).denial("anything", check_retrain) is None
    assert Access(ACME, grant).denial("digits") is None
    refused = Access(ACME, grant).denial("secret-model")
    assert refused is not None and refused.reason == "model-not-granted"
    assert "'acme'" in refused.message and "secret-model" in refused.message
    unknown = Access(ACME, None).denial("digits")
    assert unknown is not None and unknown.reason == "unknown-tenant"
    no_retrain = Access(ACME, grant).denial("digits", check_retrain)
    assert no_retrain is not None and no_retrain.reason == "retrain-not-granted"
    trainer = _Grant(retrain=True)
    assert Access(ACME, trainer).denial("digits", check_retrain) is None
    for mode, granted, refused_reason in [
        ("always", False, "promote-always-not-granted"),
        ("always", True, None),
        ("gate", False, None),
    ]:
        tenant = _Grant(retrain=True, promote_always=granted)
        denial = check_promote(ACME, tenant, mode)
        assert (denial and denial.reason) == refused_reason
    assert check_promote(DEFAULT, None, "always") is None  # the trainer's flag decides
    away = Access(ACME, unavailable="registry away").denial("digits")
    assert away is not None and away.code == ErrorCode.INTERNAL


async def test_grants_are_read_once_per_tenant_until_forgotten_or_stale() -> None:
    lookup = _Lookup(gate=threading.Event())
    grants = TenantGrants(lookup, ttl_s=0.2)
    waiting = [asyncio.ensure_future(grants.get("acme")) for _ in range(20)]
    await asyncio.sleep(0.05)
    lookup.gate.set()  # type: ignore[union-attr]
    assert {(await w).name for w in waiting} == {"acme"}  # type: ignore[union-attr]
    assert lookup.reads == 1  # one read however many jobs asked
    await grants.get("acme")
    assert lookup.reads == 1
    grants.follow(ControlEvent(event="promote", model="digits"))  # not a tenant's change
    await grants.get("acme")
    assert lookup.reads == 1
    grants.follow(ControlEvent(event="tenant", tenant="acme", reason="revoked"))
    await grants.get("acme")
    assert lookup.reads == 2
    await asyncio.sleep(0.25)  # past the TTL
    await grants.get("acme")
    assert lookup.reads == 3
    lookup.fail = True
    grants.forget()
    with pytest.raises(GrantsUnavailable, match="acme"):
        await grants.get("acme")
    assert await TenantGrants(None).get("acme") is None  # no registry: nobody is known


async def test_a_flood_of_refusals_writes_a_bounded_number_of_rows_that_add_up(
    registry: Registry,
) -> None:
    registry.tenants.add("acme", actor="test")
    audit = RefusalAudit(registry.tenants, actor="worker-1", rows_per_window=5, window_s=0.3)
    for i in range(1000):
        audit.refused("acme", "model-not-granted", model="secret", job_id=f"j{i}")
    audit.refused("acme", "reply-to-outside-namespace", model="digits", job_id="r")
    await audit.flush()  # the first window is not over: its held-back refusals wait
    first = registry.tenants.audit("acme", limit=1000)
    assert len([e for e in first if e.action == "refusal"]) == 6
    await asyncio.sleep(0.35)
    for i in range(500):  # a second window
        audit.refused("acme", "model-not-granted", model="secret", job_id=f"k{i}")
    await audit.flush(final=True)
    rows = [e for e in registry.tenants.audit("acme", limit=1000) if e.action == "refusal"]
    flooded = [r for r in rows if r.details["reason"] == "model-not-granted"]
    assert len(flooded) <= 2 * (5 + 1)
    assert sum(1 + r.details["suppressed"] for r in flooded) == 1500
    assert {r.actor for r in rows} == {"worker-1"}
    assert all(r.model == "secret" for r in flooded)
    other = [r for r in rows if r.details["reason"] == "reply-to-outside-namespace"]
    assert [(r.details["job_id"], r.details["suppressed"]) for r in other] == [("r", 0)]


@dataclass
class _AwayThenBack:
    """An audit log whose database is away until ``up``."""

    up: bool = False
    written: list[Refusal] = field(default_factory=list)

    def record_refusals(self, entries: Iterable[Refusal], *, actor: str) -> int:
        if not self.up:
            raise OSError("database unreachable")
        self.written.extend(entries)
        return len(self.written)


async def test_refusals_wait_for_a_registry_that_is_away() -> None:
    sink = _AwayThenBack()
    audit = RefusalAudit(sink, actor="w", rows_per_window=2)
    for _ in range(3):
        audit.refused(None, "reply-to-outside-namespace")
    await audit.flush()
    assert sink.written == []
    sink.up = True
    await audit.flush(final=True)
    assert sum(1 + r.suppressed for r in sink.written) == 3
