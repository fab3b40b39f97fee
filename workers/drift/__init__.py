"""Drift without labels: a version's reference profile, and how far a window strays.

Kafka-free and registry-free, so it is tested with plain arrays; the trainer makes
profiles with it (a version's training split) and the monitor compares windows with them. Owns the reference
profile of a version's inputs and outputs (:mod:`~workers.drift.profile`: quantile
bins per numeric feature, frequencies per categorical one, length and out-of-vocabulary
distributions for text, predicted-class frequencies or score quantiles for outputs), the
statistics that compare a window with it (:mod:`~workers.drift.stats`: PSI and
Kolmogorov-Smirnov for numeric features, chi-square and Jensen-Shannon for categorical
ones, computed with SciPy) and the policies that turn windows into actions
(:mod:`~workers.drift.policy`: ``drift > 0.25 for 3 windows``).
"""

from workers.drift.policy import Condition, InvalidPolicy, parse_condition
from workers.drift.profile import (
    CategoricalProfile,
    NumericProfile,
    ReferenceProfile,
    build_profile,
)
from workers.drift.stats import DriftThresholds, FeatureDrift, WindowDrift, window_drift

__all__ = [
    "CategoricalProfile",
    "Condition",
    "DriftThresholds",
    "FeatureDrift",
    "InvalidPolicy",
    "NumericProfile",
    "ReferenceProfile",
    "WindowDrift",
    "build_profile",
    "parse_condition",
    "window_drift",
]
