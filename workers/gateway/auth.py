"""Who is calling: the tenant of the request's bearer token, and nothing else.

``Authorization: Bearer <token>`` (gRPC: the ``authorization`` metadata) names a token
made by ``maas tenants token create``; the registry maps its hash to a tenant. No
header acts for the default tenant only where the operator allowed anonymous calls;
otherwise, and for an unknown or revoked token, the answer is 401. A tenant field in
the request (a header, a topic, a body field) is never read.

Checked tokens are cached for ``ttl_s`` (also unknown ones, so a flood of bad tokens
does not reach the database): a revoked token stops working within that long.
"""

from __future__ import annotations

import asyncio
import hashlib
from dataclasses import dataclass
from typing import Protocol

from registry.errors import DatabaseError
from workers.gateway.cache import TtlCache
from workers.gateway.errors import Unauthenticated, Unavailable


class TokenSource(Protocol):
    def tenant_of(self, token: str) -> str | None: ...


@dataclass(frozen=True, slots=True)
class Caller:
    """An authenticated caller: ``tenant`` None is the default tenant."""

    tenant: str | None
    anonymous: bool = False

    @property
    def label(self) -> str:
        """The tenant as metrics and logs name it."""
        return self.tenant or "default"


ANONYMOUS = Caller(tenant=None, anonymous=True)
_UNKNOWN = ""  # cached for a token that names no tenant


class Authenticator:
    """Turns an ``Authorization`` header into a :class:`Caller`, or raises 401."""

    def __init__(self, tokens: TokenSource, *, allow_anonymous: bool, ttl_s: float) -> None:
        self._tokens = tokens
        self._allow_anonymous = allow_anonymous
        self._cache: TtlCache[str, str] = TtlCache(ttl_s)

    async def caller(self, authorization: str | None) -> Caller:
        if not authorization:
            if self._allow_anonymous:
                return ANONYMOUS
            raise Unauthenticated(
                "this gateway needs a bearer token (Authorization: Bearer <token>); an "
                "operator makes one with `maas tenants token create TENANT`"
            )
        scheme, _, token = authorization.strip().partition(" ")
        token = token.strip()
        if scheme.lower() != "bearer" or not token:
            raise Unauthenticated("the Authorization header must be 'Bearer <token>'")
        tenant = await self._tenant_of(token)
        if tenant == _UNKNOWN:
            raise Unauthenticated(
                "the bearer token is unknown or revoked; ask the operator for a new one "
                "(`maas tenants token create TENANT`)"
            )
        return Caller(tenant=tenant)

    async def _tenant_of(self, token: str) -> str:
        key = hashlib.sha256(token.encode("utf-8", "surrogatepass")).hexdigest()
        cached = self._cache.get(key)
        if cached is not None:
            return cached
        try:
            tenant = await asyncio.to_thread(self._tokens.tenant_of, token)
        except DatabaseError as exc:
            raise Unavailable(f"the registry cannot be reached to check the token: {exc}") from exc
        return self._cache.put(key, tenant or _UNKNOWN)
