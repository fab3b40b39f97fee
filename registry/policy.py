"""Automatic rollback: a pure policy over metric windows, and the check that applies it.

The policy compares the windows a newly promoted version served since its promotion
with the windows its predecessor served before. It rolls back when the new version
has enough traffic to judge and its error rate, error-rate increase or p95 inference
latency breach the limits.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from datetime import datetime
from typing import Protocol

from registry.entities import AliasMove, MetricWindow


class AliasRollbacks(Protocol):
    """What a rollback check asks of the model store: an alias's moves, and a rollback."""

    def alias_history(self, name: str, alias: str | None = ...) -> list[AliasMove]: ...

    def rollback(
        self,
        name: str,
        *,
        alias: str = ...,
        to: int | None = ...,
        actor: str,
        reason: str = ...,
        automatic: bool = ...,
    ) -> AliasMove: ...


class WindowReader(Protocol):
    """What a rollback check asks of the metric store: the windows a version served."""

    def windows(
        self, name: str, version: int | None = ..., since: datetime | None = ...
    ) -> list[MetricWindow]: ...


@dataclass(frozen=True, slots=True)
class Decision:
    rollback: bool
    reason: str


@dataclass(frozen=True, slots=True)
class Totals:
    """Windows summed: jobs, failed jobs, and a jobs-weighted p95 inference latency."""

    jobs: int
    errors: int
    infer_ms_p95: float

    @classmethod
    def of(cls, windows: Sequence[MetricWindow]) -> Totals:
        jobs = sum(w.jobs for w in windows)
        weighted = sum(w.infer_ms_p95 * w.jobs for w in windows)
        return cls(
            jobs=jobs,
            errors=sum(w.n_errors for w in windows),
            infer_ms_p95=weighted / jobs if jobs else 0.0,
        )

    @property
    def error_rate(self) -> float:
        return self.errors / self.jobs if self.jobs else 0.0


@dataclass(frozen=True, slots=True)
class RollbackPolicy:
    """Limits a newly promoted version must stay within."""

    max_error_rate: float = 0.05
    max_error_rate_increase: float = 0.02
    max_p95_ratio: float = 2.0
    min_jobs: int = 20
    min_baseline_jobs: int = 20
    baseline_windows: int = 60

    def decide(self, new: Sequence[MetricWindow], baseline: Sequence[MetricWindow]) -> Decision:
        current, before = Totals.of(new), Totals.of(baseline)
        if current.jobs < self.min_jobs:
            return Decision(
                False, f"too little traffic to judge: {current.jobs} of {self.min_jobs} jobs"
            )
        if current.error_rate > self.max_error_rate:
            return Decision(
                True,
                f"error rate {current.error_rate:.1%} over {current.jobs} jobs exceeds "
                f"{self.max_error_rate:.1%}",
            )
        if before.jobs < self.min_baseline_jobs:
            return Decision(
                False, f"error rate {current.error_rate:.1%} is within limits; no baseline"
            )
        return self._compare(current, before)

    def _compare(self, current: Totals, before: Totals) -> Decision:
        increase = current.error_rate - before.error_rate
        if increase > self.max_error_rate_increase:
            return Decision(
                True,
                f"error rate rose from {before.error_rate:.1%} to {current.error_rate:.1%} "
                f"(limit +{self.max_error_rate_increase:.1%})",
            )
        if before.infer_ms_p95 > 0:
            ratio = current.infer_ms_p95 / before.infer_ms_p95
            if ratio > self.max_p95_ratio:
                return Decision(
                    True,
                    f"p95 inference latency {current.infer_ms_p95:.1f} ms is {ratio:.1f}x the "
                    f"previous version's {before.infer_ms_p95:.1f} ms (limit {self.max_p95_ratio:g}x)",
                )
        return Decision(False, "within limits of error rate and latency")


def check_rollback(
    models: AliasRollbacks,
    metrics: WindowReader,
    name: str,
    *,
    alias: str = "production",
    policy: RollbackPolicy,
    actor: str = "policy",
) -> AliasMove | None:
    """Roll ``alias`` back if its holder, promoted over another version, breaches ``policy``.

    Only a holder that arrived by promotion is judged: one restored by a rollback is
    the known-good version and is never rolled forward again automatically.
    """
    history = models.alias_history(name, alias)
    if not history or history[-1].kind != "promote" or history[-1].previous_version is None:
        return None
    promoted = history[-1]
    previous = promoted.previous_version
    new = metrics.windows(name, promoted.version, since=promoted.at)
    baseline = [w for w in metrics.windows(name, previous) if w.start < promoted.at]
    decision = policy.decide(new, baseline[-policy.baseline_windows :])
    if not decision.rollback:
        return None
    return models.rollback(
        name, alias=alias, to=previous, actor=actor, reason=decision.reason, automatic=True
    )
