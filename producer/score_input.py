"""Reading the rows to score, streamed, from a JSONL, CSV or Parquet file.

Formats (chosen by suffix):

- ``.jsonl``/``.ndjson``: one object per line; ``id`` is optional, every other key is an
  input name holding this row's value, e.g. ``{"id": "a1", "x": [0.0, ...]}`` or
  ``{"text": "a review"}``.
- ``.csv`` and ``.parquet``: an optional ``id`` column; a ``text`` column (and, in
  Parquet, any list column) is an input of that name; all remaining columns form one
  input, ``input_name`` (default ``x``), row-wise as floats.

``read_rows(..., label="label")`` also takes that key or column out of the inputs into
``Row.label`` (for measuring a model against known answers; scoring passes none).

A row that cannot be read (bad JSON, a non-numeric cell, a number out of float64's
range) is still a row: it carries its ``error`` and is written as one, never sent.
"""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from producer.contract import numbers
from producer.errors import ClientError
from producer.table_files import FORMATS as TABLE_FORMATS
from producer.table_files import csv_rows, jsonl_lines, parquet_records, parquet_row_count

FORMATS = {**TABLE_FORMATS, ".json": "jsonl"}  # score also reads .json as JSON Lines


class UnreadableInput(ClientError):
    """The input file is missing, or its suffix names no format that maas reads."""


@dataclass(slots=True)
class Row:
    """One input row; ``error`` is set when the row could not even be read."""

    index: int
    id: Any
    inputs: dict[str, Any]
    error: str | None = None
    label: Any = None


def input_format(path: Path) -> str:
    """``jsonl``, ``csv`` or ``parquet``, from the suffix of an existing ``path``;
    else :class:`UnreadableInput`."""
    if not path.is_file():
        raise UnreadableInput(f"{path} does not exist (or is not a file)")
    kind = FORMATS.get(path.suffix.lower())
    if kind is None:
        raise UnreadableInput(
            f"cannot score {path}: its suffix names no format maas reads; "
            f"use one of {', '.join(FORMATS)}"
        )
    return kind


def read_rows(path: Path, input_name: str = "x", label: str | None = None) -> Iterator[Row]:
    """Stream the rows of a JSONL, CSV or Parquet file (``label``: see the module doc)."""
    kind = input_format(path)
    if kind == "jsonl":
        return _read_jsonl(path, label)
    if kind == "csv":
        return _read_csv(path, input_name, label)
    return _read_parquet(path, input_name, label)


def count_rows(path: Path) -> int | None:
    """Rows in ``path`` (cheap: a line count or Parquet metadata), for progress."""
    kind = input_format(path)
    if kind == "parquet":
        return parquet_row_count(path)
    with path.open("rb") as lines:
        count = sum(1 for line in lines if line.strip())
    return count - 1 if kind == "csv" else count


def _read_jsonl(path: Path, label: str | None) -> Iterator[Row]:
    for index, (_, line) in enumerate(jsonl_lines(path)):
        yield _jsonl_row(index, line, label)


def _jsonl_row(index: int, line: bytes, label: str | None) -> Row:
    try:
        record = numbers.loads(line)
    except ValueError as exc:
        return Row(index, None, {}, f"line {index + 1} is not valid JSON: {exc}")
    if not isinstance(record, dict):
        return Row(index, None, {}, f"line {index + 1} is not a JSON object")
    row_id = record.pop("id", None)
    return Row(index, row_id, record, label=_take_label(record, label))


def _take_label(record: dict[str, Any], label: str | None) -> Any:
    """The value of ``label`` taken out of ``record`` (None without a ``label``)."""
    return record.pop(label, None) if label else None


def _split_columns(
    record: dict[str, Any], input_name: str, index: int, label: str | None = None
) -> Row:
    row_id = record.pop("id", None)
    answer = _take_label(record, label)
    inputs = {k: v for k, v in record.items() if k == "text" or isinstance(v, list)}
    rest = [v for k, v in record.items() if k not in inputs]
    if rest:
        try:
            inputs[input_name] = [numbers.finite(v) for v in rest]
        except (TypeError, ValueError) as exc:
            return Row(index, row_id, {}, f"row {index}: a column is not numeric: {exc}")
    return Row(index, row_id, inputs, label=answer)


def _read_csv(path: Path, input_name: str, label: str | None) -> Iterator[Row]:
    rows = csv_rows(path)
    header = next(rows, None)
    for index, row in enumerate(rows):
        yield _split_columns(_by_name(header or [], row), input_name, index, label)


def _by_name(header: list[str], row: list[str]) -> dict[Any, Any]:
    """``row`` as ``csv.DictReader`` gives it: cells past the header in a list under
    None, names past the row's cells with None."""
    record: dict[Any, Any] = dict(zip(header, row, strict=False))
    if len(row) > len(header):
        record[None] = row[len(header) :]
    record.update((name, None) for name in header[len(row) :])
    return record


def _read_parquet(path: Path, input_name: str, label: str | None) -> Iterator[Row]:
    for index, record in enumerate(parquet_records(path)):
        yield _split_columns(record, input_name, index, label)
