"""Policies: a condition over a model's recent windows that, when it holds, acts.

A condition is one line a user writes, validated when it is set:

    drift > 0.25 for 3 windows      # share of drifted input features
    prediction_drift >= 0.2         # Jensen-Shannon distance of the predicted classes
    accuracy < 0.9 for 2 windows    # labelled accuracy (needs feedback)
    f1 < 0.8 | estimated_accuracy < 0.85 | mae > 3 | rmse > 4.5

``for N windows`` (default 1) asks that the last N windows, consecutive and each judged,
all meet the comparison. Drift and estimated accuracy need no labels and fire a retrain
with ``trigger: "drift"``; labelled measures fire with ``trigger: "quality"``.
"""

from __future__ import annotations

import operator
import re
from collections.abc import Callable, Sequence
from dataclasses import dataclass

from workers.errors import WorkerError

METRICS = {
    "drift": "drift",
    "prediction_drift": "drift",
    "estimated_accuracy": "drift",
    "accuracy": "quality",
    "f1": "quality",
    "mae": "quality",
    "rmse": "quality",
}
OPERATORS: dict[str, Callable[[float, float], bool]] = {
    "<": operator.lt,
    "<=": operator.le,
    ">": operator.gt,
    ">=": operator.ge,
}
MAX_WINDOWS = 1000
_GRAMMAR = re.compile(
    r"^\s*(?P<metric>[a-z_][a-z0-9_]*)\s*(?P<op><=|>=|<|>)\s*(?P<value>[-+]?\d+(?:\.\d+)?)"
    r"(?:\s+for\s+(?P<windows>\d+)\s+windows?)?\s*\Z"
)
EXAMPLE = '"drift > 0.25 for 3 windows" or "accuracy < 0.9"'


class InvalidPolicy(WorkerError):
    """A condition that does not parse, or names an unknown metric; says which and how."""


@dataclass(frozen=True, slots=True)
class Condition:
    """``metric op threshold`` over the last ``windows`` windows."""

    metric: str
    op: str
    threshold: float
    windows: int = 1

    @property
    def trigger(self) -> str:
        """The RetrainJob ``trigger`` this condition fires with: ``drift`` or ``quality``."""
        return METRICS[self.metric]

    def holds(self, recent: Sequence[float | None]) -> bool:
        """Whether the last ``windows`` values (oldest first) all meet the comparison;
        a window that could not be judged (None) breaks the run."""
        if len(recent) < self.windows:
            return False
        compare = OPERATORS[self.op]
        tail = recent[len(recent) - self.windows :]
        return all(value is not None and compare(value, self.threshold) for value in tail)

    def __str__(self) -> str:
        plural = "window" if self.windows == 1 else "windows"
        return f"{self.metric} {self.op} {self.threshold:g} for {self.windows} {plural}"


def parse_condition(text: str) -> Condition:
    """The :class:`Condition` ``text`` states, or :class:`InvalidPolicy` saying why not."""
    match = _GRAMMAR.match(text)
    if match is None:
        raise InvalidPolicy(
            f"cannot read the condition {text[:80]!r}: write METRIC OP NUMBER "
            f"[for N windows], e.g. {EXAMPLE}"
        )
    metric = match["metric"]
    if metric not in METRICS:
        raise InvalidPolicy(
            f"unknown metric {metric!r} in {text.strip()!r}: use one of {', '.join(METRICS)}"
        )
    windows = int(match["windows"] or 1)
    if not 1 <= windows <= MAX_WINDOWS:
        raise InvalidPolicy(f"'for N windows' takes 1 to {MAX_WINDOWS} windows, got {windows}")
    return Condition(metric, match["op"], float(match["value"]), windows)
