"""Refused jobs into the registry's audit log, rate-limited.

Every refusal is counted, but a flood of bad jobs must not become a flood of rows:
per tenant and reason, at most ``rows_per_window`` rows are written each
``window_s``; the refusals beyond that are counted into the row written when the
window ends (its ``suppressed``), so the rows always add up to the refusals. Rows
are written by :meth:`RefusalAudit.run` in a thread, a batch at a time, never on the
hot path: a refusal costs its caller a dictionary update.
"""

from __future__ import annotations

import asyncio
import contextlib
import time
from collections.abc import Iterable
from dataclasses import dataclass, replace
from typing import Protocol

import structlog

from registry.entities import Refusal

log = structlog.get_logger(__name__)

_MAX_PENDING = 10_000  # rows held while the registry is away; older ones are dropped


class RefusalLog(Protocol):
    """Where refusals go: the registry's audit log (``registry.tenants.TenantStore``)."""

    def record_refusals(self, entries: Iterable[Refusal], *, actor: str) -> int: ...


@dataclass(slots=True)
class _Window:
    """One tenant and reason's current window: rows written in it, refusals held back
    (the first of them kept, to stand for them all)."""

    started: float  # monotonic
    rows: int = 0
    held: int = 0
    first_held: Refusal | None = None


class RefusalAudit:
    """Counts refusals (:meth:`refused`) and writes them as rate-limited rows (:meth:`run`)."""

    def __init__(
        self,
        sink: RefusalLog | None,
        *,
        actor: str,
        rows_per_window: int = 10,
        window_s: float = 60.0,
        flush_interval_s: float = 1.0,
    ) -> None:
        """``sink`` None: refusals are only logged (a worker without a registry of
        tenants); ``actor``: who refused, in every row."""
        if rows_per_window < 1 or window_s <= 0:
            raise ValueError("RefusalAudit needs rows_per_window >= 1 and window_s > 0")
        self._sink = sink
        self._actor = actor
        self._rows_per_window = rows_per_window
        self._window_s = window_s
        self._flush_interval_s = flush_interval_s
        self._windows: dict[tuple[str | None, str], _Window] = {}
        self._pending: list[Refusal] = []

    def refused(
        self,
        tenant: str | None,
        reason: str,
        *,
        model: str | None = None,
        job_id: str | None = None,
    ) -> None:
        """Count one refusal: a row now if the window has room, else into the next."""
        now = time.monotonic()
        key = (tenant, reason)
        window = self._windows.get(key)
        if window is None or now - window.started >= self._window_s:
            self._close(window)
            window = self._windows[key] = _Window(started=now)
        refusal = Refusal(tenant, reason, model=model, job_id=job_id)
        if window.rows < self._rows_per_window:
            window.rows += 1
            self._add(refusal)
            return
        window.held += 1
        if window.first_held is None:
            window.first_held = refusal

    async def run(self) -> None:
        """Write the rows due every ``flush_interval_s`` until cancelled, then once more."""
        try:
            while True:
                await asyncio.sleep(self._flush_interval_s)
                await self.flush()
        finally:
            with contextlib.suppress(Exception):
                await asyncio.shield(self.flush(final=True))

    async def flush(self, *, final: bool = False) -> None:
        """Write the rows counted so far (``final``: held-back counts too, windows ended
        or not); rows the registry refuses are kept for the next flush."""
        now = time.monotonic()
        for key, window in list(self._windows.items()):
            if final or now - window.started >= self._window_s:
                self._close(window)
                del self._windows[key]
        if not self._pending or self._sink is None:
            self._pending.clear()
            return
        rows, self._pending = self._pending, []
        try:
            await asyncio.to_thread(self._sink.record_refusals, rows, actor=self._actor)
        except Exception as exc:
            log.warning("refusals not written to the audit log; trying again", error=str(exc))
            self._pending = (rows + self._pending)[-_MAX_PENDING:]

    def _close(self, window: _Window | None) -> None:
        """The row of ``window``'s held-back refusals, if any: the first of them, with
        the others ``suppressed``."""
        if window is None or window.first_held is None:
            return
        self._add(replace(window.first_held, suppressed=window.held - 1))
        window.held, window.first_held = 0, None

    def _add(self, row: Refusal) -> None:
        """Queue ``row``, and log it (so the log is rate-limited alike)."""
        log.warning(
            "job refused",
            tenant=row.tenant,
            reason=row.reason,
            model=row.model,
            job_id=row.job_id,
            also_refused=row.suppressed,
        )
        self._pending.append(row)
        if len(self._pending) > _MAX_PENDING:
            del self._pending[0]
