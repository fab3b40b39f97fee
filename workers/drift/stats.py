"""How far a window of traffic strays from a version's reference profile.

The statistics are SciPy's, not hand-written tests:

* numeric features: the Population Stability Index over the reference's decile bins
  (``scipy.special.rel_entr`` both ways: PSI is the symmetrised Kullback-Leibler
  divergence of the two binned distributions) and the two-sample Kolmogorov-Smirnov
  statistic against the reference's quantiles (``scipy.stats.ks_2samp``);
* categorical features and predicted classes: the chi-square test of the window's counts
  against the reference's frequencies (``scipy.stats.chisquare``) and the Jensen-Shannon
  distance between the two distributions (``scipy.spatial.distance.jensenshannon``,
  base 2, so it lies in [0, 1]).

A feature is *drifted* when its window holds at least ``min_rows`` values and its PSI
(numeric) or Jensen-Shannon distance (categorical) reaches the threshold: the usual
reading of PSI is "below 0.1 stable, 0.1 to 0.25 moving, above 0.25 shifted", and both
measures, unlike a p-value, do not call every small difference significant once a window
is large. The window's drift is the share of its input features that drifted; the
prediction's drift is reported apart. For probability outputs the window also carries an
accuracy *estimated* from the predicted confidences (their mean), which tracks the
labelled accuracy of a calibrated model before any label arrives.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass

import numpy as np
from numpy.typing import NDArray
from scipy.spatial.distance import jensenshannon
from scipy.special import rel_entr
from scipy.stats import chisquare, ks_2samp

from workers.drift.profile import (
    OTHER,
    CategoricalProfile,
    FeatureProfile,
    NumericProfile,
    ReferenceProfile,
    category_names,
    finite_values,
    input_columns,
    output_columns,
)

SMOOTHING = 1e-4  # added to every bin's share so that an empty bin does not divide by zero


@dataclass(frozen=True, slots=True)
class DriftThresholds:
    """When a feature counts as drifted; the monitor's settings carry one."""

    psi: float = 0.2
    js: float = 0.1
    min_rows: int = 50

    def __post_init__(self) -> None:
        if self.psi <= 0 or not 0 < self.js <= 1 or self.min_rows < 1:
            raise ValueError("drift thresholds: psi > 0, 0 < js <= 1 and min_rows >= 1")


@dataclass(frozen=True, slots=True)
class FeatureDrift:
    """One feature in one window: its statistics and whether it drifted."""

    name: str
    kind: str  # "numeric" | "categorical"
    rows: int
    score: float  # PSI (numeric) or Jensen-Shannon distance (categorical)
    ks: float | None = None  # Kolmogorov-Smirnov statistic (numeric)
    p_value: float | None = None  # chi-square test's p-value (categorical)
    drifted: bool = False
    shares: tuple[float, ...] = ()  # the window's share per reference bin or category

    def as_dict(self) -> dict[str, object]:
        return {
            "kind": self.kind,
            "rows": self.rows,
            "score": round(self.score, 6),
            "ks": None if self.ks is None else round(self.ks, 6),
            "p_value": self.p_value,
            "drifted": self.drifted,
            "shares": [round(s, 4) for s in self.shares],
        }


@dataclass(frozen=True, slots=True)
class WindowDrift:
    """A window's drift: per input feature, per prediction feature, and in aggregate."""

    rows: int
    features: tuple[FeatureDrift, ...]
    predictions: tuple[FeatureDrift, ...]
    estimated_accuracy: float | None

    @property
    def judged(self) -> tuple[FeatureDrift, ...]:
        return tuple(f for f in self.features if f.rows > 0)

    @property
    def share_drifted(self) -> float:
        """The share of the input features that drifted (0 when none could be judged)."""
        judged = self.judged
        return sum(f.drifted for f in judged) / len(judged) if judged else 0.0

    @property
    def prediction_drift(self) -> float | None:
        """The largest drift score among the prediction's features, if any."""
        scores = [f.score for f in self.predictions if f.kind == "categorical"]
        return max(scores) if scores else None

    def most_drifted(self, count: int = 5) -> list[FeatureDrift]:
        return sorted(self.judged, key=lambda f: f.score, reverse=True)[:count]


