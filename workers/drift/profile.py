"""A version's reference profile: what its inputs and outputs looked like when it was made.

:func:`build_profile` reads named arrays (the rows of a training split, or captured
traffic) and keeps, per feature, only a bounded summary:

* numeric features: 51 quantiles (every 2 %) for the Kolmogorov-Smirnov statistic, and
  bin edges at the deciles with the reference's share of rows in each bin, for PSI. A
  constant feature keeps one edge, so a move away from the constant still shows;
* categorical features (integers or booleans with few distinct values, and predicted
  labels): the frequencies of the 50 most common values, the rest as ``__other__``;
* text: the distributions of characters and words per row and, given a vocabulary,
  of the share of words outside it (out-of-vocabulary rate).

A tensor contributes one feature per column (``x[3]``) up to :data:`MAX_COLUMNS` columns a
row; a wider one (an image, an embedding) contributes its per-row mean and standard
deviation (``x.mean``, ``x.std``), which keeps a profile within a few hundred kilobytes
whatever the model. A probability output contributes its predicted class
(``probabilities.class``) and the confidence of that prediction
(``probabilities.confidence``), from which the monitor estimates accuracy without labels.
"""

from __future__ import annotations

from collections import Counter
from collections.abc import Iterator, Mapping
from typing import Literal

import msgspec
import numpy as np
from numpy.typing import NDArray

PROFILE_SCHEMA: Literal["maas.reference/v1"] = "maas.reference/v1"
MAX_COLUMNS = 256
QUANTILES = np.linspace(0.0, 1.0, 51)
DECILES = np.linspace(0.1, 0.9, 9)
MAX_CATEGORIES = 50
MAX_CATEGORICAL_DISTINCT = 20  # integers with at most this many values are categories
OTHER = "__other__"


class NumericProfile(msgspec.Struct, frozen=True, tag="numeric"):
    """A numeric feature: quantiles (KS) and decile bins with their shares (PSI)."""

    quantiles: list[float]
    edges: list[float]
    fractions: list[float]  # one more than edges: (-inf, e0], (e0, e1], ..., (e_last, inf)


class CategoricalProfile(msgspec.Struct, frozen=True, tag="categorical"):
    """A categorical feature: the share of each of its most common values."""

    frequencies: dict[str, float]


FeatureProfile = NumericProfile | CategoricalProfile


class ReferenceProfile(msgspec.Struct, frozen=True):
    """Per feature name, its profile; ``inputs`` and ``outputs`` kept apart."""

    rows: int
    inputs: dict[str, FeatureProfile]
    outputs: dict[str, FeatureProfile]
    schema: Literal["maas.reference/v1"] = PROFILE_SCHEMA
    source: str = ""  # where the rows came from: "training split", "data FILE", "capture"

    def encode(self) -> bytes:
        return msgspec.json.encode(self)

    @classmethod
    def decode(cls, data: bytes | str) -> ReferenceProfile:
        return msgspec.json.decode(data, type=cls)


Columns = Iterator[tuple[str, NDArray[np.generic]]]


def build_profile(
    inputs: Mapping[str, NDArray[np.generic]],
    outputs: Mapping[str, NDArray[np.generic]],
    *,
    vocabulary: frozenset[str] | None = None,
    source: str = "",
) -> ReferenceProfile:
    """The profile of these rows (each array's first dimension is the row)."""
    rows = {len(array) for array in (*inputs.values(), *outputs.values())}
    if len(rows) > 1:
        raise ValueError(f"every array needs the same number of rows, got {sorted(rows)}")
    return ReferenceProfile(
        rows=rows.pop() if rows else 0,
        inputs={n: profile_of(v) for n, v in input_columns(inputs, vocabulary)},
        outputs={n: profile_of(v) for n, v in output_columns(outputs)},
        source=source,
    )


def input_columns(
    inputs: Mapping[str, NDArray[np.generic]], vocabulary: frozenset[str] | None = None
) -> Columns:
    """Each input's features as (name, one value per row)."""
    for name, array in inputs.items():
        if array.dtype.kind in "OUS":
            yield from text_columns(name, array, vocabulary)
        else:
            yield from numeric_columns(name, array)


