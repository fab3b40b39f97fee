"""Rollback on labelled accuracy: a newly promoted version that is right significantly
less often than the one it replaced is rolled back.

After a promotion, once the new version and its predecessor each have at least
``min_labelled`` labelled rows (the predecessor's from before the promotion), the
new version's accuracy is compared with its predecessor's: when it is lower by more
than ``max_accuracy_drop`` and a one-sided two-proportion z-test (pooled) gives
p < ``p_value``, the alias moves back. The numbers go in the rollback's reason, which
``maas models history`` shows. Several monitors may decide at once; the registry
moves the alias under the model's row lock, so one acts and the others find the
alias moved already (a conflict they pass over).
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass
from datetime import datetime
from typing import Protocol

from scipy.stats import norm

from registry.entities import AliasMove
from registry.errors import ConflictError
from registry.labelled import QualityWindow
from registry.policy import AliasRollbacks, Decision


class QualityReader(Protocol):
    def windows(
        self, name: str, version: int | None = ..., since: datetime | None = ...
    ) -> list[QualityWindow]: ...


@dataclass(frozen=True, slots=True)
class AccuracyPolicy:
    """When a promoted version's labelled accuracy is judged, and how much worse it may be."""

    min_labelled: int = 200
    max_accuracy_drop: float = 0.0
    p_value: float = 0.01

    def decide(self, new: Sequence[QualityWindow], old: Sequence[QualityWindow]) -> Decision:
        n1, k1 = _totals(new)
        n0, k0 = _totals(old)
        if min(n1, n0) < self.min_labelled:
            return Decision(
                False,
                f"too few labelled rows to judge: {n1} and {n0} of {self.min_labelled}",
            )
        acc1, acc0 = k1 / n1, k0 / n0
        p = one_sided_p(k1, n1, k0, n0)
        drop = acc0 - acc1
        if drop > self.max_accuracy_drop and p < self.p_value:
            return Decision(
                True,
                f"labelled accuracy {acc1:.4f} over {n1} rows vs {acc0:.4f} over {n0} rows "
                f"before (drop {drop:.4f} > {self.max_accuracy_drop:g}; two-proportion test "
                f"p={p:.2e} < {self.p_value:g})",
            )
        return Decision(False, f"labelled accuracy {acc1:.4f} vs {acc0:.4f} (p={p:.2e})")


def _totals(windows: Sequence[QualityWindow]) -> tuple[int, int]:
    classified = [w for w in windows if w.kind == "classifier"]
    return sum(w.rows for w in classified), sum(w.correct for w in classified)


def one_sided_p(k1: int, n1: int, k0: int, n0: int) -> float:
    """P-value that proportion 1 (``k1`` of ``n1``) is lower than proportion 0 by chance."""
    pooled = (k1 + k0) / (n1 + n0)
    spread = math.sqrt(pooled * (1 - pooled) * (1 / n1 + 1 / n0))
    if spread == 0:
        return 1.0 if k1 / n1 >= k0 / n0 else 0.0
    z = (k1 / n1 - k0 / n0) / spread
    return float(norm.cdf(z))


def check_accuracy(
    models: AliasRollbacks,
    quality: QualityReader,
    name: str,
    *,
    policy: AccuracyPolicy,
    actor: str,
    alias: str = "production",
) -> AliasMove | None:
    """Roll ``alias`` back if its holder, promoted over another version, is labelled
    significantly less accurate than that version was (see the module's description)."""
    history = models.alias_history(name, alias)
    promoted = history[-1] if history else None
    if promoted is None or promoted.kind != "promote" or promoted.previous_version is None:
        return None
    previous = promoted.previous_version
    new = quality.windows(name, promoted.version)
    old = quality.windows(name, previous)
    decision = policy.decide(new, old)
    if not decision.rollback:
        return None
    try:
        return models.roll_back_automatically(
            name, alias=alias, to=previous, actor=actor, reason=decision.reason
        )
    except ConflictError:  # another monitor moved it first
        return None
