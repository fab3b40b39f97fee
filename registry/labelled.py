"""Labelled quality as sums: a model's capture policy and one window of joined rows.

A :class:`QualityWindow` holds sums (rows, correct rows, confusion counts, absolute and
squared errors, a histogram of label delays), never derived figures: two windows of
the same model, version and start add up (:meth:`QualityWindow.plus`), so a monitor
can write as it goes and a reader derives accuracy, macro precision/recall/F1, MAE,
RMSE and delay percentiles from whatever was added. Macro averages are over the
classes that occur as a label or a prediction (scikit-learn's ``average="macro"``,
``zero_division=0``).
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field
from datetime import datetime
from typing import Literal

CaptureInputs = str  # "full", "drop" or "hash:FIELD,FIELD"
Kind = Literal["classifier", "regressor"]
# Label delays are counted in buckets of a tenth of a decade of milliseconds: bucket b
# holds delays up to 10 ** (b / 10) ms, so a percentile is within 26 % of the truth.
_BUCKETS_PER_DECADE = 10


@dataclass(frozen=True, slots=True)
class CapturePolicy:
    """What workers capture of a model's answers: a share of its jobs (``rate``, by a
    hash of ``job_id``), its inputs whole, dropped or with named fields hashed; the
    capture topic's ``retention_ms``; ``label_output``: the output that is the
    prediction (None: ``label`` if the model has one, else its first output)."""

    rate: float = 0.0
    inputs: CaptureInputs = "full"
    retention_ms: int | None = None
    label_output: str | None = None

    @property
    def hashed_fields(self) -> tuple[str, ...]:
        """The input fields hashed (``hash:a,b``), or () for full and drop."""
        if not self.inputs.startswith("hash:"):
            return ()
        return tuple(name for name in self.inputs[5:].split(",") if name)


def delay_bucket(delay_ms: float) -> int:
    """The histogram bucket of a label delay."""
    return max(0, math.ceil(_BUCKETS_PER_DECADE * math.log10(max(delay_ms, 1.0))))


def bucket_ms(bucket: int) -> float:
    """The upper bound of a delay bucket, in milliseconds."""
    return float(10 ** (bucket / _BUCKETS_PER_DECADE))


@dataclass(frozen=True, slots=True)
class QualityWindow:
    """Sums of one model version's labelled rows over ``window_s`` seconds from ``start``.

    ``confusion[label][prediction]`` counts classifier rows; ``delays[bucket]`` counts
    rows by label delay (see :func:`delay_bucket`)."""

    model: str
    version: int
    start: datetime
    window_s: int
    kind: Kind
    rows: int = 0
    correct: int = 0
    abs_error: float = 0.0
    squared_error: float = 0.0
    confusion: dict[str, dict[str, int]] = field(default_factory=dict)
    delays: dict[str, int] = field(default_factory=dict)

    @property
    def key(self) -> tuple[str, int, datetime]:
        return self.model, self.version, self.start

    def plus(self, other: QualityWindow) -> QualityWindow:
        """The sums of both windows (same model, version and start)."""
        confusion = {label: dict(row) for label, row in self.confusion.items()}
        for label, row in other.confusion.items():
            mine = confusion.setdefault(label, {})
            for prediction, count in row.items():
                mine[prediction] = mine.get(prediction, 0) + count
        delays = dict(self.delays)
        for bucket, count in other.delays.items():
            delays[bucket] = delays.get(bucket, 0) + count
        return QualityWindow(
            self.model,
            self.version,
            self.start,
            self.window_s,
            self.kind,
            rows=self.rows + other.rows,
            correct=self.correct + other.correct,
            abs_error=self.abs_error + other.abs_error,
            squared_error=self.squared_error + other.squared_error,
            confusion=confusion,
            delays=delays,
        )

    @property
    def accuracy(self) -> float | None:
        if self.kind != "classifier" or not self.rows:
            return None
        return self.correct / self.rows

    def macro(self) -> tuple[float, float, float] | None:
        """Macro precision, recall and F1 (classifiers with rows; else None)."""
        if self.kind != "classifier" or not self.rows:
            return None
        classes = set(self.confusion) | {p for row in self.confusion.values() for p in row}
        scores = [_class_scores(self.confusion, c) for c in sorted(classes)]
        n = len(scores)
        return (
            sum(s[0] for s in scores) / n,
            sum(s[1] for s in scores) / n,
            sum(s[2] for s in scores) / n,
        )

    @property
    def mae(self) -> float | None:
        return self.abs_error / self.rows if self.kind == "regressor" and self.rows else None

    @property
    def rmse(self) -> float | None:
        if self.kind != "regressor" or not self.rows:
            return None
        return math.sqrt(self.squared_error / self.rows)

    def delay_ms(self, quantile: float) -> float | None:
        """The label delay below which ``quantile`` of the rows' labels came (bucketed)."""
        total = sum(self.delays.values())
        if not total:
            return None
        seen = 0
        for bucket in sorted(self.delays, key=int):
            seen += self.delays[bucket]
            if seen >= quantile * total:
                return bucket_ms(int(bucket))
        return bucket_ms(max(int(b) for b in self.delays))  # pragma: no cover - float edge


def _class_scores(confusion: dict[str, dict[str, int]], c: str) -> tuple[float, float, float]:
    true_positive = confusion.get(c, {}).get(c, 0)
    predicted = sum(row.get(c, 0) for row in confusion.values())
    actual = sum(confusion.get(c, {}).values())
    precision = true_positive / predicted if predicted else 0.0
    recall = true_positive / actual if actual else 0.0
    f1 = 2 * precision * recall / (precision + recall) if precision + recall else 0.0
    return precision, recall, f1
