"""The gateway's one path for a prediction, whichever door (HTTP or gRPC) it came in by.

:meth:`Gateway.infer` admits the caller (limits), checks the model and the tenant's
grant in the registry (cached), publishes the request as an OIP record and waits for
its answer; every failure is a :class:`~workers.gateway.errors.GatewayError` whose
status the door answers. The doors only translate: OIP request → named numpy arrays
→ a binary OIP record (:func:`~workers.gateway.records.body_of`) → here → an
:class:`Answer` (numpy outputs typed by the model's signature) → OIP response.
"""

from __future__ import annotations

import uuid
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

import numpy as np

from producer.aio import AsyncHandle
from producer.contract.messages import Result
from producer.contract.names import InvalidName, check_alias, check_model_name
from producer.contract.oip import Body
from producer.errors import ClientError, JobTimeout
from registry.entities import ModelVersion, Signature
from workers.gateway import metrics
from workers.gateway.auth import Caller
from workers.gateway.catalog import Catalog
from workers.gateway.dispatch import Dispatcher
from workers.gateway.errors import (
    GatewayError,
    NoAnswer,
    NotFound,
    Unavailable,
    from_code,
)
from workers.gateway.jobs import AsyncJob, AsyncJobs
from workers.gateway.limits import Admission
from workers.gateway.probes import Reachability
from workers.gateway.records import Job
from workers.gateway.settings import GatewaySettings


@dataclass(frozen=True, slots=True)
class Answer:
    """A Result that came back ok, with the outputs as arrays of the model's dtypes."""

    result: Result
    outputs: dict[str, np.ndarray]

    @property
    def version(self) -> str:
        return str(self.result.version)


@dataclass(frozen=True, slots=True)
class Target:
    """What a request names: a model and a version number or an alias."""

    model: str
    which: int | str

    @classmethod
    def parse(cls, model: str, version: str | None) -> Target:
        """From a path's ``{name}`` and ``{version}``; :class:`NotFound` for a name that
        cannot be a model's (no such model can exist)."""
        try:
            check_model_name(model)
            if version and not version.isdigit():
                check_alias(version)
        except InvalidName as exc:
            raise NotFound(str(exc)) from exc
        which: int | str = (
            int(version) if version and version.isdigit() else version or "production"
        )
        return cls(model, which)


@dataclass(frozen=True, slots=True)
class Parts:
    """The gateway's parts, built once at the entrypoint (:mod:`workers.gateway.server`)."""

    settings: GatewaySettings
    catalog: Catalog
    dispatcher: Dispatcher
    admission: Admission
    reachability: Reachability
    jobs: AsyncJobs


class Gateway:
    """Predictions and model metadata for authenticated callers."""

    def __init__(self, parts: Parts) -> None:
        self.parts = parts
        self._timeout_s = parts.settings.timeout_s

    async def version(self, caller: Caller, target: Target) -> ModelVersion:
        """The version ``target`` names, if ``caller``'s tenant may use the model."""
        found = await self.parts.catalog.version(target.model, target.which)
        await self.parts.catalog.check_grant(caller.tenant, target.model)
        return found

    async def infer(self, caller: Caller, target: Target, body: Body) -> Answer:
        """Run the OIP request ``body`` through the model and wait for the answer."""
        with self.parts.admission.admit(caller.tenant):
            handle = await self._submit(caller, target, body, self._timeout_s)
            metrics.PENDING.inc()
            try:
                return await self.answer(handle, target.model)
            finally:
                metrics.PENDING.dec()

    async def submit(
        self,
        caller: Caller,
        target: Target,
        body: Body,
        request: Any,
        shape: Mapping[str, Any],
    ) -> AsyncJob:
        """Publish the job and return at once; its answer is polled by job id. The job id
        names this gateway, whose reply topic holds the answer (:meth:`find`); ``shape``
        travels with the job and comes back as its Result's metadata."""
        gateway_id = self.parts.dispatcher.gateway_id
        with self.parts.admission.admit(caller.tenant):
            ttl_s = self.parts.settings.async_ttl_s
            handle = await self._submit(
                caller, target, body, ttl_s, f"{gateway_id}-{uuid.uuid4().hex}", shape
            )
        return self.parts.jobs.add(handle, caller.tenant, target.model, request)

    async def find(self, caller: Caller, job_id: str) -> Result | None:
        """The Result of an async job that this process does not hold (another gateway
        took it, or this one before a restart): read from the reply topic its id names,
        in the caller's namespace only. None: not answered yet."""
        gateway_id, _, rest = job_id.partition("-")
        if not rest or not gateway_id.isalnum():
            raise NotFound(f"no job {job_id!r}: async job ids are the ones a 202 gave")
        ttl_s = self.parts.settings.async_ttl_s
        return await self.parts.dispatcher.find(caller.tenant, gateway_id, job_id, ttl_s)

    async def answer(self, handle: AsyncHandle, model: str) -> Answer:
        """The answer ``handle`` settles with; :class:`NoAnswer` naming the job when it
        does not come in time."""
        try:
            reply = await handle.result(self._timeout_s)
        except JobTimeout as exc:
            raise NoAnswer(
                f"no answer for job {handle.job_id} within {exc.timeout_s:g}s; the model's "
                "workers may be down or behind (the job stays on Kafka and may still run)"
            ) from exc
        except ClientError as exc:
            raise Unavailable(f"job {handle.job_id} was not answered: {exc}") from exc
        if not isinstance(reply, Result):
            raise GatewayError(f"job {handle.job_id} was answered with a retrain result")
        return await self.answered(reply, model)

    async def answered(self, reply: Result, model: str) -> Answer:
        """A Result as an :class:`Answer`, or the error its code maps to."""
        if reply.error is not None:
            raise from_code(reply.error.code, f"{reply.error.message} (job {reply.job_id})")
        served = await self.parts.catalog.version(model, reply.version or 0)
        return Answer(reply, typed_outputs(reply, served.signature))

    async def _submit(
        self,
        caller: Caller,
        target: Target,
        body: Body,
        timeout_s: float,
        job_id: str | None = None,
        shape: Mapping[str, Any] | None = None,
    ) -> AsyncHandle:
        self.parts.reachability.require_broker()
        await self.version(caller, target)
        job = Job(
            job_id=job_id or uuid.uuid4().hex,
            model=target.model,
            which=target.which,
            body=body,
            timeout_s=timeout_s,
            shape=shape,
        )
        return await self.parts.dispatcher.submit(caller.tenant, job)


def typed_outputs(result: Result, signature: Signature) -> dict[str, np.ndarray]:
    """A Result's outputs as arrays of the dtypes the model's signature declares."""
    dtypes = {spec.name: spec.dtype for spec in signature.outputs}
    outputs = {}
    for name, values in (result.outputs or {}).items():
        dtype = dtypes.get(name)
        array = np.asarray(values, dtype=None if dtype in (None, "object", "str") else dtype)
        if array.dtype.kind == "U":
            array = np.vectorize(str.encode, otypes=[object])(array)
        outputs[name] = array
    return outputs
