"""The output of batch scoring: one JSON line per input row, in input order, and what an
earlier run left there.

    {"row": 0, "id": "a1", "version": 3, "status": "ok",
     "outputs": {"probabilities": [...], "label": 7}, "error": null}

An interrupted run leaves a prefix of whole lines (and perhaps half of the next);
:func:`resume_point` keeps the whole ones and says how many failed, so that a rerun
scores those again and continues after the prefix.
"""

from __future__ import annotations

import json
from collections.abc import Generator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from producer.contract.messages import ErrorCode, Result
from producer.score_input import Row


@dataclass(frozen=True, slots=True)
class Earlier:
    """What an earlier run left in the output: ``done`` rows, ``failed`` of them."""

    done: int = 0
    failed: int = 0


def resume_point(out: Path) -> Earlier:
    """The rows already written to ``out`` and how many of them failed.

    Keeps the longest prefix of whole, valid lines numbered 0, 1, 2, ... and truncates
    anything after it (a half-written line from a crash).
    """
    if not out.exists():
        return Earlier()
    done = failed = good_bytes = 0
    with out.open("rb") as lines:
        for line in lines:
            record = _record(line)
            if record is None or record.get("row") != done:
                break
            done += 1
            failed += record.get("status") != "ok"
            good_bytes += len(line)
    if good_bytes != out.stat().st_size:
        with out.open("r+b") as handle:
            handle.truncate(good_bytes)
    return Earlier(done, failed)


def earlier_lines(out: Path) -> Generator[str | None, None, None]:
    """Each line of ``out`` (as :func:`resume_point` left it) if it is an ok row, else None."""
    with out.open("rb") as lines:
        for line in lines:
            record = _record(line)
            yield line.decode() if record is not None and record.get("status") == "ok" else None


def _record(line: bytes) -> dict[str, Any] | None:
    if not line.endswith(b"\n"):
        return None
    try:
        record = json.loads(line)
    except ValueError:
        return None
    return record if isinstance(record, dict) else None


def line(row: Row, status: str, version: int | None, outputs: Any, error: Any) -> str:
    record = {
        "row": row.index,
        "id": row.id,
        "version": version,
        "status": status,
        "outputs": outputs,
        "error": error,
    }
    return json.dumps(record, separators=(",", ":")) + "\n"


def result_lines(rows: list[Row], result: Result) -> list[str]:
    """The lines of the rows that one job carried, from its Result."""
    if result.error is not None:
        error = {"code": str(result.error.code), "message": result.error.message}
        return [line(row, "error", result.version, None, error) for row in rows]
    outputs = {  # an OIP answer's outputs are arrays
        name: value.tolist() if isinstance(value, np.ndarray) else value
        for name, value in (result.outputs or {}).items()
    }
    return [
        line(row, "ok", result.version, {k: v[i] for k, v in outputs.items()}, None)
        for i, row in enumerate(rows)
    ]


def unreadable_line(row: Row) -> str:
    """The line of a row that could not be read, so was never sent."""
    error = {"code": ErrorCode.INVALID_INPUT.value, "message": row.error}
    return line(row, "error", None, None, error)
