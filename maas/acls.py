"""Kafka ACLs for tenants: what ``maas tenants add --principal`` creates and ``remove``
deletes, and what the service's own principal needs (docs/security.md).

A tenant's principal may write its job topics (``maas.acme.predict``,
``maas.acme.retrain``), read its results (``maas.acme.results`` and every topic
starting ``maas.acme.results.``) and use consumer groups whose id starts with its
namespace (``maas.acme.``); nothing else. It cannot write any results topic (no forged
Results), read another tenant's, nor join the service's groups (``maas-workers``, ...).

Rules are plain data (:class:`Rule`), turned into kafka-python's ACL objects only where
they go to the broker (:class:`AclAdmin`, with the operator's ``MAAS_KAFKA_*``
credentials: a super user, or one allowed ALTER on the cluster).
"""

from __future__ import annotations

import warnings
from collections.abc import Iterable
from dataclasses import dataclass
from enum import StrEnum
from typing import Any

from maas.errors import CommandError
from producer.contract.tenancy import Namespace
from producer.kafka import KafkaSettings

with warnings.catch_warnings():  # kafka-python 3.0 reads its schemas with a deprecated API
    warnings.simplefilter("ignore", DeprecationWarning)
    from kafka import KafkaAdminClient
    from kafka import errors as kafka_errors
    from kafka.admin import (
        ACL,
        ACLFilter,
        ACLOperation,
        ACLPermissionType,
        ACLResourcePatternType,
        ResourcePattern,
        ResourcePatternFilter,
        ResourceType,
    )

# The service's consumer groups start with this (maas-workers, maas-trainers, ...);
# tenants' groups start with their namespace (maas.acme.), so the two never meet. Its
# transactional ids start with the topic prefix (workers.serving.transactions), and tenants
# have no ACL on transactional ids at all.
SERVICE_GROUP_PREFIX = "maas-"
# A filter that matches no ACL: deleting it asks the broker whether it manages ACLs.
_PROBE_PRINCIPAL = "User:maas-acl-probe"


class Resource(StrEnum):
    """The kinds of resource an ACL of maas names."""

    TOPIC = "topic"
    GROUP = "group"
    TRANSACTIONAL_ID = "transactional-id"


@dataclass(frozen=True, slots=True)
class Rule:
    """One ALLOW ACL: ``principal`` may do ``operation`` on the ``resource`` named
    ``name`` (every one whose name starts with it, if ``prefixed``), from any host."""

    principal: str
    operation: str  # READ, WRITE, DESCRIBE, CREATE, ... (Kafka's operation names)
    resource: Resource
    name: str
    prefixed: bool = False

    def describe(self) -> str:
        """``User:acme WRITE topic maas.acme.predict`` (``maas.acme.results.*`` if prefixed)."""
        name = f"{self.name}*" if self.prefixed else self.name
        return f"{self.principal} {self.operation} {self.resource} {name}"


def tenant_group_prefix(namespace: Namespace) -> str:
    """The consumer group ids a tenant's principal may use start with this: ``maas.acme.``."""
    return namespace.stem


def tenant_rules(namespace: Namespace, principal: str) -> list[Rule]:
    """The ACLs of tenant ``namespace.tenant``'s ``principal``, and nothing more."""
    if namespace.tenant is None:
        raise ValueError("the default tenant has no ACLs of its own")
    topic = Resource.TOPIC

    def both(
        operation: str, resource: Resource, name: str, *, prefixed: bool = False
    ) -> list[Rule]:
        return [
            Rule(principal, operation, resource, name, prefixed),
            Rule(principal, "DESCRIBE", resource, name, prefixed),
        ]

    return [
        *both("WRITE", topic, namespace.predict),
        *both("WRITE", topic, namespace.retrain),
        *both("READ", topic, namespace.results),
        *both("READ", topic, f"{namespace.results}.", prefixed=True),
        *both("READ", Resource.GROUP, tenant_group_prefix(namespace), prefixed=True),
    ]


def service_rules(prefix: str, principal: str) -> list[Rule]:
    """The ACLs the service's principal (workers, trainer, scheduler) needs: read every
    tenant's job topics and the control topic, write results, dead letters and control
    events, create the topics it finds missing, its own consumer groups, and
    transactional ids for ``--exactly-once``. Every topic under ``prefix`` is the
    service's; a default-tenant ``reply_to`` outside it needs a WRITE of its own."""
    return [
        *(Rule(principal, op, Resource.TOPIC, prefix, True) for op in _SERVICE_TOPIC_OPERATIONS),
        Rule(principal, "READ", Resource.GROUP, SERVICE_GROUP_PREFIX, True),
        Rule(principal, "WRITE", Resource.TRANSACTIONAL_ID, prefix, True),
        Rule(principal, "DESCRIBE", Resource.TRANSACTIONAL_ID, prefix, True),
    ]


_SERVICE_TOPIC_OPERATIONS = ("READ", "WRITE", "DESCRIBE", "CREATE")


