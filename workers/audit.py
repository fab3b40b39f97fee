"""Refused jobs into the registry's audit log, rate-limited.

Every refusal is counted, but a flood of bad jobs must not become a flood of rows:
per tenant and reason, at most ``rows_per_window`` rows are written each
``window_s``; the refusals beyond that are counted into the row written when the
window ends, so the rows' counts always add up to the refusals. Rows are written by
:meth:`RefusalAudit.run` in a thread, a batch at a time, never on the hot path: a
refusal costs its caller a dictionary update.
"""

from __future__ import annotations

import asyncio
import contextlib
import time
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Protocol

import structlog

log = structlog.get_logger(__name__)

_MAX_MESSAGE = 500  # characters of a refusal's message kept in its row
_MAX_PENDING = 10_000  # rows held while the registry is away; older ones are dropped


@dataclass(frozen=True, slots=True)
class RefusalRow:
    """``count`` refusals of ``tenant``'s jobs (None: the default tenant) for ``reason``,
    the first of them told by ``message``, refused by ``actor`` within ``window_s``."""

    tenant: str | None
    reason: str
    message: str
    count: int
    actor: str
    first_at: float  # epoch seconds
    last_at: float


class RefusalLog(Protocol):
    """Where refusal rows go: the registry's audit log."""

    def record_refusals(self, rows: Sequence[RefusalRow]) -> None: ...


@dataclass(slots=True)
class _Window:
    """One tenant and reason's current window: rows written in it, refusals held back."""

    started: float  # monotonic
    rows: int = 0
    held: int = 0
    held_message: str = ""
    held_first_at: float = 0.0
    held_last_at: float = 0.0


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
        """``sink`` None: refusals are only logged (a worker without a registry of tenants)."""
        if rows_per_window < 1 or window_s <= 0:
            raise ValueError("RefusalAudit needs rows_per_window >= 1 and window_s > 0")
        self._sink = sink
        self._actor = actor
        self._rows_per_window = rows_per_window
        self._window_s = window_s
        self._flush_interval_s = flush_interval_s
        self._windows: dict[tuple[str | None, str], _Window] = {}
        self._pending: list[RefusalRow] = []

    def refused(self, tenant: str | None, reason: str, message: str) -> None:
        """Count one refusal: a row now if the window has room, else into the next."""
        now, wall = time.monotonic(), time.time()
        key = (tenant, reason)
        window = self._windows.get(key)
        if window is None or now - window.started >= self._window_s:
            self._close(key, window)
            window = self._windows[key] = _Window(started=now)
        if window.rows < self._rows_per_window:
            window.rows += 1
            self._add(
                RefusalRow(tenant, reason, message[:_MAX_MESSAGE], 1, self._actor, wall, wall)
            )
            return
        if not window.held:
            window.held_message, window.held_first_at = message[:_MAX_MESSAGE], wall
        window.held += 1
        window.held_last_at = wall

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
                self._close(key, window)
                del self._windows[key]
        if not self._pending or self._sink is None:
            self._pending.clear()
            return
        rows, self._pending = self._pending, []
        try:
            await asyncio.to_thread(self._sink.record_refusals, rows)
        except Exception as exc:
            log.warning("refusals not written to the audit log; trying again", error=str(exc))
            self._pending = (rows + self._pending)[-_MAX_PENDING:]

    def _close(self, key: tuple[str | None, str], window: _Window | None) -> None:
        """The row of ``window``'s held-back refusals, if any."""
        if window is None or not window.held:
            return
        tenant, reason = key
        self._add(
            RefusalRow(
                tenant,
                reason,
                window.held_message,
                window.held,
                self._actor,
                window.held_first_at,
                window.held_last_at,
            )
        )
        window.held = 0

    def _add(self, row: RefusalRow) -> None:
        """Queue ``row`` (and log it: the log is rate-limited alike)."""
        log.warning(
            "jobs refused",
            tenant=row.tenant,
            reason=row.reason,
            count=row.count,
            refusal=row.message,
        )
        self._pending.append(row)
        if len(self._pending) > _MAX_PENDING:
            del self._pending[0]
