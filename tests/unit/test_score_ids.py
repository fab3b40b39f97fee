"""docs/clients.md: a row's ``id`` keeps the input's type where the format has types
(JSONL), and is text from a CSV, which has none (issue 27, item 11)."""

from __future__ import annotations

from pathlib import Path

from producer.score_input import read_rows


def test_jsonl_ids_keep_their_type_and_csv_ids_are_text(tmp_path: Path) -> None:
    jsonl = tmp_path / "rows.jsonl"
    jsonl.write_text('{"id": 7, "x": [1.0]}\n{"id": "a1", "x": [2.0]}\n')
    csv = tmp_path / "rows.csv"
    csv.write_text("id,p0\n7,1.0\na1,2.0\n")

    assert [row.id for row in read_rows(jsonl)] == [7, "a1"]
    assert [row.id for row in read_rows(csv)] == ["7", "a1"]
