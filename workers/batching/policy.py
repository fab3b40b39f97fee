"""When a batch goes and which jobs it holds: the batcher's settings and its policy.

:func:`plan_batch` looks at the queue (highest priority first, FIFO within a
priority) and takes the jobs that share the head's input shapes, without splitting a
job or jumping over one, up to ``max_batch_size`` rows. The batch goes at once when
it is full or has reached one of ``preferred_batch_sizes``; otherwise it waits at
most ``max_delay_ms`` after its oldest row, or not at all when the recent arrival
rate (:class:`ArrivalRate`) says no further row is expected in that time.
"""

from __future__ import annotations

import itertools
import math
import time
from dataclasses import dataclass

from workers import defaults
from workers.batching.jobs import QueuedJob

__all__ = ["ArrivalRate", "BatchConfig", "Plan", "plan_batch"]


@dataclass(frozen=True, slots=True)
class BatchConfig:
    """How a batcher packs jobs. Sizes count rows, not jobs."""

    max_batch_size: int = defaults.MAX_BATCH_SIZE
    max_delay_ms: float = defaults.MAX_DELAY_MS
    preferred_batch_sizes: tuple[int, ...] = ()
    max_queue_rows: int = 8192
    max_job_rows: int = defaults.MAX_JOB_ROWS
    max_concurrent_batches: int = 1
    # Wait for the delay only while more rows are likely to arrive before it ends (from
    # the recent arrival rate): at light load a lone job goes at once instead of
    # waiting max_delay_ms for company that will not come. False: always wait.
    adaptive_delay: bool = True
    # A batch whose size has inferred in less than this runs on the event loop, not in
    # a thread: for a small model the hop costs more than the inference (0: always a
    # thread). See workers/batching/inline.py.
    inline_infer_ms: float = defaults.INLINE_INFER_MS

    def __post_init__(self) -> None:
        positive = {
            "max_batch_size": self.max_batch_size,
            "max_queue_rows": self.max_queue_rows,
            "max_job_rows": self.max_job_rows,
            "max_concurrent_batches": self.max_concurrent_batches,
        }
        for name, value in positive.items():
            if value < 1:
                raise ValueError(f"BatchConfig.{name} must be >= 1, got {value}")
        if self.inline_infer_ms < 0:
            raise ValueError(
                f"BatchConfig.inline_infer_ms must be >= 0, got {self.inline_infer_ms}"
            )
        if self.max_delay_ms < 0:
            raise ValueError(f"BatchConfig.max_delay_ms must be >= 0, got {self.max_delay_ms}")
        for size in self.preferred_batch_sizes:
            if not 1 <= size <= self.max_batch_size:
                raise ValueError(
                    f"BatchConfig.preferred_batch_sizes: {size} is outside "
                    f"1..max_batch_size ({self.max_batch_size})"
                )
        if self.max_job_rows > self.max_queue_rows:
            raise ValueError(
                f"BatchConfig.max_job_rows ({self.max_job_rows}) must not exceed "
                f"max_queue_rows ({self.max_queue_rows})"
            )


class ArrivalRate:
    """Rows per second recently queued, exponentially weighted over ``horizon_s``."""

    __slots__ = ("_at", "_horizon_s", "_rate")

    def __init__(self, horizon_s: float = 1.0) -> None:
        self._horizon_s = horizon_s
        self._rate = 0.0
        self._at = time.monotonic()

    def add(self, rows: int, now: float) -> None:
        self._rate = self.at(now) + rows / self._horizon_s
        self._at = now

    def at(self, now: float) -> float:
        return self._rate * math.exp(-(now - self._at) / self._horizon_s)


# The next batch, whether to send it now, and how long to wait otherwise (None: until
# something changes).
Plan = tuple[list[QueuedJob], bool, float | None]


def plan_batch(queue: list[QueuedJob], config: BatchConfig, arrivals: ArrivalRate) -> Plan:
    """The next batch from ``queue`` (sorted by priority, then arrival)."""
    if not queue:
        return [], False, None
    head = queue[0]
    limit = config.max_batch_size
    plan: list[QueuedJob] = []
    rows = 0
    overflow = False
    for job in queue:
        if job.key != head.key:
            continue
        if plan and rows + job.rows > limit:
            overflow = True  # never split a job, never jump over one
            break
        plan.append(job)
        rows += job.rows
    if rows >= limit or overflow:
        return plan, True, None
    preferred = _preferred_prefix(plan, config.preferred_batch_sizes)
    if preferred:
        return preferred, True, None
    now = time.monotonic()
    wait_s = min(job.enqueued for job in plan) + config.max_delay_ms / 1000 - now
    if wait_s > 0 and config.adaptive_delay and arrivals.at(now) * wait_s < 1:
        return plan, True, None  # no further row is expected before the delay ends
    return plan, wait_s <= 0, max(wait_s, 0.0)


def _preferred_prefix(plan: list[QueuedJob], sizes: tuple[int, ...]) -> list[QueuedJob]:
    """The longest prefix of ``plan`` whose rows are a preferred batch size.

    When no prefix hits one exactly (jobs are never split) but the plan has
    outgrown the largest preferred size, the whole plan goes.
    """
    if not sizes:
        return []
    rows = list(itertools.accumulate(job.rows for job in plan))
    for end in range(len(plan), 0, -1):
        if rows[end - 1] in sizes:
            return plan[:end]
    return plan if rows[-1] > max(sizes) else []
