"""The evaluation gate: should a newly trained version replace production?

Pure functions over metric mappings; the training worker passes the candidate's
metrics, production's recorded metrics and the job's ``promote`` mode, and puts the
decision's ``reason`` into the RetrainResult.

Under ``gate`` a candidate is promoted only when it beats production on the policy's
metric by at least ``min_improvement`` (and by more than zero: a tie keeps the version
in production). A candidate or production without that metric is never promoted by
the gate; ``promote=always`` is the explicit override. Neither promotes a candidate
whose signature would break production's clients (:func:`keep_clients`): the registry
would refuse that promotion, so the candidate is kept and the reason says why.
"""

from __future__ import annotations

import math
from collections.abc import Mapping
from dataclasses import dataclass, replace
from typing import Literal, get_args

from registry.entities import ModelVersion, Signature
from registry.errors import IncompatibleSignature
from registry.signatures import check_replaces

PromoteMode = Literal["gate", "never", "always"]
PROMOTE_MODES: tuple[str, ...] = get_args(PromoteMode)

# Absorbs float noise such as 0.96 - 0.95 < 0.01 when comparing to min_improvement.
TOLERANCE = 1e-12


@dataclass(frozen=True, slots=True)
class GatePolicy:
    """What the gate compares: one metric, its direction and the required margin."""

    metric: str = "accuracy"
    min_improvement: float = 0.0
    higher_is_better: bool = True

    def __post_init__(self) -> None:
        if not self.metric:
            raise ValueError("GatePolicy.metric must name a metric")
        if not (math.isfinite(self.min_improvement) and self.min_improvement >= 0):
            raise ValueError(
                f"GatePolicy.min_improvement must be a finite number >= 0, got {self.min_improvement!r}"
            )


@dataclass(frozen=True, slots=True)
class GateDecision:
    """The verdict and a one-line reason a user can read in the RetrainResult."""

    promote: bool
    reason: str
    metric: str
    candidate_value: float | None = None
    production_value: float | None = None


def decide(
    mode: PromoteMode,
    candidate: Mapping[str, float],
    production: Mapping[str, float] | None,
    production_version: int | None,
    policy: GatePolicy | None = None,
    *,
    candidate_version: int | None = None,
) -> GateDecision:
    """Decide whether the candidate becomes production.

    ``production`` and ``production_version`` are both None when the model has no
    production version yet. ``candidate_version``, when known, is named in the reason
    of a candidate kept but not promoted.
    """
    policy = policy or GatePolicy()
    if mode not in PROMOTE_MODES:
        raise ValueError(f"promote mode must be one of {', '.join(PROMOTE_MODES)}, got {mode!r}")
    value = _value(candidate, policy.metric)
    if mode == "never":
        return GateDecision(
            False, "promote=never: registered without promotion", policy.metric, value
        )
    if mode == "always":
        return GateDecision(
            True, "promote=always: promoted without the evaluation gate", policy.metric, value
        )
    if production is None and production_version is None:
        return GateDecision(True, "no production version yet: promoted", policy.metric, value)
    return _compare(candidate, production or {}, production_version, policy, candidate_version)


def _compare(
    candidate: Mapping[str, float],
    production: Mapping[str, float],
    production_version: int | None,
    policy: GatePolicy,
    candidate_version: int | None,
) -> GateDecision:
    metric = policy.metric
    prod_name = "production" if production_version is None else f"production {production_version}"
    kept = _kept(candidate_version)
    ours, theirs = _value(candidate, metric), _value(production, metric)
    if ours is None:
        known = ", ".join(sorted(candidate)) or "none"
        reason = f"candidate has no valid {metric!r} metric (has: {known}); {kept}"
        return GateDecision(False, reason, metric, None, theirs)
    if theirs is None:
        reason = (
            f"{prod_name} has no recorded {metric!r}, so the gate cannot compare; {kept} "
            "(use promote=always to replace it anyway)"
        )
        return GateDecision(False, reason, metric, ours, None)
    margin = (ours - theirs) if policy.higher_is_better else (theirs - ours)
    better = margin > 0 and margin >= policy.min_improvement - TOLERANCE
    direction = "" if policy.higher_is_better else "lower is better, "
    numbers = (
        f"({direction}{_fmt(ours)} vs {_fmt(theirs)}, required margin {policy.min_improvement:.4f})"
    )
    if better:
        return GateDecision(True, f"beats {prod_name} on {metric} {numbers}", metric, ours, theirs)
    reason = f"does not beat {prod_name} on {metric} {numbers}; {kept}"
    return GateDecision(False, reason, metric, ours, theirs)


def keep_clients(
    decision: GateDecision, production: ModelVersion, candidate: Signature
) -> GateDecision:
    """``decision``, unless it promotes a candidate whose signature would break the
    clients of ``production``: then the candidate is kept, not promoted, and the reason
    shows both signatures."""
    if not decision.promote:
        return decision
    try:
        check_replaces(
            production.signature,
            candidate,
            what="the trained model",
            instead_of=f"production (version {production.version})",
            force_hint="It is kept, not promoted; promote it by hand with --force if you must.",
        )
    except IncompatibleSignature as exc:
        return replace(decision, promote=False, reason=str(exc))
    return decision


def _value(metrics: Mapping[str, float], name: str) -> float | None:
    """The metric as a finite float, or None when missing, non-numeric, NaN or infinite."""
    value = metrics.get(name)
    if isinstance(value, bool) or not isinstance(value, int | float):
        return None
    return float(value) if math.isfinite(value) else None


def _kept(candidate_version: int | None) -> str:
    if candidate_version is None:
        return "registered but not promoted"
    return f"kept as version {candidate_version} but not promoted"


def _fmt(value: float) -> str:
    return f"{value:.4f}"
