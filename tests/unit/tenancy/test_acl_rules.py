"""The ACLs of a tenant's principal and of the service's, as data (no broker): what
``maas tenants add --principal`` creates, tests/integration/test_acls.py holds the broker to."""

from __future__ import annotations

import pytest

from maas.acls import Resource, Rule, service_rules, tenant_group_prefix, tenant_rules
from producer.kafka import Topics

ACME = Topics("maas.").namespace("acme")


def test_a_tenant_may_write_its_jobs_and_read_its_results_only() -> None:
    rules = {(r.operation, r.resource, r.name, r.prefixed) for r in tenant_rules(ACME, "User:a")}
    topic, group = Resource.TOPIC, Resource.GROUP
    assert rules == {
        ("WRITE", topic, "maas.acme.predict", False),
        ("DESCRIBE", topic, "maas.acme.predict", False),
        ("WRITE", topic, "maas.acme.retrain", False),
        ("DESCRIBE", topic, "maas.acme.retrain", False),
        ("READ", topic, "maas.acme.results", False),
        ("DESCRIBE", topic, "maas.acme.results", False),
        ("READ", topic, "maas.acme.results.", True),
        ("DESCRIBE", topic, "maas.acme.results.", True),
        ("READ", group, "maas.acme.", True),
        ("DESCRIBE", group, "maas.acme.", True),
    }
    assert {r.principal for r in tenant_rules(ACME, "User:a")} == {"User:a"}


def test_tenant_groups_never_meet_the_services() -> None:
    prefix = tenant_group_prefix(ACME)
    assert prefix == "maas.acme."
    for group in ("maas-workers", "maas-workers.digits", "maas-trainers", "maas.acme-2.app"):
        assert not group.startswith(prefix)
    service_groups = [r for r in service_rules("maas.", "User:s") if r.resource == Resource.GROUP]
    assert [(r.name, r.prefixed) for r in service_groups] == [("maas-", True)]
    assert not prefix.startswith("maas-")


def test_rules_describe_themselves() -> None:
    rule = Rule("User:a", "READ", Resource.TOPIC, "maas.acme.results.", prefixed=True)
    assert rule.describe() == "User:a READ topic maas.acme.results.*"


def test_the_default_tenant_has_no_acls_of_its_own() -> None:
    with pytest.raises(ValueError, match="default tenant"):
        tenant_rules(Topics("maas.").namespace(None), "User:a")
