"""Labelled tabular data from a file (CSV, Parquet, JSONL) or a built-in data set.

Every column except the label is a numeric feature. Labels may be integers or strings;
they become class indices ``0..k-1`` in sorted order (numeric order for integers), and
``classes`` keeps their text so that index ``i`` can be named.
"""

from __future__ import annotations

import csv
import hashlib
import json
import math
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any
from urllib.parse import unquote, urlparse

import numpy as np
import numpy.typing as npt

from producer.table_files import FORMATS, csv_rows, format_of, jsonl_lines, parquet_columns
from workers.recipes.base import DatasetError, DatasetRef

Columns = dict[str, list[Any]]


@dataclass(frozen=True, slots=True)
class LabelledData:
    """Features ``x`` (float64 [N, F]) and class indices ``y`` (int64 [N])."""

    x: npt.NDArray[np.float64]
    y: npt.NDArray[np.int64]
    classes: tuple[str, ...]
    feature_names: tuple[str, ...]
    sha256: str
    source: str

    @property
    def n_features(self) -> int:
        return int(self.x.shape[1])


def load_dataset(ref: DatasetRef, *, label: str) -> LabelledData:
    """Load ``ref``: a file by URI/path (label column ``label``) or a built-in by name."""
    if ref.uri is not None:
        path = ref.path if ref.path is not None else path_from_uri(ref.uri)
        return load_file(path, label=label, shown=ref.uri)
    return load_builtin(str(ref.name))


def check_ref(ref: DatasetRef) -> None:
    """What can be told of ``ref`` without reading it (the file may be on another
    machine): a built-in's name is known; a URI's scheme and suffix are supported.
    Raises :class:`DatasetError` as :func:`load_dataset` would."""
    if ref.uri is not None:
        _file_format(path_from_uri(ref.uri))
    else:
        _builtin(str(ref.name))


def path_from_uri(uri: str) -> Path:
    """A local path from a ``file://`` URI or a plain path; other schemes are refused."""
    parsed = urlparse(uri)
    if parsed.scheme == "file":
        if parsed.netloc not in ("", "localhost"):
            raise DatasetError(f"file URI {uri!r} names host {parsed.netloc!r}; use file:///path")
        return Path(unquote(parsed.path))
    if parsed.scheme and len(parsed.scheme) > 1:  # one letter: a Windows drive
        raise DatasetError(
            f"dataset URI scheme {parsed.scheme!r} is not supported ({uri!r}); "
            "use a file:// URI or a local path"
        )
    return Path(uri)


def _file_format(path: Path, shown: str | None = None) -> str:
    """The dataset format that ``path``'s suffix names; messages name it ``shown``."""
    kind = format_of(path)
    if kind is None:
        raise DatasetError(
            f"cannot tell the format of {str(path) if shown is None else shown!r} from its "
            f"suffix; use one of {', '.join(sorted(FORMATS))}"
        )
    return kind


def load_file(path: Path, *, label: str, shown: str | None = None) -> LabelledData:
    """Load the file at ``path``; messages name it ``shown`` (default: the path)."""
    shown = str(path) if shown is None else shown
    kind = _file_format(path, shown)
    if not path.is_file():
        raise DatasetError(f"dataset file {shown!r} does not exist or is not a file")
    raw = path.read_bytes()
    if not raw.strip():
        raise DatasetError(f"dataset file {shown!r} is empty")
    name = Path(urlparse(shown).path).name
    try:
        columns = _READERS[kind](path, name)
    except (UnicodeDecodeError, csv.Error) as exc:
        raise DatasetError(
            f"{name} is not readable as {kind}: {exc}",
            public=f"{name} is not readable as {kind} (is it UTF-8 text?)",
        ) from exc
    return from_columns(columns, label=label, sha256=hashlib.sha256(raw).hexdigest(), source=shown)


def _read_csv(path: Path, name: str) -> Columns:
    rows = list(csv_rows(path))
    header, body = rows[0], rows[1:]
    for number, row in enumerate(body, start=2):
        if len(row) != len(header):
            raise DatasetError(
                f"{name} line {number} has {len(row)} fields, the header has {len(header)}"
            )
    return {column: [row[i] for row in body] for i, column in enumerate(header)}


def _read_jsonl(path: Path, name: str) -> Columns:
    records: list[dict[str, Any]] = []
    for number, line in jsonl_lines(path):
        records.append(_json_record(line.decode("utf-8"), f"{name} line {number}"))
    names = list(records[0])
    for number, record in enumerate(records, start=1):
        if set(record) != set(names):
            raise DatasetError(
                f"{name} record {number} has keys {sorted(record)}, the first has {sorted(names)}",
                public=f"{name} record {number} has other keys than the first record",
            )
    return {key: [record[key] for record in records] for key in names}


def _json_record(line: str, where: str) -> dict[str, Any]:
    try:
        record = json.loads(line)
    except json.JSONDecodeError as exc:
        raise DatasetError(f"{where} is not valid JSON: {exc.msg}") from exc
    except RecursionError as exc:
        raise DatasetError(f"{where} is nested too deeply") from exc
    if not isinstance(record, dict):
        raise DatasetError(f"{where} must be a JSON object, got {type(record).__name__}")
    return record


def _read_parquet(path: Path, name: str) -> Columns:
    try:
        return parquet_columns(path)
    except ImportError as exc:
        raise DatasetError("reading Parquet needs pyarrow: pip install 'maas[parquet]'") from exc
    except Exception as exc:  # pyarrow raises several unrelated types for bad files
        raise DatasetError(
            f"cannot read Parquet file {name}: {exc}",
            public=f"cannot read Parquet file {name}: not a valid Parquet file",
        ) from exc