def output_columns(outputs: Mapping[str, NDArray[np.generic]]) -> Columns:
    """Each output's features: predicted class and confidence for probabilities."""
    for name, array in outputs.items():
        if _is_probabilities(array):
            matrix = np.asarray(array, dtype=np.float64).reshape(len(array), -1)
            yield f"{name}.class", matrix.argmax(axis=1)
            yield f"{name}.confidence", matrix.max(axis=1)
        else:
            yield from numeric_columns(name, array)


def numeric_columns(name: str, array: NDArray[np.generic]) -> Columns:
    """One feature per column, or the row mean and deviation for wide tensors."""
    matrix = np.asarray(array).reshape(len(array), -1)
    if matrix.shape[1] == 1 and np.asarray(array).ndim == 1:
        yield name, matrix[:, 0]
    elif matrix.shape[1] <= MAX_COLUMNS:
        for column in range(matrix.shape[1]):
            yield f"{name}[{column}]", matrix[:, column]
    else:
        values = matrix.astype(np.float64)
        yield f"{name}.mean", values.mean(axis=1)
        yield f"{name}.std", values.std(axis=1)


def text_columns(
    name: str, array: NDArray[np.generic], vocabulary: frozenset[str] | None
) -> Columns:
    """Characters and words per row and, with a vocabulary, the out-of-vocabulary rate."""
    texts = [str(text) for text in np.asarray(array).reshape(-1)]
    words = [text.lower().split() for text in texts]
    yield f"{name}.chars", np.array([len(text) for text in texts], dtype=np.float64)
    yield f"{name}.words", np.array([len(row) for row in words], dtype=np.float64)
    if vocabulary is not None:
        oov = [sum(w not in vocabulary for w in row) / len(row) if row else 0.0 for row in words]
        yield f"{name}.oov", np.array(oov, dtype=np.float64)


def profile_of(values: NDArray[np.generic]) -> FeatureProfile:
    """The profile of one feature's values (non-finite numbers are left out)."""
    if is_categorical(values):
        return categorical_profile(values)
    return numeric_profile(values)


def is_categorical(values: NDArray[np.generic]) -> bool:
    if values.dtype.kind == "b":
        return True
    if values.dtype.kind not in "iu":
        return False
    return len(np.unique(values)) <= MAX_CATEGORICAL_DISTINCT


def numeric_profile(values: NDArray[np.generic]) -> NumericProfile:
    finite = finite_values(values)
    if finite.size == 0:
        return NumericProfile(quantiles=[], edges=[], fractions=[1.0])
    edges = np.unique(np.quantile(finite, DECILES))
    counts = np.bincount(np.searchsorted(edges, finite), minlength=len(edges) + 1)
    return NumericProfile(
        quantiles=[float(q) for q in np.quantile(finite, QUANTILES)],
        edges=[float(e) for e in edges],
        fractions=[float(c) for c in counts / finite.size],
    )


def categorical_profile(values: NDArray[np.generic]) -> CategoricalProfile:
    counts = Counter(category_names(values))
    total = sum(counts.values()) or 1
    common = counts.most_common(MAX_CATEGORIES)
    frequencies = {value: count / total for value, count in common}
    rest = total - sum(count for _, count in common)
    if rest:
        frequencies[OTHER] = rest / total
    return CategoricalProfile(frequencies=frequencies)


def category_names(values: NDArray[np.generic]) -> list[str]:
    """Categories as the strings a profile keys them by (``7``, ``True``)."""
    if values.dtype.kind in "iu":
        return [str(int(v)) for v in values.tolist()]
    return [str(v) for v in values.tolist()]


def finite_values(values: NDArray[np.generic]) -> NDArray[np.float64]:
    numbers = np.asarray(values, dtype=np.float64).reshape(-1)
    return numbers[np.isfinite(numbers)]


def _is_probabilities(array: NDArray[np.generic]) -> bool:
    """Float rows of two or more values in [0, 1] that sum to 1 (a softmax's output)."""
    if array.dtype.kind != "f" or array.ndim != 2 or array.shape[1] < 2 or len(array) == 0:
        return False
    values = np.asarray(array, dtype=np.float64)
    if values.min() < 0.0 or values.max() > 1.0:
        return False
    return bool(np.allclose(values.sum(axis=1), 1.0, atol=1e-3))
