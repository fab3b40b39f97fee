"""How long counted joins are kept (while their captures may be read again), and the
monitor's pruning loop, with a store in memory."""

from __future__ import annotations

import asyncio
from datetime import datetime

from registry.labelled import CapturePolicy
from workers.monitor.pruning import (
    KAFKA_DEFAULT_RETENTION_MS,
    SEGMENT_MARGIN_MS,
    PruneSettings,
    keep_pruning,
    kept_ms,
)

DAY_MS = 86_400_000


def test_a_join_is_kept_for_the_longest_of_window_and_retentions_plus_a_segment() -> None:
    margin = SEGMENT_MARGIN_MS
    assert kept_ms(DAY_MS, [], margin) == KAFKA_DEFAULT_RETENTION_MS + margin
    assert kept_ms(30 * DAY_MS, [], margin) == 30 * DAY_MS + margin
    policies = [
        CapturePolicy(1.0, retention_ms=DAY_MS),
        CapturePolicy(1.0, retention_ms=20 * DAY_MS),
    ]
    assert kept_ms(DAY_MS, policies, margin) == 20 * DAY_MS + margin
    # a policy without a retention: its topic keeps the broker's default, 7 days
    assert kept_ms(DAY_MS, [CapturePolicy(1.0)], 0) == KAFKA_DEFAULT_RETENTION_MS


class Store:
    def __init__(self, fail: int = 0) -> None:
        self.asked: list[tuple[datetime, int]] = []
        self.fail = fail
        self.pruned = asyncio.Event()

    def policies(self) -> dict[str, CapturePolicy]:
        return {"m": CapturePolicy(1.0, retention_ms=DAY_MS)}

    def forget_joins(self, before: datetime, *, batch_rows: int = 10_000) -> int:
        if self.fail:
            self.fail -= 1
            raise OSError("registry away")
        self.asked.append((before, batch_rows))
        if len(self.asked) == 2:
            self.pruned.set()
        return 4


async def test_the_loop_prunes_on_its_schedule_and_outlives_a_registry_away() -> None:
    store = Store(fail=1)
    task = asyncio.create_task(
        keep_pruning(store, DAY_MS, PruneSettings(every_s=0.01, batch_rows=3))
    )
    try:
        await asyncio.wait_for(store.pruned.wait(), 10)  # after the failed try, twice
    finally:
        task.cancel()
    (first, batch), (second, _) = store.asked[:2]
    assert batch == 3 and first <= second