_READERS: dict[str, Callable[[Path, str], Columns]] = {
    "csv": _read_csv,
    "jsonl": _read_jsonl,
    "parquet": _read_parquet,
}


def from_columns(columns: Columns, *, label: str, sha256: str, source: str) -> LabelledData:
    """Split ``columns`` into numeric features and encoded labels, with clear errors."""
    if label not in columns:
        fix = "(set the `label` param to name the right one)"
        raise DatasetError(
            f"{source} has no label column {label!r}; its columns are {', '.join(columns)} {fix}",
            public=f"{source} has no label column {label!r} {fix}",
        )
    if not columns[label]:
        raise DatasetError(f"{source} has a header but no rows")
    names = tuple(name for name in columns if name != label)
    if not names:
        raise DatasetError(f"{source} has no feature columns besides the label {label!r}")
    x = _features(columns, names, source)
    y, classes = encode_labels(columns[label], label)
    return LabelledData(x, y, classes, names, sha256, source)


def _features(columns: Columns, names: tuple[str, ...], source: str) -> npt.NDArray[np.float64]:
    converted = {name: _numeric(columns[name]) for name in names}
    numeric = [values for values in converted.values() if values is not None]
    if len(numeric) < len(names):
        bad = [name for name, values in converted.items() if values is None]
        fix = "every column except the label must hold numbers (encode or drop them)"
        raise DatasetError(
            f"{source}: feature column(s) {', '.join(bad)} are not numeric; {fix}",
            public=f"{source}: {len(bad)} of the {len(names)} feature columns are not numeric; {fix}",
        )
    x = np.column_stack(numeric).astype(np.float64)
    missing = ~np.isfinite(x)
    if missing.any():
        row, col = (int(i) for i in np.argwhere(missing)[0])
        where = f"has a missing or non-finite value (first at data row {row + 1}); fill or drop such rows"
        raise DatasetError(
            f"{source}: feature column {names[col]!r} {where}",
            public=f"{source}: feature column {col + 1} of {len(names)} {where}",
        )
    return x


def _numeric(values: list[Any]) -> list[float] | None:
    out: list[float] = []
    for value in values:
        number = _number(value)
        if number is None:
            return None
        out.append(number)
    return out


def _number(value: Any) -> float | None:
    """A float for numbers and numeric text; NaN for missing; None for anything else."""
    if value is None or value == "":
        return math.nan
    if isinstance(value, bool):
        return float(value)
    if isinstance(value, int | float):
        return float(value)
    if isinstance(value, str):
        try:
            return float(value)
        except ValueError:
            return None
    return None


def encode_labels(values: list[Any], label: str) -> tuple[npt.NDArray[np.int64], tuple[str, ...]]:
    """Class indices for ``values`` and the sorted class names they index."""
    if any(value is None or value == "" for value in values):
        raise DatasetError(f"label column {label!r} has missing values; fill or drop those rows")
    integers = _integer_labels(values)
    keys: list[int] | list[str] = (
        integers if integers is not None else [str(value) for value in values]
    )
    ordered: list[Any] = sorted(set(keys))
    if len(ordered) < 2:
        fix = "a classifier needs at least two"
        raise DatasetError(
            f"label column {label!r} has a single class {str(ordered[0])!r}; {fix}",
            public=f"label column {label!r} has a single class; {fix}",
        )
    index = {key: i for i, key in enumerate(ordered)}
    y = np.array([index[key] for key in keys], dtype=np.int64)
    return y, tuple(str(key) for key in ordered)


def _integer_labels(values: list[Any]) -> list[int] | None:
    """The labels as ints when every one is an integer (or integer text), else None."""
    out: list[int] = []
    for value in values:
        if isinstance(value, bool) or not isinstance(value, int | float | str):
            return None
        try:
            number = float(value)
        except ValueError:
            return None
        if not number.is_integer():
            return None
        out.append(int(number))
    return out


_BUILTINS = {
    "breast_cancer": "load_breast_cancer",
    "digits": "load_digits",
    "iris": "load_iris",
    "wine": "load_wine",
}
BUILTIN_DATASETS = tuple(_BUILTINS)


def _builtin(name: str) -> str:
    """The scikit-learn loader of built-in dataset ``name``."""
    if name not in _BUILTINS:
        raise DatasetError(
            f"no built-in dataset {name!r}; built-ins are {', '.join(BUILTIN_DATASETS)} "
            "(or give a dataset uri)"
        )
    return _BUILTINS[name]


def load_builtin(name: str) -> LabelledData:
    """One of scikit-learn's bundled data sets (no download): see ``BUILTIN_DATASETS``."""
    loader = _builtin(name)
    from sklearn import datasets

    bunch = getattr(datasets, loader)()
    x = np.ascontiguousarray(bunch.data, dtype=np.float64)
    y = np.ascontiguousarray(bunch.target, dtype=np.int64)
    digest = hashlib.sha256(f"builtin:{name}:".encode() + x.tobytes() + y.tobytes())
    names = tuple(str(n) for n in getattr(bunch, "feature_names", range(x.shape[1])))
    classes = tuple(str(c) for c in getattr(bunch, "target_names", np.unique(y)))
    return LabelledData(x, y, classes, names, digest.hexdigest(), f"built-in {name!r}")
