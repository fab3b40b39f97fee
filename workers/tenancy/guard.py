"""The tenant boundary as the workers enforce it: whose job a record is, what that
tenant may ask for, and the audit of every refusal.

A worker asks :meth:`Guard.access` once per topic's share of a poll (every record of
a partition has the same topic, and so the same tenant), then, per job,
:meth:`Access.outside` (a reply topic outside the namespace: answered on the
tenant's results topic instead) and :meth:`Access.denial` (what the tenant may not
use); a denial is audited (rate-limited) by :meth:`Guard.refused`. The trainer
uses the same two steps, with its own checks.
"""

from __future__ import annotations

import asyncio
import re
from collections.abc import Callable
from dataclasses import dataclass
from typing import Protocol

from producer.capabilities import Capabilities
from producer.contract.messages import ControlEvent, ErrorCode
from producer.contract.tenancy import Namespace, job_topic_pattern, tenant_of_topic
from producer.kafka import KafkaSettings
from workers.tenancy.audit import RefusalAudit, RefusalLog
from workers.tenancy.control import follow_control
from workers.tenancy.grants import (
    Denial,
    GrantsUnavailable,
    TenantGrants,
    TenantLike,
    TenantLookup,
    check_model,
    check_reply_to,
    check_tenant,
)

Check = Callable[[Namespace, TenantLike | None], Denial | None]


@dataclass(frozen=True, slots=True)
class Access:
    """A record's tenant (``namespace.tenant``; None: the default) and its grants:
    ``tenant`` as the registry has it (None: default or unknown), or ``unavailable``
    saying why the registry could not be asked."""

    namespace: Namespace
    tenant: TenantLike | None = None
    unavailable: str | None = None

    def outside(self, reply_to: str | None) -> Denial | None:
        """Why a job of this tenant may not be answered on ``reply_to``, or None."""
        return check_reply_to(self.namespace, reply_to)

    def denial(self, model: str | None, *checks: Check) -> Denial | None:
        """Why a job of this tenant that uses ``model`` (None: no model to check) is
        refused; or None. Extra ``checks`` (the trainer's) run last."""
        namespace, tenant = self.namespace, self.tenant
        if self.unavailable is not None:
            return Denial("grants-unavailable", self.unavailable, ErrorCode.INTERNAL)
        denial = check_tenant(namespace, tenant)
        if denial is None and model is not None:
            denial = check_model(namespace, tenant, model)
        for check in checks:
            denial = denial or check(namespace, tenant)
        return denial


class TenantStore(TenantLookup, RefusalLog, Protocol):
    """What a worker asks of the registry's tenant store: grants, and the audit log."""


@dataclass(frozen=True, slots=True)
class TenancySettings:
    """How a worker follows the tenants. ``grants_ttl_s``: the longest a tenant's grants
    are used before being read again (a control event forgets them at once);
    refusals are audited at most ``audit_rows`` rows per tenant and reason every
    ``audit_window_s`` (a new tenant's topics: ``workers.kafka.clients.PATTERN_REFRESH_MS``)."""

    grants_ttl_s: float = 30.0
    audit_rows: int = 10
    audit_window_s: float = 60.0


class Guard:
    """Namespaces of topics, tenants' grants (:class:`TenantGrants`) and the refusal
    audit (:class:`RefusalAudit`), for one worker."""

    def __init__(self, prefix: str, grants: TenantGrants, audit: RefusalAudit) -> None:
        self._prefix = prefix
        self.grants = grants
        self.audit = audit
        self._namespaces: dict[str, Namespace] = {}

    @classmethod
    def of(
        cls,
        kafka: KafkaSettings,
        tenants: TenantStore | None,
        settings: TenancySettings,
        actor: str,
    ) -> Guard:
        """The guard of a worker on ``kafka``'s topics answering as ``actor``
        (``tenants`` None: no registry of tenants, so only the default tenant's jobs
        are served)."""
        audit = RefusalAudit(
            tenants,
            actor=actor,
            rows_per_window=settings.audit_rows,
            window_s=settings.audit_window_s,
        )
        grants = TenantGrants(tenants, ttl_s=settings.grants_ttl_s)
        return cls(kafka.topics.prefix, grants, audit)

    async def run(
        self,
        control: KafkaSettings,
        capabilities: Capabilities,
        on_event: Callable[[ControlEvent], None] | None = None,
    ) -> None:
        """Until cancelled: write the audit's rows, and follow ``control``'s control topic
        (on a broker that supports ``capabilities``; the grants of a tenant that changed
        are forgotten; every event is also handed to ``on_event``, for a worker that
        follows the topic for its own reasons)."""

        def follow(event: ControlEvent) -> None:
            self.grants.follow(event)
            if on_event is not None:
                on_event(event)

        following = asyncio.ensure_future(follow_control(control, capabilities, follow))
        try:
            await self.audit.run()
        finally:
            following.cancel()
            await asyncio.gather(following, return_exceptions=True)

    def job_topics(self, word: str) -> re.Pattern[str]:
        """Every tenant's ``word`` topic (``predict`` or ``retrain``), to subscribe to."""
        return re.compile(job_topic_pattern(self._prefix, word))

    def namespace(self, topic: str) -> Namespace:
        """The namespace of the tenant whose job topic ``topic`` is."""
        namespace = self._namespaces.get(topic)
        if namespace is None:
            tenant = tenant_of_topic(self._prefix, topic)
            namespace = self._namespaces[topic] = Namespace(self._prefix, tenant)
        return namespace

    async def access(self, topic: str) -> Access:
        """The tenant of the jobs on ``topic``, with its grants."""
        namespace = self.namespace(topic)
        if namespace.tenant is None:
            return Access(namespace)
        try:
            return Access(namespace, await self.grants.get(namespace.tenant))
        except GrantsUnavailable as exc:
            return Access(namespace, unavailable=f"{exc}; send the job again later")

    def refused(self, access: Access, denial: Denial, *, model: str, job_id: str) -> None:
        """Audit the refusal of job ``job_id`` for ``model`` (not one for want of the
        registry: it is away)."""
        if denial.code != ErrorCode.INTERNAL:
            tenant = access.namespace.tenant
            self.audit.refused(tenant, denial.reason, model=model or None, job_id=job_id)
