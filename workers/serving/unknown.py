"""Unknown model names, answered without a registry round-trip each.

A job naming a model the registry does not have used to cost one registry query of its
own, in the worker's one registry thread: 20,000 jobs naming distinct unregistered
models queued the lookups of every valid job behind theirs (p50 9.5 s). Now:

- :class:`ModelNames` keeps the registry's model names, read by one query that every
  job waiting on it shares, at most every ``min_refresh_s``. A name missing from a
  read asked after the job was received is not registered: ``MODEL_NOT_FOUND``,
  however many distinct names a poll brings. A name is learnt at once from a control
  event (``maas models register`` publishes one).
- :class:`UnknownNames` remembers, per tenant, the names found missing (at most
  ``per_tenant`` each, the least recently asked for dropped first, each for ``ttl_s``),
  so that a name asked for again is answered without even waiting for a read; a
  control event about a model forgets it at once. One tenant's typos fill only its own
  share.
"""

from __future__ import annotations

import asyncio
import math
import time
from collections import OrderedDict
from collections.abc import Awaitable, Callable

__all__ = ["ModelNames", "UnknownNames"]


class ModelNames:
    """The registry's model names as last read by ``read`` (which raises when the
    registry cannot answer)."""

    def __init__(
        self, read: Callable[[], Awaitable[frozenset[str]]], *, min_refresh_s: float = 0.1
    ) -> None:
        self._read_names = read
        self._min_refresh_s = min_refresh_s
        self._names: frozenset[str] = frozenset()
        self._read_at = -math.inf  # when the last read was asked for (epoch s)
        self._reading: asyncio.Future[None] | None = None
        self.reads = 0  # registry queries made, for tests and metrics

    async def registered(self, name: str, since: float) -> bool:
        """Whether ``name`` is registered, as a read asked at ``since`` (epoch s) or
        later says; that read is shared by every caller waiting for one."""
        while name not in self._names and self._read_at < since:
            if self._reading is None or self._reading.done():
                self._reading = asyncio.ensure_future(self._read())
            await asyncio.shield(self._reading)
        return name in self._names

    def learn(self, name: str) -> None:
        """``name`` is registered (a control event said so)."""
        self._names = self._names | {name}

    async def _read(self) -> None:
        await asyncio.sleep(self._read_at + self._min_refresh_s - time.time())
        asked = time.time()
        self.reads += 1
        self._names = await self._read_names()
        self._read_at = asked


class UnknownNames:
    """Model names found not registered, per tenant (None: the default tenant)."""

    def __init__(self, *, per_tenant: int = 1024, ttl_s: float = 30.0) -> None:
        self._per_tenant = per_tenant
        self._ttl_s = ttl_s
        self._by_tenant: dict[str | None, OrderedDict[str, float]] = {}

    def __contains__(self, key: tuple[str | None, str]) -> bool:
        tenant, name = key
        names = self._by_tenant.get(tenant)
        if names is None or name not in names:
            return False
        if names[name] < time.monotonic():
            del names[name]
            return False
        names.move_to_end(name)
        return True

    def add(self, tenant: str | None, name: str) -> None:
        names = self._by_tenant.setdefault(tenant, OrderedDict())
        names[name] = time.monotonic() + self._ttl_s
        names.move_to_end(name)
        while len(names) > self._per_tenant:
            names.popitem(last=False)

    def forget(self, name: str) -> None:
        """``name`` may be registered now: ask the registry again."""
        for names in self._by_tenant.values():
            names.pop(name, None)

    def count(self, tenant: str | None) -> int:
        """How many names are remembered for ``tenant``."""
        return len(self._by_tenant.get(tenant, ()))
