"""Requests answered later (``Prefer: respond-async``): their handles, by job id.

The gateway answers 202 with ``Location: /v2/jobs/<job_id>`` at once and keeps the
job's handle here; a poll answers 202 while it waits and the response once its Result
came, for ``ttl_s`` after it was submitted. Only the tenant that submitted a job sees it.
A job that is not here (another gateway took it, or this one before a restart) is read
from the reply topic its id names (:meth:`~workers.gateway.service.Gateway.find`).
"""

from __future__ import annotations

import time
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

from producer.aio import AsyncHandle


@dataclass(frozen=True, slots=True)
class AsyncJob:
    """A job submitted for a later poll: whose it is and how to shape its answer."""

    handle: AsyncHandle
    tenant: str | None
    model: str
    request: Any  # the protocol's request, kept to shape the response (outputs asked, id)
    expires: float


class AsyncJobs:
    """The pending and recently answered async jobs of this gateway."""

    def __init__(self, ttl_s: float, *, clock: Callable[[], float] = time.monotonic) -> None:
        self._ttl_s = ttl_s
        self._clock = clock
        self._jobs: dict[str, AsyncJob] = {}

    def add(self, handle: AsyncHandle, tenant: str | None, model: str, request: Any) -> AsyncJob:
        self._expire()
        job = AsyncJob(handle, tenant, model, request, self._clock() + self._ttl_s)
        self._jobs[handle.job_id] = job
        return job

    def get(self, job_id: str, tenant: str | None) -> AsyncJob | None:
        """The job, if ``tenant`` submitted it and it has not expired."""
        self._expire()
        job = self._jobs.get(job_id)
        return job if job is not None and job.tenant == tenant else None

    def __len__(self) -> int:
        return len(self._jobs)

    def _expire(self) -> None:
        now = self._clock()
        for job_id in [j for j, job in self._jobs.items() if job.expires <= now]:
            del self._jobs[job_id]
