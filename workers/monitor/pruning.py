"""How long the registry keeps the joins the monitor counted, and forgetting older ones.

``quality_joins`` holds the key of every labelled row the monitor counted, so that a
monitor reading the topics again (after a restart or a rebalance) counts none twice.
A row can be joined again only while its capture can still be read, so a join is kept
for the longest of the join window and the capture topics' retention (each capture
policy's ``--retention``; Kafka's default, 7 days, for a policy without one), plus the
time Kafka may keep a record past its retention: it deletes whole segments, and
``segment.ms`` rolls one at least every 7 days by default. Joins counted before that
are deleted in batches every ``every_s``; without this the table grew forever.
"""

from __future__ import annotations

import asyncio
from collections.abc import Iterable
from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import Protocol

import structlog

from registry.db import utcnow
from registry.labelled import CapturePolicy

log = structlog.get_logger(__name__)

_DAY_MS = 24 * 3600 * 1000
KAFKA_DEFAULT_RETENTION_MS = 7 * _DAY_MS  # log.retention.hours=168
SEGMENT_MARGIN_MS = 7 * _DAY_MS  # segment.ms: how long a record may outlive its retention


@dataclass(frozen=True, slots=True)
class PruneSettings:
    """How often counted joins past their horizon are forgotten, and in what batches."""

    every_s: float = 3600.0
    margin_ms: int = SEGMENT_MARGIN_MS
    batch_rows: int = 10_000


class JoinsStore(Protocol):
    """What pruning asks of the registry's quality store."""

    def policies(self) -> dict[str, CapturePolicy]: ...

    def forget_joins(self, before: datetime, *, batch_rows: int = ...) -> int: ...


def kept_ms(window_ms: int, policies: Iterable[CapturePolicy], margin_ms: int) -> int:
    """How long a counted join is kept: while its capture may still be read again."""
    retentions = [p.retention_ms or KAFKA_DEFAULT_RETENTION_MS for p in policies]
    return max(window_ms, *retentions, KAFKA_DEFAULT_RETENTION_MS) + margin_ms


def prune(store: JoinsStore, window_ms: int, settings: PruneSettings, now: datetime) -> int:
    """Forget the joins counted longer ago than they are kept; how many were."""
    kept = kept_ms(window_ms, store.policies().values(), settings.margin_ms)
    before = now - timedelta(milliseconds=kept)
    return store.forget_joins(before, batch_rows=settings.batch_rows)


async def keep_pruning(store: JoinsStore, window_ms: int, settings: PruneSettings) -> None:
    """Prune every ``settings.every_s`` until cancelled; a registry away is tried later."""
    while True:
        try:
            forgotten = await asyncio.to_thread(prune, store, window_ms, settings, utcnow())
        except Exception as exc:
            log.warning("counted joins not pruned; trying again later", error=str(exc))
        else:
            if forgotten:
                log.info("counted joins past their horizon forgotten", rows=forgotten)
        await asyncio.sleep(settings.every_s)
