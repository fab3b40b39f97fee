"""Loaded model versions: resolve a job's version, load its runtime once, batch per version.

Alias lookups are cached for a short time and invalidated by control events, so an
alias move reaches every worker within seconds (hot swap) while a job always runs
on the version it resolved to, which its Result names. While the registry is
unreachable, an alias whose lookup fails is served at the version it last resolved
to (logged once per outage), and looked up again every ``alias_ttl_s``. A model
name the registry does not have is answered ``MODEL_NOT_FOUND`` without a lookup of
its own (:mod:`workers.serving.unknown`).
"""

from __future__ import annotations

import asyncio
import time
from collections import OrderedDict
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from typing import Any, Protocol

import structlog

from producer.contract.messages import ErrorCode
from registry.artifacts import ArtifactStore
from registry.entities import ModelVersion
from registry.errors import AliasNotFound, ModelNotFound, RegistryError, VersionNotFound
from registry.rows import no_model
from workers.batching.batcher import BatchConfig, DynamicBatcher
from workers.errors import WorkerError
from workers.runtime.loader import Runtime, RuntimeSettings, load_runtime
from workers.serving.heap import freeze_long_lived
from workers.serving.unknown import ModelNames, UnknownNames

log = structlog.get_logger(__name__)


class ResolveError(WorkerError):
    """The job names a model, version or alias the registry does not have."""

    def __init__(self, message: str, code: ErrorCode) -> None:
        super().__init__(message)
        self.code = code


class VersionLookup(Protocol):
    """What the cache asks of the model store: a version by number, or by alias."""

    def get_version(self, name: str, version: int) -> ModelVersion: ...

    def resolve(self, name: str, alias: str = ...) -> ModelVersion: ...

    def model_names(self) -> list[str]: ...


@dataclass
class Loaded:
    """A model version ready to serve."""

    version: ModelVersion
    runtime: Runtime
    batcher: DynamicBatcher


@dataclass(frozen=True, slots=True)
class _Cached:
    version: ModelVersion
    expires: float


