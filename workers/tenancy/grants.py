"""What a tenant's job may ask for: its grants, read from the registry and cached.

A job's tenant is the topic it came from (:func:`producer.contract.tenancy.tenant_of_topic`),
never a field of the job. The default tenant (``None``) may use every model and
retrain, as before tenants existed; a named tenant only what the registry grants it,
and nothing at all when the registry does not know it. Wherever a job asks to be
answered, that topic must lie in its tenant's namespace
(:meth:`~producer.contract.tenancy.Namespace.owns_reply_topic`).

The checks here are pure: each returns a :class:`Denial` (answered ``UNAUTHORIZED``
and audited) or None. :class:`TenantGrants` is the workers' cache of the registry's
tenants: an entry lives ``ttl_s`` at most, and all are forgotten when the control
topic announces a change, so a revoked grant stops being honoured at once.
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import Collection
from dataclasses import dataclass
from typing import Protocol

from producer.contract.messages import ControlEvent, ErrorCode
from producer.contract.tenancy import Namespace
from workers.errors import WorkerError

_SHOWN = 80  # characters of a job's own text echoed in a refusal


class TenantLike(Protocol):
    """What the workers read of a registry tenant (``registry.entities.Tenant``)."""

    @property
    def name(self) -> str: ...
    @property
    def models(self) -> Collection[str]: ...
    @property
    def retrain(self) -> bool: ...
    @property
    def promote_always(self) -> bool: ...


class TenantLookup(Protocol):
    """What the workers ask of the registry's tenant store."""

    def get(self, name: str) -> TenantLike | None: ...


@dataclass(frozen=True, slots=True)
class Denial:
    """Why a job is refused: ``reason``, a short stable word for the audit log (and its
    rate limit), ``message`` for the client, naming only the job's own tenant, and the
    ``code`` it is answered with."""

    reason: str
    message: str
    code: ErrorCode = ErrorCode.UNAUTHORIZED


def check_reply_to(namespace: Namespace, reply_to: str | None) -> Denial | None:
    """Refuse a ``reply_to`` outside the job's namespace (None: the default, allowed)."""
    if reply_to is None or namespace.owns_reply_topic(reply_to):
        return None
    shown = repr(reply_to[:_SHOWN])
    if namespace.tenant is None:
        message = (
            f"reply_to {shown} is one of maas's own topics, where no job may be answered; "
            f"name {namespace.results!r} (the default) or a topic of your own"
        )
    else:
        message = (
            f"reply_to {shown} is outside tenant {namespace.tenant!r}'s topics; name "
            f"{namespace.results!r} (the default) or a topic starting {namespace.results + '.'!r}"
        )
    return Denial("reply-to-outside-namespace", message)


def check_tenant(namespace: Namespace, tenant: TenantLike | None) -> Denial | None:
    """Refuse every job of a named tenant the registry does not know (removed, or its
    topics made by hand)."""
    if namespace.tenant is None or tenant is not None:
        return None
    return Denial(
        "unknown-tenant",
        f"tenant {namespace.tenant!r} is not registered, so its jobs are not served; "
        f"its operator adds it with: maas tenants add {namespace.tenant}",
    )


def check_model(namespace: Namespace, tenant: TenantLike | None, model: str) -> Denial | None:
    """Refuse a model the job's tenant is not granted (the default tenant: every model)."""
    if namespace.tenant is None or (tenant is not None and model in tenant.models):
        return None
    return Denial(
        "model-not-granted",
        f"tenant {namespace.tenant!r} is not granted model {model[:_SHOWN]!r}; its "
        f"operator grants it with: maas tenants grant {namespace.tenant} {model[:_SHOWN]}",
    )


def check_retrain(namespace: Namespace, tenant: TenantLike | None) -> Denial | None:
    """Refuse retraining to a named tenant without the retrain grant."""
    if namespace.tenant is None or (tenant is not None and tenant.retrain):
        return None
    return Denial(
        "retrain-not-granted",
        f"tenant {namespace.tenant!r} may not retrain models; its operator allows it "
        f"with: maas tenants grant {namespace.tenant} --retrain",
    )


def check_promote(namespace: Namespace, tenant: TenantLike | None, mode: str) -> Denial | None:
    """Refuse ``promote: "always"`` to a named tenant without that grant (the default
    tenant's is the trainer's ``--allow-promote-always``, checked by
    :meth:`workers.training.allowed.Allowed.check_promote`)."""
    if mode != "always" or namespace.tenant is None:
        return None
    if tenant is not None and tenant.promote_always:
        return None
    return Denial(
        "promote-always-not-granted",
        f'promote "always" skips the evaluation gate, and tenant {namespace.tenant!r} is '
        'not granted it; use "gate", or "never" and ask its operator to promote',
    )


class GrantsUnavailable(WorkerError):
    """The registry could not be asked for a tenant's grants."""


class TenantGrants:
    """The registry's tenants as last read, one entry per tenant for ``ttl_s`` at most.

    Lookups run in a thread (the registry is synchronous), one at a time per tenant
    however many jobs ask; the default tenant never needs one. :meth:`forget` drops
    every entry, and any lookup in flight, so that what the registry says after a
    control event is what the next job is checked against.
    """

    def __init__(self, lookup: TenantLookup | None, *, ttl_s: float = 30.0) -> None:
        """``lookup`` None: no registry of tenants, so every named tenant is unknown."""
        self._lookup = lookup
        self._ttl_s = ttl_s
        self._cached: dict[str, tuple[float, TenantLike | None]] = {}
        self._reading: dict[str, asyncio.Future[TenantLike | None]] = {}

    async def get(self, name: str) -> TenantLike | None:
        """Tenant ``name`` as the registry has it (None: unknown); raises
        :class:`GrantsUnavailable` when the registry cannot be asked."""
        cached = self._cached.get(name)
        if cached is not None and time.monotonic() - cached[0] < self._ttl_s:
            return cached[1]
        reading = self._reading.get(name)
        if reading is None:
            reading = asyncio.ensure_future(self._read(name))
            self._reading[name] = reading
            reading.add_done_callback(lambda done: self._settle(name, done))
        return await asyncio.shield(reading)

    def forget(self, name: str | None = None) -> None:
        """Drop tenant ``name``'s entry (None: every entry), and any read in flight: the
        next job is checked against a fresh read."""
        if name is None:
            self._cached.clear()
            self._reading.clear()
        else:
            self._cached.pop(name, None)
            self._reading.pop(name, None)

    def follow(self, event: ControlEvent) -> None:
        """Forget what a control event says changed: a tenant's grants."""
        if event.event == "tenant":
            self.forget(event.tenant)

    async def _read(self, name: str) -> TenantLike | None:
        if self._lookup is None:
            return None
        try:
            return await asyncio.to_thread(self._lookup.get, name)
        except Exception as exc:
            raise GrantsUnavailable(
                f"the registry could not be asked for tenant {name!r}'s grants "
                f"({type(exc).__name__})"
            ) from exc

    def _settle(self, name: str, done: asyncio.Future[TenantLike | None]) -> None:
        if self._reading.get(name) is not done:  # forgotten meanwhile: keep nothing
            return
        del self._reading[name]
        if not done.cancelled() and done.exception() is None:
            self._cached[name] = (time.monotonic(), done.result())
