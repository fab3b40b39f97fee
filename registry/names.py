"""The contract's name rules (:mod:`producer.contract.names`), raised as the registry's
:class:`~registry.errors.InvalidName`: every store checks what it is about to write
with these, so a caller catching :class:`~registry.errors.RegistryError` sees a bad
name too. The rules themselves live only in the contract."""

from __future__ import annotations

from collections.abc import Callable

from producer.contract import names
from registry.errors import InvalidName


def _checked(check: Callable[[str], str], value: str) -> str:
    try:
        return check(value)
    except names.InvalidName as exc:
        raise InvalidName(str(exc)) from exc


def check_model_name(name: str) -> str:
    """``name`` if it may name a model; else :class:`InvalidName`."""
    return _checked(names.check_model_name, name)


def check_alias(alias: str) -> str:
    """``alias`` if it may name an alias; else :class:`InvalidName`."""
    return _checked(names.check_alias, alias)


def check_job_id(job_id: str) -> str:
    """``job_id`` if a retraining run may be recorded under it; else :class:`InvalidName`."""
    return _checked(names.check_job_id, job_id)


def check_tenant_name(name: str) -> str:
    """``name`` if it may name a tenant; else :class:`InvalidName`."""
    return _checked(names.check_tenant_name, name)


def check_principal(principal: str) -> str:
    """``principal`` if it may name a Kafka principal; else :class:`InvalidName`."""
    return _checked(names.check_principal, principal)
