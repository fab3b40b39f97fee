"""Rows to calibrate and to measure a model with: from a data file, or the held-out rows
that a trained version carries.

A data file is read the way ``maas score`` reads it (JSONL, CSV or Parquet; see
:mod:`producer.score_input`); a ``label`` key or column, where present, holds each row's
known answer. A version trained by a built-in recipe on a built-in data set carries
its held-out rows: its ``dataset_hash`` names the data set and its ``test_size`` and
``split_seed`` params the split, so the rows the recipe measured it on are measured on
again, and rows of its training split calibrate.
"""

from __future__ import annotations

import itertools
from collections.abc import Iterator, Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import numpy.typing as npt

from producer.score_input import Row, read_rows
from registry.entities import ModelVersion, Signature
from workers.errors import InvalidInput
from workers.optimize.errors import DataError
from workers.recipes.base import DatasetRef
from workers.recipes.data import (
    BUILTIN_DATASETS,
    LabelledData,
    load_builtin,
    load_dataset,
    rows_to_read,
)
from workers.recipes.training import held_out_split
from workers.runtime.loader import prepare_inputs

Tensors = dict[str, np.ndarray]
LABEL = "label"
SPLIT_SEED = 0


@dataclass(frozen=True, slots=True)
class Rows:
    """Job inputs as the runtime takes them (validated, leading row axis), with each
    row's known answer as text where there is one."""

    inputs: Tensors
    labels: tuple[str, ...] | None
    source: str

    def __len__(self) -> int:
        return len(next(iter(self.inputs.values())))

    def take(self, index: npt.NDArray[np.int64]) -> Rows:
        labels = None if self.labels is None else tuple(self.labels[i] for i in index)
        return Rows({k: v[index] for k, v in self.inputs.items()}, labels, self.source)

    def cycle(self, size: int) -> Tensors:
        """``size`` rows, starting over from the first when there are fewer."""
        index = np.arange(size) % len(self)
        return {name: array[index] for name, array in self.inputs.items()}

    def chunks(self, size: int) -> Iterator[Tensors]:
        for start in range(0, len(self), size):
            yield {name: array[start : start + size] for name, array in self.inputs.items()}

    def split(self, first: int) -> tuple[Rows, Rows]:
        """``first`` rows drawn at random (seeded) and the rest, so that the rows that
        calibrate a model are never the rows that measure it."""
        order = np.random.default_rng(SPLIT_SEED).permutation(len(self))
        return self.take(np.sort(order[:first])), self.take(np.sort(order[first:]))


