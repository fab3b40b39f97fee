"""``maas score`` as a user reruns it: failed rows are scored again, the first distinct
errors are shown, and a run that every row would fail stops early and says why."""

from __future__ import annotations

import csv
import json
from pathlib import Path
from typing import TYPE_CHECKING, Any

import pytest

from maas.cli import main
from workers.recipes.demo import digits_samples

if TYPE_CHECKING:
    from tests.serving_fixtures import ServedDigits


ROWS = 200


@pytest.fixture
def served_args(served_digits: ServedDigits) -> list[str]:
    kafka = served_digits.kafka
    prefix, bootstrap = kafka.topics.prefix, kafka.bootstrap_servers
    return ["--bootstrap-servers", bootstrap, "--topic-prefix", prefix, "--embedded-broker"]


def score(
    capsys: pytest.CaptureFixture[str], source: Path, out: Path, *flags: str
) -> tuple[int, str]:
    """``maas score`` as a user runs it; returns the exit code and stderr."""
    capsys.readouterr()
    code = main(["score", str(source), "--out", str(out), "--rows-per-job", "10", *flags])
    captured = capsys.readouterr()
    assert "Traceback" not in captured.err and captured.out == ""
    return code, captured.err


def lines(out: Path) -> list[dict[str, Any]]:
    return [json.loads(line) for line in out.read_text().splitlines()]


def write_csv(path: Path, rows: int) -> Path:
    pixels, _ = digits_samples(rows)
    with path.open("w", newline="") as text:
        writer = csv.writer(text)
        writer.writerow([f"p{j}" for j in range(64)])
        writer.writerows(row.tolist() for row in pixels)
    return path


def test_a_wrong_input_name_stops_early_and_the_corrected_rerun_scores_every_row(
    served_args: list[str], tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    source, out = write_csv(tmp_path / "in.csv", ROWS), tmp_path / "out.jsonl"
    target = ["--model", "digits", *served_args]
    code, err = score(capsys, source, out, *target, "--input-name", "pixels")
    assert code == 1
    assert "the first 3 jobs failed on every row with INVALID_INPUT" in err
    assert "unknown input 'pixels'" in err and "run the same command again" in err
    written = lines(out)
    assert 0 < len(written) < ROWS and all(r["status"] == "error" for r in written)

    code, err = score(capsys, source, out, *target)
    assert code == 0, err
    assert f"{ROWS} rows in {out}" in err
    assert f"{len(written)} of them failed before" in err and ", 0 failed" in err
    rows = lines(out)
    assert [r["row"] for r in rows] == list(range(ROWS))
    assert all(r["status"] == "ok" for r in rows)


def test_an_unknown_model_stops_early(
    served_args: list[str], tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    source, out = write_csv(tmp_path / "in.csv", ROWS), tmp_path / "out.jsonl"
    code, err = score(capsys, source, out, "--model", "nope", *served_args)
    assert code == 1
    assert "stopped after 30 rows" in err
    assert "30 rows: MODEL_NOT_FOUND: " in err and "every row would" in err


def test_failed_rows_are_shown_by_error_and_scored_again_once_fixed(
    served_args: list[str], tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    pixels, _ = digits_samples(ROWS)
    good = [json.dumps({"id": i, "x": row.tolist()}) for i, row in enumerate(pixels)]
    broken = list(good)
    broken[5] = json.dumps({"id": 5, "x": [0.0] * 63})
    broken[150] = json.dumps({"id": 150, "x": [0.0] * 63})
    broken[77] = '{"id": 77, "x": [1e400'
    source, out = tmp_path / "in.jsonl", tmp_path / "out.jsonl"
    source.write_text("\n".join(broken) + "\n")
    code, err = score(capsys, source, out, "--model", "digits", *served_args)
    assert code == 1
    assert ", 3 failed" in err
    assert "  2 rows: INVALID_INPUT: input 'x' has shape" in err
    assert "  1 row: INVALID_INPUT: line 78 is not valid JSON" in err

    source.write_text("\n".join(good) + "\n")
    code, err = score(capsys, source, out, "--model", "digits", *served_args)
    assert code == 0, err
    assert f"({ROWS - 3} kept from an earlier run, 3 scored now, 3 of them failed before" in err
    rows = lines(out)
    assert [r["id"] for r in rows] == list(range(ROWS))
    assert all(r["status"] == "ok" for r in rows)
    assert not (tmp_path / "out.jsonl.retry").exists()