class ModelCache:
    """Resolves versions through the registry and keeps up to ``max_loaded`` loaded."""

    def __init__(
        self,
        store: VersionLookup,
        *,
        runtime: RuntimeSettings,
        batch: BatchConfig,
        alias_ttl_s: float = 5.0,
        max_loaded: int = 8,
    ) -> None:
        self._store = store
        self._runtime_settings = runtime
        self._batch = batch
        self._alias_ttl_s = alias_ttl_s
        self._max_loaded = max_loaded
        self._aliases: dict[tuple[str, str], _Cached] = {}
        self._loaded: OrderedDict[tuple[str, int], Loaded] = OrderedDict()
        self._loading: dict[tuple[str, int], asyncio.Future[Loaded]] = {}
        self._lookups: dict[tuple[str, str, Any], asyncio.Future[ModelVersion]] = {}
        self._generations: dict[str, int] = {}  # bumped on every alias move of a model
        self._stale: set[tuple[str, str]] = set()  # aliases served while the registry is down
        self._registry_pool = ThreadPoolExecutor(1, thread_name_prefix="maas-registry")
        self.names = ModelNames(self.registered_names)
        self.unknown = UnknownNames()

    async def resolve(
        self,
        model: str,
        version: int | None,
        alias: str,
        *,
        tenant: str | None = None,
        since: float | None = None,
    ) -> ModelVersion:
        """The version a job asked for, explicitly or through its alias: ``tenant``'s
        job (None: the default tenant), received at ``since`` (epoch s; default: now)."""
        if version is not None:
            loaded = self._loaded.get((model, version))
            if loaded is not None:
                return loaded.version
            await self._known(model, tenant, since)
            return await self._lookup(("version", model, version), self._store.get_version)
        cached = self._aliases.get((model, alias))
        if cached is not None and cached.expires > time.monotonic():
            return cached.version
        await self._known(model, tenant, since)
        generation = self._generations.get(model, 0)
        try:
            found = await self._lookup(("alias", model, alias), self._store.resolve)
        except RegistryError as exc:
            if cached is None or not exc.retriable:
                raise
            return self._last_known(model, alias, cached.version, exc)
        if (model, alias) in self._stale:
            self._stale.discard((model, alias))
            log.info("registry reachable again; alias resolved", model=model, alias=alias)
        if self._generations.get(model, 0) == generation:  # no alias move meanwhile
            self._aliases[(model, alias)] = _Cached(found, time.monotonic() + self._alias_ttl_s)
        return found

    async def _known(self, model: str, tenant: str | None, since: float | None) -> None:
        """Raise ``MODEL_NOT_FOUND`` when the registry has no ``model``: remembered for
        ``tenant``, or missing from a read of its names asked after ``since``."""
        if (tenant, model) in self.unknown:
            raise ResolveError(no_model(model), ErrorCode.MODEL_NOT_FOUND)
        try:
            registered = await self.names.registered(model, time.time() if since is None else since)
        except RegistryError:
            return  # the registry is away: the lookup says so, and is retried
        if not registered:
            self.unknown.add(tenant, model)
            raise ResolveError(no_model(model), ErrorCode.MODEL_NOT_FOUND)

    async def registered_names(self) -> frozenset[str]:
        """The registry's model names (one query, in the registry thread)."""
        loop = asyncio.get_running_loop()
        names = await loop.run_in_executor(self._registry_pool, self._store.model_names)
        return frozenset(names)

    def _last_known(
        self, model: str, alias: str, version: ModelVersion, error: RegistryError
    ) -> ModelVersion:
        """Serve ``alias`` at ``version`` for another ``alias_ttl_s``: the registry is down."""
        if (model, alias) not in self._stale:
            self._stale.add((model, alias))
            log.warning(
                "registry unavailable; serving the last known version of the alias",
                model=model,
                alias=alias,
                version=version.version,
                error=str(error),
            )
        self._aliases[(model, alias)] = _Cached(version, time.monotonic() + self._alias_ttl_s)
        return version

    async def _lookup(
        self, key: tuple[str, str, Any], call: Callable[[str, Any], ModelVersion]
    ) -> ModelVersion:
        """One registry lookup per key however many jobs ask at once (no stampede)."""
        pending = self._lookups.get(key)
        if pending is None:
            pending = asyncio.ensure_future(self._registry(call, key[1], key[2]))
            self._lookups[key] = pending
            pending.add_done_callback(lambda done: self._forget_lookup(key, done))
        return await asyncio.shield(pending)

    def _forget_lookup(self, key: tuple[str, str, Any], done: asyncio.Future[ModelVersion]) -> None:
        if self._lookups.get(key) is done:
            del self._lookups[key]

    async def _registry(
        self, call: Callable[[str, Any], ModelVersion], model: str, which: Any
    ) -> ModelVersion:
        loop = asyncio.get_running_loop()
        try:
            return await loop.run_in_executor(self._registry_pool, call, model, which)
        except ModelNotFound as exc:
            raise ResolveError(str(exc), ErrorCode.MODEL_NOT_FOUND) from exc
        except (VersionNotFound, AliasNotFound) as exc:
            raise ResolveError(str(exc), ErrorCode.VERSION_NOT_FOUND) from exc

    def invalidate(self, model: str) -> None:
        """Forget cached aliases of ``model`` (a control event says one moved, or that
        ``model`` was registered)."""
        if model:
            self.names.learn(model)
            self.unknown.forget(model)
        self._generations[model] = self._generations.get(model, 0) + 1
        for key in [k for k in self._aliases if k[0] == model]:
            del self._aliases[key]
        for lookup in [k for k in self._lookups if k[0] == "alias" and k[1] == model]:
            del self._lookups[lookup]  # jobs from now on look the alias up afresh

    async def get(self, version: ModelVersion) -> Loaded:
        """The loaded model for ``version``, loading it once however many jobs wait."""
        key = (version.model, version.version)
        loaded = self._loaded.get(key)
        if loaded is not None:
            self._loaded.move_to_end(key)
            return loaded
        pending = self._loading.get(key)
        if pending is None:
            pending = asyncio.ensure_future(self._load(version))
            self._loading[key] = pending
            pending.add_done_callback(lambda _: self._loading.pop(key, None))
        return await asyncio.shield(pending)

    async def _load(self, version: ModelVersion) -> Loaded:
        started = time.perf_counter()
        runtime = await asyncio.to_thread(self._open, version)
        batcher = DynamicBatcher(
            runtime.infer, self._batch, name=f"{version.model}:{version.version}"
        )
        loaded = Loaded(version, runtime, batcher)
        self._loaded[(version.model, version.version)] = loaded
        freeze_long_lived()  # the session and its graph live as long as the version
        log.info(
            "model loaded",
            model=version.model,
            version=version.version,
            provider=runtime.provider,
            load_ms=round((time.perf_counter() - started) * 1000, 1),
        )
        await self._evict()
        return loaded

    def _open(self, version: ModelVersion) -> Runtime:
        ArtifactStore.verify(version.path, version.sha256)
        return load_runtime(version.path, version.format, version.signature, self._runtime_settings)

    async def _evict(self) -> None:
        while len(self._loaded) > self._max_loaded:
            _, oldest = self._loaded.popitem(last=False)
            await oldest.batcher.drain()
            await oldest.batcher.aclose()
            oldest.runtime.close()
            log.info("model unloaded", model=oldest.version.model, version=oldest.version.version)

    def loaded(self) -> list[Loaded]:
        """The versions loaded now, each with its batcher."""
        return list(self._loaded.values())

    def batchers(self) -> list[DynamicBatcher]:
        return [loaded.batcher for loaded in self._loaded.values()]

    async def aclose(self) -> None:
        for loaded in self._loaded.values():
            await loaded.batcher.drain()
            await loaded.batcher.aclose()
            loaded.runtime.close()
        self._loaded.clear()
        self._registry_pool.shutdown(wait=False)
