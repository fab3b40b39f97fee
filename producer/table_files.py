"""Tables in files: CSV, JSON Lines and Parquet, read the one way maas reads them.

``maas score`` (:mod:`producer.score_input`, row by row, streamed) and the training
recipes (:mod:`workers.recipes.data`, whole columns) both read through here; each
makes its own rows and errors of what this hands over. The format comes from the
suffix (:data:`FORMATS`); CSV and JSON Lines are UTF-8 text; Parquet needs pyarrow,
imported only when a Parquet file is read.
"""

from __future__ import annotations

import csv
from collections.abc import Iterator
from pathlib import Path
from typing import Any

# Suffix → format, in the order error messages list them.
FORMATS = {
    ".jsonl": "jsonl",
    ".ndjson": "jsonl",
    ".csv": "csv",
    ".parquet": "parquet",
    ".pq": "parquet",
}


def format_of(path: Path) -> str | None:
    """``jsonl``, ``csv`` or ``parquet``, from ``path``'s suffix; None for another."""
    return FORMATS.get(path.suffix.lower())


def csv_rows(path: Path) -> Iterator[list[str]]:
    """The rows of a CSV file: its header (its first row, as it is), then every row
    that is not blank."""
    with path.open(newline="", encoding="utf-8") as text:
        reader = csv.reader(text)
        header = next(reader, None)
        if header is None:
            return
        yield header
        yield from (row for row in reader if row)


def jsonl_lines(path: Path) -> Iterator[tuple[int, bytes]]:
    """Each line of a JSON Lines file that is not blank, with its number (from 1)."""
    with path.open("rb") as lines:
        for number, line in enumerate(lines, start=1):
            if line.strip():
                yield number, line


def parquet_records(path: Path, batch_size: int = 1024) -> Iterator[dict[str, Any]]:
    """The rows of a Parquet file as column → value, read ``batch_size`` at a time."""
    import pyarrow.parquet as pq

    for batch in pq.ParquetFile(path).iter_batches(batch_size=batch_size):
        yield from batch.to_pylist()


def parquet_columns(path: Path) -> dict[str, list[Any]]:
    """A whole Parquet file as column → values."""
    import pyarrow.parquet as pq

    columns: dict[str, list[Any]] = pq.read_table(path).to_pydict()
    return columns


def parquet_row_count(path: Path) -> int:
    """The rows in a Parquet file, from its metadata."""
    import pyarrow.parquet as pq

    return int(pq.ParquetFile(path).metadata.num_rows)