def select(
    version: ModelVersion,
    data: Path | None,
    *,
    calibrate: bool,
    limit: int,
    calibration_rows: int,
) -> tuple[Rows | None, Rows]:
    """(calibration rows or None when not ``calibrate``, evaluation rows) for ``version``:
    from ``data`` when given, else from the held-out rows the version carries."""
    if data is not None:
        rows = from_file(data, version.signature, limit=limit)
        if not calibrate:
            return None, rows
        if len(rows) < 2:
            raise DataError(
                f"{data} has {len(rows)} row; static quantisation needs rows to calibrate "
                "with and others to measure on: give at least 2 (a few hundred is better)"
            )
        return rows.split(min(calibration_rows, len(rows) // 2))
    carried_rows = carried(version, limit=limit, calibration_rows=calibration_rows)
    if carried_rows is None:
        raise DataError(
            f"version {version.version} of {version.model!r} carries no held-out rows (it was "
            "not trained on a built-in data set by a built-in recipe); pass --calibration FILE "
            "with rows in a format maas score reads (JSONL, CSV or Parquet)"
        )
    calibration, evaluation = carried_rows
    return (calibration if calibrate else None), evaluation


# -- rows from a file ---------------------------------------------------------------------


def from_file(path: Path, signature: Signature, *, limit: int) -> Rows:
    """The first ``limit`` rows of ``path``, checked against ``signature``."""
    if not path.is_file():
        raise DataError(f"calibration data {path} does not exist or is not a file")
    try:
        rows = list(itertools.islice(read_rows(path, _input_name(signature), LABEL), limit))
    except (ValueError, OSError, UnicodeDecodeError) as exc:
        raise DataError(f"cannot read calibration data {path}: {exc}") from exc
    if not rows:
        raise DataError(f"calibration data {path} has no rows")
    for row in rows:
        if row.error is not None:
            raise DataError(f"calibration data {path}: {row.error}")
    return Rows(_prepare(path, signature, rows), _labels(path, rows), f"rows of {path}")


def _input_name(signature: Signature) -> str:
    """The input that the numeric columns of a CSV or Parquet file form."""
    return signature.inputs[0].name if len(signature.inputs) == 1 else "x"


def _prepare(path: Path, signature: Signature, rows: list[Row]) -> Tensors:
    names = sorted(rows[0].inputs)
    for row in rows:
        if sorted(row.inputs) != names:
            raise DataError(
                f"calibration data {path}: row {row.index} has inputs {sorted(row.inputs)}, "
                f"the first row has {names}; every row needs the same inputs"
            )
    stacked = {name: [row.inputs[name] for row in rows] for name in names}
    try:
        return prepare_inputs(signature, stacked)
    except InvalidInput as exc:
        raise DataError(
            f"calibration data {path} does not fit the model: {exc}; give it the model's "
            f"inputs (and optionally a {LABEL!r} column with the known answer)"
        ) from exc


def _labels(path: Path, rows: list[Row]) -> tuple[str, ...] | None:
    given = [row.label is not None for row in rows]
    if not any(given):
        return None
    if not all(given):
        missing = given.index(False)
        raise DataError(
            f"calibration data {path}: row {rows[missing].index} has no {LABEL!r} while "
            "others do; give every row its label, or none"
        )
    return tuple(_label_text(row.label) for row in rows)


def _label_text(value: Any) -> str:
    """A label as text, so ``3``, ``3.0`` and ``"3"`` name the same class."""
    if isinstance(value, float) and value.is_integer():
        return str(int(value))
    return str(value)


# -- rows a version carries ---------------------------------------------------------------


def carried(
    version: ModelVersion, *, limit: int, calibration_rows: int
) -> tuple[Rows, Rows] | None:
    """(calibration, evaluation) rows of a version trained on a built-in data set."""
    return trained_on(
        version.dataset_hash,
        version.params,
        version.signature,
        limit=limit,
        calibration_rows=calibration_rows,
    )


def trained_on(
    dataset_hash: str | None,
    params: Mapping[str, Any],
    signature: Signature,
    *,
    dataset: DatasetRef | None = None,
    limit: int,
    calibration_rows: int,
) -> tuple[Rows, Rows] | None:
    """(calibration, evaluation) rows of the data a model was trained on: ``dataset``
    (a file's label column is ``params["label"]``; its ``path``, where set, is read),
    else the built-in data set whose hash is ``dataset_hash``. None when there is no
    such data or split."""
    if dataset_hash is None or not {"test_size", "split_seed"} <= params.keys():
        return None
    label = str(params.get("label", LABEL))
    data = (
        _builtin(dataset_hash)
        if dataset is None
        else load_dataset(dataset, label=label, max_rows=rows_to_read(params))
    )
    if data is None or data.sha256 != dataset_hash:
        return None
    return held_out(data, params, signature, limit=limit, calibration_rows=calibration_rows)


def _builtin(sha256: str) -> LabelledData | None:
    for name in BUILTIN_DATASETS:
        data = load_builtin(name)
        if data.sha256 == sha256:
            return data
    return None


def held_out(
    data: LabelledData,
    params: Mapping[str, Any],
    signature: Signature,
    *,
    limit: int,
    calibration_rows: int,
) -> tuple[Rows, Rows]:
    """Training rows to calibrate with and held-out rows to measure on, split as the
    recipe split them (``test_size``, ``split_seed``)."""
    train, test = held_out_split(data.y, float(params["test_size"]), int(params["split_seed"]))
    rng = np.random.default_rng(SPLIT_SEED)
    calibrate = np.sort(rng.permutation(train)[:calibration_rows])
    return (
        _labelled(data, calibrate, signature, f"training rows of {data.source}"),
        _labelled(data, test[:limit], signature, f"held-out rows of {data.source}"),
    )


def _labelled(
    data: LabelledData,
    index: Sequence[int] | npt.NDArray[np.int64],
    signature: Signature,
    source: str,
) -> Rows:
    features = {_input_name(signature): data.x[np.asarray(index)].tolist()}
    try:
        inputs = prepare_inputs(signature, features)
    except InvalidInput as exc:
        raise DataError(f"the {source} do not fit the model: {exc}") from exc
    return Rows(inputs, tuple(data.classes[data.y[i]] for i in index), source)
