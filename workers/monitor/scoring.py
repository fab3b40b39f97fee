"""A joined row's share of a quality window: which window, and what it adds."""

from __future__ import annotations

from datetime import UTC, datetime

from registry.labelled import QualityWindow, delay_bucket
from registry.quality import Joined
from workers.monitor.join import Labelled


def window_start(answered_ms: int, window_s: int) -> datetime:
    """The start of the ``window_s`` window that holds ``answered_ms`` (epoch ms)."""
    start_s = (answered_ms // 1000) // window_s * window_s
    return datetime.fromtimestamp(start_s, UTC)


def contribution(row: Labelled, window_s: int) -> Joined:
    """``row`` as the registry counts it: its (tenant, job_id, row) and its sums."""
    delay = {str(delay_bucket(max(row.labelled_ms - row.answered_ms, 0))): 1}
    start = window_start(row.answered_ms, window_s)
    if isinstance(row.prediction, float):
        error = float(row.label) - row.prediction
        window = QualityWindow(
            row.model, row.version, start, window_s, "regressor",
            rows=1, abs_error=abs(error), squared_error=error * error, delays=delay,
        )  # fmt: skip
    else:
        label, prediction = _cls(row.label), _cls(row.prediction)
        window = QualityWindow(
            row.model, row.version, start, window_s, "classifier",
            rows=1, correct=int(label == prediction), confusion={label: {prediction: 1}},
            delays=delay,
        )  # fmt: skip
    return Joined(row.tenant, row.job_id, row.row, window)


def _cls(value: object) -> str:
    """A class as text: 7, 7.0 and "7" are one class."""
    if isinstance(value, float) and value.is_integer():
        return str(int(value))
    return str(value)
