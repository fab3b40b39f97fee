"""The monitor's costs without a broker: joins per second on one process, and the
memory that 1,000,000 captures waiting for their labels hold.

Joins: N digits-like captures (one row, a label and ten probabilities), then a label
for each, through :class:`~workers.monitor.join.JoinState` and the scoring of each
joined row (what the monitor does per record after decoding); decoding included.
Memory: the resident set before and after 1,000,000 captures wait (Linux ``/proc``).
``python -m bench.monitor`` prints both; ``make bench`` adds them to its report.
"""

from __future__ import annotations

import gc
import resource
import time
from typing import Any

from producer.contract.messages import (
    CaptureRecord,
    Feedback,
    decode_capture,
    decode_feedback,
    encode,
)
from workers.monitor.join import JoinSettings, JoinState, Refused
from workers.monitor.scoring import contribution

GOAL_JOINS_PER_S = 20_000


def _capture(i: int) -> CaptureRecord:
    probabilities = [0.01] * 10
    probabilities[i % 10] = 0.91
    return CaptureRecord(
        job_id=f"job-{i}",
        model="digits",
        version=1,
        status="ok",
        ts_ms=1_700_000_000_000 + i,
        outputs={"label": [i % 10], "probabilities": [probabilities]},
    )


def join_rate(n: int = 100_000) -> float:
    """Joins per second: decode, join and score ``n`` captures and their labels."""
    captures = [encode(_capture(i)) for i in range(n)]
    labels = [encode(Feedback(job_id=f"job-{i}", labels=[i % 10])) for i in range(n)]
    state = JoinState(JoinSettings())
    joined = 0
    started = time.process_time()  # CPU time: the machine is shared
    for raw in captures:
        state.capture(decode_capture(raw))
    for i, raw in enumerate(labels):
        rows = state.feedback(None, decode_feedback(raw), 1_700_000_001_000 + i)
        if not isinstance(rows, Refused):
            joined += len([contribution(row, 3600) for row in rows])
    elapsed = time.process_time() - started
    assert joined == n, joined
    return n / elapsed


def _rss_mb() -> float:
    with open("/proc/self/statm") as statm:
        pages = int(statm.read().split()[1])
    return pages * resource.getpagesize() / 2**20


def pending_memory_mb(n: int = 1_000_000) -> float:
    """Megabytes held by ``n`` captures waiting for labels."""
    gc.collect()
    before = _rss_mb()
    state = JoinState(JoinSettings(max_pending=n))
    for i in range(n):
        state.capture(_capture(i))
    gc.collect()
    held = _rss_mb() - before
    assert len(state) == n
    return held


def measure() -> dict[str, Any]:
    rate = join_rate()
    memory = pending_memory_mb()
    return {
        "joins_per_s": round(rate),
        "joins_goal_met": rate >= GOAL_JOINS_PER_S,
        "pending_1m_captures_mb": round(memory),
    }


if __name__ == "__main__":
    result = measure()
    print(
        f"monitor: {result['joins_per_s']:,} joins/s on one process (goal >= "
        f"{GOAL_JOINS_PER_S:,}: {'met' if result['joins_goal_met'] else 'NOT met'}); "
        f"1,000,000 captures waiting for labels hold {result['pending_1m_captures_mb']} MB"
    )
