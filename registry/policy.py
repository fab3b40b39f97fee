"""Automatic rollback: a pure policy over metric windows, and the check that applies it.

The policy compares the windows a newly promoted version served since its promotion
with the windows its predecessor served before. It rolls back when the new version
has enough traffic to judge and its error rate or error-rate increase breach the
limits, or when it is slower than its predecessor was under the same load.

Latency is compared at the same load. A window's p95 inference time is that of the
batches its jobs rode in, and under a heavier load batches grow and take longer, so
the same model looks slower. The new version's p95 is therefore compared only with
the previous version's windows that served at least ``load_tolerance`` of the new
version's rows per second (per worker), and only when both served enough jobs. Under
no more load, the same model is no slower: a version that is slower there is truly
slower. A version promoted into a load its predecessor was never measured at is not
judged on latency until there is a baseline at that load.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from datetime import datetime
from typing import Protocol

from registry.entities import AliasMove, MetricWindow


class AliasRollbacks(Protocol):
    """What a rollback check asks of the model store: an alias's moves, and an
    automatic rollback."""

    def alias_history(self, name: str, alias: str | None = ...) -> list[AliasMove]: ...

    def roll_back_automatically(
        self, name: str, *, alias: str, to: int, actor: str, reason: str
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
    """Windows summed: jobs and failed jobs."""

    jobs: int
    errors: int

    @classmethod
    def of(cls, windows: Sequence[MetricWindow]) -> Totals:
        return cls(jobs=sum(w.jobs for w in windows), errors=sum(w.n_errors for w in windows))

    @property
    def error_rate(self) -> float:
        return self.errors / self.jobs if self.jobs else 0.0


def p95(windows: Sequence[MetricWindow]) -> float:
    """The windows' p95 inference latency, weighted by their jobs."""
    jobs = sum(w.jobs for w in windows)
    return sum(w.infer_ms_p95 * w.jobs for w in windows) / jobs if jobs else 0.0


def load(windows: Sequence[MetricWindow]) -> float:
    """The rows per second (per worker) the windows served, weighted by their jobs."""
    jobs = sum(w.jobs for w in windows)
    return sum(w.rows_per_s * w.jobs for w in windows) / jobs if jobs else 0.0


@dataclass(frozen=True, slots=True)
class RollbackPolicy:
    """Limits a newly promoted version must stay within."""

    max_error_rate: float = 0.05
    max_error_rate_increase: float = 0.02
    max_p95_ratio: float = 2.0
    min_jobs: int = 20
    min_baseline_jobs: int = 20
    baseline_windows: int = 60
    # A baseline window is at the same load when it served at least this fraction of
    # the new version's rows per second.
    load_tolerance: float = 0.8

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
        increase = current.error_rate - before.error_rate
        if increase > self.max_error_rate_increase:
            return Decision(
                True,
                f"error rate rose from {before.error_rate:.1%} to {current.error_rate:.1%} "
                f"(limit +{self.max_error_rate_increase:.1%})",
            )
        return self._compare_latency(new, baseline)

    def _compare_latency(
        self, new: Sequence[MetricWindow], baseline: Sequence[MetricWindow]
    ) -> Decision:
        """The new version's p95 against the previous version's at no less load."""
        floor = self.load_tolerance * load(new)
        comparable = [w for w in baseline if w.rows_per_s >= floor]
        if sum(w.jobs for w in comparable) < self.min_baseline_jobs:
            return Decision(
                False,
                f"error rate within limits; latency not judged: the previous version served "
                f"too few jobs at {floor:.0f} rows/s or more",
            )
        ours, theirs = p95(new), p95(comparable)
        if theirs > 0 and ours / theirs > self.max_p95_ratio:
            return Decision(
                True,
                f"p95 inference latency {ours:.1f} ms is {ours / theirs:.1f}x the previous "
                f"version's {theirs:.1f} ms at the same load ({floor:.0f} rows/s or more; "
                f"limit {self.max_p95_ratio:g}x)",
            )
        return Decision(False, "within limits of error rate and latency")


def last_move(history: Sequence[AliasMove]) -> AliasMove | None:
    """The last move of an alias that changed its version (a self-move ``2 -> 2``,
    recorded by registries before 0005, is no promotion to judge)."""
    return next((move for move in reversed(history) if move.moved), None)


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
    promoted = last_move(models.alias_history(name, alias))
    if promoted is None or promoted.kind != "promote" or promoted.previous_version is None:
        return None
    previous = promoted.previous_version
    new = metrics.windows(name, promoted.version, since=promoted.at)
    baseline = [w for w in metrics.windows(name, previous) if w.start < promoted.at]
    decision = policy.decide(new, baseline[-policy.baseline_windows :])
    if not decision.rollback:
        return None
    return models.roll_back_automatically(
        name, alias=alias, to=previous, actor=actor, reason=decision.reason
    )
