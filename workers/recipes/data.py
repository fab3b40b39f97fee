"""Labelled tabular data from a file (CSV, Parquet, JSONL) or a built-in data set.

Every column except the label is a numeric feature. Labels may be integers or strings;
they become class indices ``0..k-1`` in sorted order (numeric order for integers), and
``classes`` keeps their text so that index ``i`` can be named.
"""

from __future__ import annotations

import csv
import hashlib
import io
import json
import math
from array import array
from collections.abc import Callable, Hashable, Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any, BinaryIO
from urllib.parse import unquote, urlparse

import numpy as np
import numpy.typing as npt

from producer.table_files import FORMATS
from workers.recipes.base import DatasetError, DatasetRef
from workers.recipes.files import open_dataset

# A column's values: a list, or (features read row by row) an array('d'), or None for a
# feature column that held something else than numbers.
Columns = dict[str, Any]


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


def load_dataset(ref: DatasetRef, *, label: str, max_rows: int | None = None) -> LabelledData:
    """Load ``ref``: a file by URI/path (label column ``label``; at most ``max_rows``
    rows read) or a built-in by name."""
    if ref.uri is not None:
        path = ref.path if ref.path is not None else path_from_uri(ref.uri)
        limits = ReadLimits(roots=ref.roots, max_bytes=ref.max_bytes, max_rows=max_rows)
        return load_file(path, label=label, shown=ref.uri, limits=limits)
    return load_builtin(str(ref.name))


def rows_to_read(params: Mapping[str, Any]) -> int | None:
    """How many rows of a dataset file a run with ``params`` reads: enough for
    ``max_rows`` training rows beside their ``test_size`` held-out share (None: all).
    Training, the gate's measurement and quantisation read the same rows."""
    max_rows = params.get("max_rows")
    if max_rows is None:
        return None
    return math.ceil(int(max_rows) / (1.0 - float(params.get("test_size", 0.25)))) + 1


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
    kind = FORMATS.get(path.suffix.lower())
    if kind is None:
        raise DatasetError(
            f"cannot tell the format of {str(path) if shown is None else shown!r} from its "
            f"suffix; use one of {', '.join(sorted(FORMATS))}"
        )
    return kind


@dataclass(frozen=True, slots=True)
class ReadLimits:
    """How a dataset file is read: confined to ``roots`` (None: anywhere), refused over
    ``max_bytes``, and only its first ``max_rows`` rows (None: all) loaded."""

    roots: tuple[Path, ...] | None = None
    max_bytes: int | None = None
    max_rows: int | None = None


def load_file(
    path: Path, *, label: str, shown: str | None = None, limits: ReadLimits | None = None
) -> LabelledData:
    """Load the file at ``path``; messages name it ``shown`` (default: the path).

    CSV and JSONL are read row by row into numeric arrays (a feature costs 8 bytes a
    row, not a Python string and a float), up to ``limits.max_rows`` rows; the sha256
    is of the whole file, read in blocks."""
    shown = str(path) if shown is None else shown
    limits = limits or ReadLimits()
    kind = _file_format(path, shown)
    name = Path(urlparse(shown).path).name
    with open_dataset(path, roots=limits.roots, max_bytes=limits.max_bytes, shown=shown) as raw:
        sha256 = _sha256(raw)
        if not sha256[1]:
            raise DatasetError(f"dataset file {shown!r} is empty")
        raw.seek(0)
        try:
            columns = _READERS[kind](raw, name, Sink(label, limits.max_rows))
        except (UnicodeDecodeError, csv.Error) as exc:
            raise DatasetError(
                f"{name} is not readable as {kind}: {exc}",
                public=f"{name} is not readable as {kind} (is it UTF-8 text?)",
            ) from exc
    return from_columns(columns, label=label, sha256=sha256[0], source=shown)


def _sha256(raw: BinaryIO) -> tuple[str, bool]:
    """The file's sha256, and whether it holds anything but whitespace."""
    digest, content = hashlib.sha256(), False
    while block := raw.read(1 << 20):
        digest.update(block)
        content = content or bool(block.strip())
    return digest.hexdigest(), content