def window_drift(
    profile: ReferenceProfile,
    inputs: Mapping[str, NDArray[np.generic]],
    outputs: Mapping[str, NDArray[np.generic]],
    thresholds: DriftThresholds | None = None,
) -> WindowDrift:
    """Compare a window's rows (named arrays, rows first) with the reference ``profile``.

    Features the profile lacks are left out; features the window lacks (inputs dropped by
    the capture policy) are absent from the result.
    """
    limits = thresholds or DriftThresholds()
    features = _compare(profile.inputs, dict(input_columns(inputs)), limits)
    predicted = dict(output_columns(outputs))
    predictions = _compare(profile.outputs, predicted, limits)
    confidences = [v for name, v in predicted.items() if name.endswith(".confidence")]
    estimated = (
        float(np.asarray(confidences[0], dtype=np.float64).mean())
        if confidences and len(confidences[0])
        else None
    )
    rows = max((len(v) for v in (*inputs.values(), *outputs.values())), default=0)
    return WindowDrift(rows, features, predictions, estimated)


def _compare(
    reference: Mapping[str, FeatureProfile],
    current: Mapping[str, NDArray[np.generic]],
    limits: DriftThresholds,
) -> tuple[FeatureDrift, ...]:
    return tuple(
        feature_drift(name, reference[name], values, limits)
        for name, values in current.items()
        if name in reference
    )


def feature_drift(
    name: str, reference: FeatureProfile, values: NDArray[np.generic], limits: DriftThresholds
) -> FeatureDrift:
    """One feature's statistics against its reference profile."""
    if isinstance(reference, NumericProfile):
        return _numeric(name, reference, finite_values(values), limits)
    return _categorical(name, reference, category_names(np.asarray(values)), limits)


def _numeric(
    name: str, reference: NumericProfile, values: NDArray[np.float64], limits: DriftThresholds
) -> FeatureDrift:
    if values.size == 0 or not reference.quantiles:
        return FeatureDrift(name, "numeric", int(values.size), 0.0)
    bins = np.searchsorted(np.asarray(reference.edges), values)
    counts = np.bincount(bins, minlength=len(reference.fractions))
    score = psi(np.asarray(reference.fractions), counts)
    ks = float(ks_2samp(np.asarray(reference.quantiles), values).statistic)
    drifted = values.size >= limits.min_rows and score >= limits.psi
    shares = tuple(float(s) for s in counts / values.size)
    return FeatureDrift(
        name, "numeric", int(values.size), score, ks=ks, drifted=drifted, shares=shares
    )


def _categorical(
    name: str, reference: CategoricalProfile, values: list[str], limits: DriftThresholds
) -> FeatureDrift:
    if not values:
        return FeatureDrift(name, "categorical", 0, 0.0)
    known = list(reference.frequencies)
    if OTHER not in reference.frequencies:
        known.append(OTHER)
    index = {category: i for i, category in enumerate(known)}
    other = index[OTHER]
    counts = np.bincount([index.get(v, other) for v in values], minlength=len(known))
    expected = _smoothed(np.array([reference.frequencies.get(c, 0.0) for c in known]))
    observed_share = _smoothed(counts / counts.sum())
    distance = float(jensenshannon(expected, observed_share, base=2))
    p_value = float(chisquare(counts, f_exp=expected * counts.sum()).pvalue)
    drifted = len(values) >= limits.min_rows and distance >= limits.js
    shares = tuple(float(s) for s in counts / counts.sum())
    return FeatureDrift(
        name,
        "categorical",
        len(values),
        distance,
        p_value=p_value,
        drifted=drifted,
        shares=shares,
    )


def psi(expected: NDArray[np.float64], counts: NDArray[np.int64]) -> float:
    """Population Stability Index of ``counts`` against the shares ``expected``."""
    reference = _smoothed(expected)
    current = _smoothed(counts / max(int(counts.sum()), 1))
    return float(np.sum(rel_entr(current, reference) + rel_entr(reference, current)))


def _smoothed(shares: NDArray[np.float64]) -> NDArray[np.float64]:
    padded: NDArray[np.float64] = np.asarray(shares, dtype=np.float64) + SMOOTHING
    return padded / float(padded.sum())