class AclError(CommandError):
    """The broker cannot hold ACLs (no authorizer: the embedded broker, or Kafka
    without one), or the operator's principal may not manage them."""


class AclAdmin:
    """Creates, deletes and lists ACLs on the broker of ``settings`` (kafka-python's admin
    client, with the ``MAAS_KAFKA_*`` credentials). Use as a context manager."""

    def __init__(self, settings: KafkaSettings) -> None:
        self._servers = settings.bootstrap_servers
        self._admin = KafkaAdminClient(**settings.common())

    def __enter__(self) -> AclAdmin:
        return self

    def __exit__(self, *exc: object) -> None:
        self._admin.close()

    def check(self) -> None:
        """Make sure the broker enforces ACLs and lets this principal manage them, else
        :class:`AclError` saying why (before anything is written anywhere)."""
        nothing = ACLFilter(
            _PROBE_PRINCIPAL,
            "*",
            ACLOperation.ANY,
            ACLPermissionType.ANY,
            ResourcePatternFilter(ResourceType.TOPIC, "-", ACLResourcePatternType.LITERAL),
        )
        try:
            [(_, _, error)] = self._admin.delete_acls([nothing])
        except kafka_errors.IncompatibleBrokerVersion as exc:
            raise self._cannot_enforce("does not support ACLs (the embedded broker?)") from exc
        if error is kafka_errors.SecurityDisabledError:
            raise self._cannot_enforce("has no authorizer (authorizer.class.name is not set)")
        if error is kafka_errors.ClusterAuthorizationFailedError:
            raise AclError(
                f"the Kafka principal that MAAS_KAFKA_* log in as may not manage ACLs on "
                f"{self._servers}: run maas tenants as a super user, or allow it ALTER "
                "and DESCRIBE on the cluster"
            )
        if error is not kafka_errors.NoError:
            raise AclError(f"the Kafka broker at {self._servers} refused ACLs: {error.__name__}")

    def create(self, rules: Iterable[Rule]) -> None:
        """Create ``rules`` (those that exist already stay as they are)."""
        failed = self._admin.create_acls([_acl(rule) for rule in rules])["failed"]
        if failed:
            names = ", ".join(sorted({error.__name__ for error in failed}))
            raise AclError(f"the Kafka broker refused {len(failed)} of the ACLs: {names}")

    def delete(self, rules: Iterable[Rule]) -> int:
        """Delete exactly ``rules`` (each is a filter that matches itself only); returns
        how many ACLs were deleted."""
        results = self._admin.delete_acls([_acl(rule) for rule in rules])
        refused = {error.__name__ for _, _, error in results if error is not kafka_errors.NoError}
        if refused:
            raise AclError(f"the Kafka broker refused to delete ACLs: {', '.join(sorted(refused))}")
        return sum(len(matched) for _, matched, _ in results)

    def rules_of(self, principal: str) -> list[Rule]:
        """Every ALLOW ACL of ``principal`` on the broker, in a stable order."""
        every = ResourcePatternFilter(ResourceType.ANY, None, ACLResourcePatternType.ANY)
        query = ACLFilter(principal, None, ACLOperation.ANY, ACLPermissionType.ALLOW, every)
        acls, _ = self._admin.describe_acls(query)
        known = (acl for acl in acls if acl.resource_pattern.resource_type in _RESOURCES)
        return sorted((_rule(acl) for acl in known), key=Rule.describe)

    def _cannot_enforce(self, why: str) -> AclError:
        return AclError(
            f"the Kafka broker at {self._servers} {why}, so --principal cannot be "
            "enforced: use Apache Kafka with SASL and the StandardAuthorizer "
            "(docs/security.md), or add the tenant without --principal; nothing was changed"
        )


_RESOURCE_TYPES = {
    Resource.TOPIC: ResourceType.TOPIC,
    Resource.GROUP: ResourceType.GROUP,
    Resource.TRANSACTIONAL_ID: ResourceType.TRANSACTIONAL_ID,
}


_RESOURCES = {theirs: mine for mine, theirs in _RESOURCE_TYPES.items()}


def _acl(rule: Rule) -> Any:
    """``rule`` as kafka-python's ACL (also the filter that matches exactly it)."""
    pattern = ResourcePattern(
        _RESOURCE_TYPES[rule.resource],
        rule.name,
        ACLResourcePatternType.PREFIXED if rule.prefixed else ACLResourcePatternType.LITERAL,
    )
    return ACL(rule.principal, "*", ACLOperation[rule.operation], ACLPermissionType.ALLOW, pattern)


def _rule(acl: Any) -> Rule:
    pattern = acl.resource_pattern
    resource = next(
        mine for mine, theirs in _RESOURCE_TYPES.items() if theirs == pattern.resource_type
    )
    prefixed = pattern.pattern_type == ACLResourcePatternType.PREFIXED
    return Rule(acl.principal, acl.operation.name, resource, pattern.resource_name, prefixed)