class Sink:
    """Collects rows column by column: the label's values (equal ones shared, so a
    repeated class costs a pointer a row) and each feature parsed into an ``array('d')``
    as it comes (a value that is no number marks its column, reported by
    :func:`from_columns` as before). Stops wanting rows after ``max_rows``."""

    def __init__(self, label: str, max_rows: int | None) -> None:
        self.label, self.max_rows = label, max_rows
        self.names: list[str] = []
        self.labels: list[Any] = []
        self.features: list[array[float]] = []
        self.not_numeric: set[int] = set()
        self._label_at = -1
        self._seen: dict[Any, Any] = {}

    def start(self, names: list[str]) -> None:
        self.names = list(names)
        self._label_at = self.names.index(self.label) if self.label in self.names else -1
        self.features = [array("d") for _ in self.names]

    @property
    def full(self) -> bool:
        return self.max_rows is not None and self.rows >= self.max_rows

    @property
    def rows(self) -> int:
        if self._label_at >= 0:
            return len(self.labels)
        return len(self.features[0]) if self.features else 0

    def add(self, values: Sequence[Any]) -> None:
        for i, value in enumerate(values):
            if i == self._label_at:
                key = (type(value), value) if isinstance(value, Hashable) else id(value)
                self.labels.append(self._seen.setdefault(key, value))
                continue
            number = _number(value)
            if number is None:
                self.not_numeric.add(i)
                number = math.nan
            self.features[i].append(number)

    def columns(self) -> Columns:
        """The columns read: the label's values, and each feature's array (a column
        that held something else than numbers: None)."""
        columns: Columns = {}
        for i, name in enumerate(self.names):
            if i == self._label_at:
                columns[name] = self.labels
            else:
                columns[name] = None if i in self.not_numeric else self.features[i]
        return columns


def _read_csv(raw: BinaryIO, name: str, sink: Sink) -> Columns:
    handle = io.TextIOWrapper(raw, encoding="utf-8", newline="")
    try:
        reader = csv.reader(handle)
        header = next(reader, None)
        if header is None:
            raise DatasetError(f"{name} is empty")
        sink.start(header)
        for row in reader:
            if sink.full:
                break
            if not row:
                continue
            if len(row) != len(header):
                raise DatasetError(
                    f"{name} line {reader.line_num} has {len(row)} fields, "
                    f"the header has {len(header)}"
                )
            sink.add(row)
    finally:
        handle.detach()
    return sink.columns()


def _read_jsonl(raw: BinaryIO, name: str, sink: Sink) -> Columns:
    handle = io.TextIOWrapper(raw, encoding="utf-8")
    try:
        number = 0
        for lineno, line in enumerate(handle, start=1):
            if not line.strip():
                continue
            if sink.full:
                break
            record = _json_record(line, f"{name} line {lineno}")
            number += 1
            if number == 1:
                sink.start(list(record))
            elif set(record) != set(sink.names):
                raise DatasetError(
                    f"{name} record {number} has keys {sorted(record)}, the first has "
                    f"{sorted(sink.names)}",
                    public=f"{name} record {number} has other keys than the first record",
                )
            sink.add([record[key] for key in sink.names])
    finally:
        handle.detach()
    return sink.columns()


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


def _read_parquet(raw: BinaryIO, name: str, sink: Sink) -> Columns:
    try:
        import pyarrow.parquet as pq
    except ImportError as exc:
        raise DatasetError("reading Parquet needs pyarrow: pip install 'maas[parquet]'") from exc
    try:
        table = pq.read_table(raw)
    except Exception as exc:  # pyarrow raises several unrelated types for bad files
        raise DatasetError(
            f"cannot read Parquet file {name}: {exc}",
            public=f"cannot read Parquet file {name}: not a valid Parquet file",
        ) from exc
    if sink.max_rows is not None:
        table = table.slice(0, sink.max_rows)
    columns: Columns = table.to_pydict()
    return columns


_READERS: dict[str, Callable[[BinaryIO, str, Sink], Columns]] = {
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


def _numeric(values: Any) -> Sequence[float] | npt.NDArray[np.float64] | None:
    if values is None:
        return None
    if isinstance(values, array):
        return np.frombuffer(values, dtype=np.float64)
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
