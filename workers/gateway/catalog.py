"""What the gateway asks the registry: a model's version and signature, a tenant's grants.

The registry is synchronous (SQLAlchemy), so each lookup runs in a thread and its
answer is cached for a few seconds (:class:`~workers.gateway.cache.TtlCache`): metadata
requests and the datatypes of a response cost no database round trip while warm.
"""

from __future__ import annotations

import asyncio
from typing import Protocol

from registry.entities import ModelVersion, Tenant
from registry.errors import DatabaseError, ModelNotFound, VersionNotFound
from workers.gateway.cache import TtlCache
from workers.gateway.errors import Forbidden, NotFound, Unavailable

DEFAULT_ALIAS = "production"


class ModelSource(Protocol):
    def get_version(self, name: str, version: int) -> ModelVersion: ...

    def resolve(self, name: str, alias: str = DEFAULT_ALIAS) -> ModelVersion: ...


class TenantSource(Protocol):
    def get(self, name: str) -> Tenant | None: ...


def version_or_alias(text: str | None) -> int | str:
    """A path's ``versions/{v}``: a version number, or an alias name (none: production)."""
    if text is None or text == "":
        return DEFAULT_ALIAS
    return int(text) if text.isdigit() else text


class Catalog:
    """Models and tenants as the registry knows them, cached for ``ttl_s``."""

    def __init__(self, models: ModelSource, tenants: TenantSource, ttl_s: float) -> None:
        self._models = models
        self._tenants = tenants
        self._versions: TtlCache[tuple[str, int | str], ModelVersion] = TtlCache(ttl_s)
        self._grants: TtlCache[str, tuple[Tenant | None]] = TtlCache(ttl_s)

    async def version(self, model: str, which: int | str) -> ModelVersion:
        """The version ``which`` (a number or an alias) of ``model``; :class:`NotFound`
        when there is none."""
        cached = self._versions.get((model, which))
        if cached is not None:
            return cached
        try:
            found = await asyncio.to_thread(self._lookup, model, which)
        except (ModelNotFound, VersionNotFound) as exc:
            raise NotFound(str(exc)) from exc
        except DatabaseError as exc:
            raise Unavailable(f"the registry cannot be reached: {exc}") from exc
        return self._versions.put((model, which), found)

    def _lookup(self, model: str, which: int | str) -> ModelVersion:
        if isinstance(which, int):
            return self._models.get_version(model, which)
        return self._models.resolve(model, which)

    async def check_grant(self, tenant: str | None, model: str) -> None:
        """Raise :class:`Forbidden` unless ``tenant`` (None: the default tenant, which
        may use every model) is granted ``model``."""
        if tenant is None:
            return
        cached = self._grants.get(tenant)
        if cached is None:
            try:
                cached = self._grants.put(
                    tenant, (await asyncio.to_thread(self._tenants.get, tenant),)
                )
            except DatabaseError as exc:
                raise Unavailable(f"the registry cannot be reached: {exc}") from exc
        granted = cached[0]
        if granted is None or not granted.may_use(model):
            raise Forbidden(
                f"tenant {tenant!r} may not use model {model!r}; the operator grants it "
                f"with `maas tenants grant {tenant} {model}`"
            )
