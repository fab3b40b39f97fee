"""The one reading of CSV, JSON Lines and Parquet files that maas score and the
training recipes share (producer.table_files), and score's rows made of it."""

from __future__ import annotations

import csv
from pathlib import Path

import pyarrow as pa
import pyarrow.parquet as pq

from producer import table_files
from producer.score_input import read_rows
from workers.recipes.data import load_file

RAGGED = "a,b,c\n1,2,3\n\n4,5\n6,7,8,9\n"


def test_csv_rows_are_the_header_then_the_rows_that_are_not_blank(tmp_path: Path) -> None:
    path = tmp_path / "t.csv"
    path.write_text(RAGGED, encoding="utf-8")
    assert list(table_files.csv_rows(path)) == [
        ["a", "b", "c"],
        ["1", "2", "3"],
        ["4", "5"],
        ["6", "7", "8", "9"],
    ]


def test_score_reads_ragged_csv_rows_as_csv_dictreader_does(tmp_path: Path) -> None:
    path = tmp_path / "t.csv"
    path.write_text(RAGGED, encoding="utf-8")
    with path.open(newline="", encoding="utf-8") as text:
        expected = [dict(record) for record in csv.DictReader(text)]
    rows = list(read_rows(path))
    assert [row.inputs.get("x") for row in rows[:1]] == [[1.0, 2.0, 3.0]]
    assert len(rows) == len(expected) == 3
    assert rows[1].error is not None  # a missing cell is not numeric, as before
    assert rows[2].inputs[None] == expected[2][None] == ["9"]  # type: ignore[index]


def test_jsonl_lines_skip_blank_lines_and_keep_their_numbers(tmp_path: Path) -> None:
    path = tmp_path / "t.jsonl"
    path.write_bytes(b'{"a": 1}\n\n  \n{"a": 2}\r\n')
    assert list(table_files.jsonl_lines(path)) == [(1, b'{"a": 1}\n'), (4, b'{"a": 2}\r\n')]


def test_parquet_is_read_as_records_columns_and_a_count(tmp_path: Path) -> None:
    path = tmp_path / "t.parquet"
    pq.write_table(pa.table({"a": [1, 2, 3], "label": ["x", "y", "x"]}), path)
    assert list(table_files.parquet_records(path, batch_size=2)) == [
        {"a": 1, "label": "x"},
        {"a": 2, "label": "y"},
        {"a": 3, "label": "x"},
    ]
    assert table_files.parquet_columns(path) == {"a": [1, 2, 3], "label": ["x", "y", "x"]}
    assert table_files.parquet_row_count(path) == 3
    assert load_file(path, label="label").classes == ("x", "y")


def test_the_format_is_the_suffixs_for_both_readers() -> None:
    assert table_files.format_of(Path("T.CSV")) == "csv"
    assert table_files.format_of(Path("t.ndjson")) == "jsonl"
    assert table_files.format_of(Path("t.xlsx")) is None
