"""Batch scoring: stream rows from a file through the service into JSONL, in order.

Input formats (chosen by suffix):

- ``.jsonl``/``.ndjson``: one object per line; ``id`` is optional, every other key is an
  input name holding this row's value, e.g. ``{"id": "a1", "x": [0.0, ...]}`` or
  ``{"text": "a review"}``.
- ``.csv`` and ``.parquet``: an optional ``id`` column; a ``text`` column (and, in
  Parquet, any list column) is an input of that name; all remaining columns form one
  input, ``input_name`` (default ``x``), row-wise as floats.

``read_rows(..., label="label")`` also takes that key or column out of the inputs into
``Row.label`` (for measuring a model against known answers; scoring passes none).

Output: one JSON line per input row, in input order::

    {"row": 0, "id": "a1", "version": 3, "status": "ok",
     "outputs": {"probabilities": [...], "label": 7}, "error": null}

Rows travel in jobs of ``rows_per_job`` with at most ``max_in_flight`` jobs
outstanding; only those jobs are held in memory. Job ids are deterministic per
(file, model, row range). A rerun resumes after the last whole line of ``out``.
"""

from __future__ import annotations

import csv
import hashlib
import json
import time
from collections import deque
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from producer.client import Client, Handle
from producer.errors import JobTimeout
from producer.messages import DEFAULT_ALIAS, ErrorCode, Result, RetrainResult

JSONL_SUFFIXES = frozenset({".jsonl", ".ndjson", ".json"})


@dataclass(frozen=True, slots=True)
class ScoreSettings:
    """What to score with and how hard to push."""

    model: str
    version: int | None = None
    alias: str = DEFAULT_ALIAS
    rows_per_job: int = 32
    max_in_flight: int = 64
    timeout_s: float = 60.0
    input_name: str = "x"
    priority: int = 0


@dataclass(slots=True)
class Row:
    """One input row; ``error`` is set when the row could not even be read."""

    index: int
    id: Any
    inputs: dict[str, Any]
    error: str | None = None
    label: Any = None


@dataclass(slots=True)
class ScoreStats:
    """Counters for progress and the final summary."""

    total: int | None = None
    skipped: int = 0
    sent: int = 0
    answered: int = 0
    failed: int = 0
    jobs: int = 0
    started: float = field(default_factory=time.monotonic)

    @property
    def rows_per_s(self) -> float:
        return self.answered / max(time.monotonic() - self.started, 1e-9)


# ---- reading ---------------------------------------------------------------------------


def read_rows(path: Path, input_name: str = "x", label: str | None = None) -> Iterator[Row]:
    """Stream the rows of a JSONL, CSV or Parquet file (``label``: see the module doc)."""
    suffix = path.suffix.lower()
    if suffix in JSONL_SUFFIXES:
        return _read_jsonl(path, label)
    if suffix == ".csv":
        return _read_csv(path, input_name, label)
    if suffix in {".parquet", ".pq"}:
        return _read_parquet(path, input_name, label)
    raise ValueError(f"cannot read {path}: use .jsonl, .csv or .parquet")


def count_rows(path: Path) -> int | None:
    """Rows in ``path`` (cheap: a line count or Parquet metadata), for progress."""
    suffix = path.suffix.lower()
    if suffix in {".parquet", ".pq"}:
        import pyarrow.parquet as pq

        return int(pq.ParquetFile(path).metadata.num_rows)
    with path.open("rb") as lines:
        count = sum(1 for line in lines if line.strip())
    return count - 1 if suffix == ".csv" else count


def _read_jsonl(path: Path, label: str | None) -> Iterator[Row]:
    with path.open("rb") as lines:
        index = 0
        for line in lines:
            if not line.strip():
                continue
            try:
                record = json.loads(line)
                if not isinstance(record, dict):
                    raise ValueError("a line must be a JSON object")
            except ValueError as exc:
                yield Row(index, None, {}, f"line {index + 1} is not a JSON object: {exc}")
            else:
                row_id = record.pop("id", None)
                answer = record.pop(label, None) if label else None
                yield Row(index, row_id, record, label=answer)
            index += 1


def _split_columns(
    record: dict[str, Any], input_name: str, index: int, label: str | None = None
) -> Row:
    row_id = record.pop("id", None)
    answer = record.pop(label, None) if label else None
    inputs = {k: v for k, v in record.items() if k == "text" or isinstance(v, list)}
    rest = [v for k, v in record.items() if k not in inputs]
    if rest:
        try:
            inputs[input_name] = [float(v) for v in rest]
        except (TypeError, ValueError) as exc:
            return Row(index, row_id, {}, f"row {index}: a column is not numeric: {exc}")
    return Row(index, row_id, inputs, label=answer)


def _read_csv(path: Path, input_name: str, label: str | None) -> Iterator[Row]:
    with path.open(newline="", encoding="utf-8") as text:
        for index, record in enumerate(csv.DictReader(text)):
            yield _split_columns(dict(record), input_name, index, label)


def _read_parquet(path: Path, input_name: str, label: str | None) -> Iterator[Row]:
    import pyarrow.parquet as pq

    index = 0
    for batch in pq.ParquetFile(path).iter_batches(batch_size=1024):
        for record in batch.to_pylist():
            yield _split_columns(record, input_name, index, label)
            index += 1


# ---- resuming --------------------------------------------------------------------------


def resume_point(out: Path) -> tuple[int, int]:
    """Rows already written to ``out`` and how many of them failed.

    Keeps the longest prefix of whole, valid lines numbered 0, 1, 2, ... and truncates
    anything after it (a half-written line from a crash).
    """
    if not out.exists():
        return 0, 0
    done = failed = good_bytes = 0
    with out.open("rb") as lines:
        for line in lines:
            if not line.endswith(b"\n"):
                break
            try:
                record = json.loads(line)
            except ValueError:
                break
            if not isinstance(record, dict) or record.get("row") != done:
                break
            done += 1
            failed += record.get("status") != "ok"
            good_bytes += len(line)
    if good_bytes != out.stat().st_size:
        with out.open("r+b") as handle:
            handle.truncate(good_bytes)
    return done, failed


# ---- scoring ---------------------------------------------------------------------------


@dataclass(slots=True)
class _Chunk:
    job_id: str
    rows: list[Row]
    handle: Handle | None = None

    @property
    def sendable(self) -> list[Row]:
        return [row for row in self.rows if row.error is None]


def _job_prefix(path: Path, settings: ScoreSettings) -> str:
    where = f"{path.resolve()}|{settings.model}|{settings.version}|{settings.alias}"
    return "score-" + hashlib.sha1(where.encode()).hexdigest()[:12]


def _chunks(rows: Iterator[Row], prefix: str, size: int) -> Iterator[_Chunk]:
    batch: list[Row] = []
    for row in rows:
        batch.append(row)
        if len(batch) == size:
            yield _Chunk(f"{prefix}-{batch[0].index}-{batch[-1].index}", batch)
            batch = []
    if batch:
        yield _Chunk(f"{prefix}-{batch[0].index}-{batch[-1].index}", batch)


def _stack(rows: list[Row]) -> dict[str, list[Any]]:
    inputs: dict[str, list[Any]] = {}
    for row in rows:
        for name, value in row.inputs.items():
            inputs.setdefault(name, []).append(value)
    return inputs


def _line(row: Row, status: str, version: int | None, outputs: Any, error: Any) -> str:
    record = {
        "row": row.index,
        "id": row.id,
        "version": version,
        "status": status,
        "outputs": outputs,
        "error": error,
    }
    return json.dumps(record, separators=(",", ":")) + "\n"


def _result_lines(rows: list[Row], result: Result) -> list[str]:
    if result.error is not None:
        error = {"code": str(result.error.code), "message": result.error.message}
        return [_line(row, "error", result.version, None, error) for row in rows]
    outputs = result.outputs or {}
    return [
        _line(row, "ok", result.version, {k: v[i] for k, v in outputs.items()}, None)
        for i, row in enumerate(rows)
    ]


def _unreadable(row: Row) -> str:
    error = {"code": ErrorCode.INVALID_INPUT.value, "message": row.error}
    return _line(row, "error", None, None, error)


class Scorer:
    """Runs one scoring pass; ``on_progress`` is called after every finished job."""

    def __init__(
        self,
        client: Client,
        settings: ScoreSettings,
        on_progress: Callable[[ScoreStats], None] | None = None,
    ) -> None:
        self.client = client
        self.settings = settings
        self.on_progress = on_progress or (lambda stats: None)
        self.stats = ScoreStats()

    def run(self, source: Path, out: Path) -> ScoreStats:
        done, failed = resume_point(out)
        self.stats = ScoreStats(total=count_rows(source), skipped=done, failed=failed)
        rows = (r for r in read_rows(source, self.settings.input_name) if r.index >= done)
        pending: deque[_Chunk] = deque()
        with out.open("a", encoding="utf-8") as sink:
            for chunk in _chunks(
                rows, _job_prefix(source, self.settings), self.settings.rows_per_job
            ):
                if len(pending) >= self.settings.max_in_flight:
                    self._write(sink, pending.popleft())
                chunk.handle = self._submit(chunk.job_id, chunk.sendable)
                pending.append(chunk)
            while pending:
                self._write(sink, pending.popleft())
        return self.stats

    def _submit(self, job_id: str, rows: list[Row]) -> Handle | None:
        if not rows:
            return None
        self.stats.sent += len(rows)
        self.stats.jobs += 1
        return self.client.submit(
            self.settings.model,
            _stack(rows),
            version=self.settings.version,
            alias=self.settings.alias,
            priority=self.settings.priority,
            job_id=job_id,
        )

    def _wait(self, handle: Handle) -> Result:
        reply: Result | RetrainResult = handle.result(self.settings.timeout_s)
        assert isinstance(reply, Result)
        return reply

    def _answer(self, chunk: _Chunk) -> dict[int, str]:
        rows = chunk.sendable
        if chunk.handle is None:
            return {}
        result = self._wait(chunk.handle)
        bad_input = result.error is not None and result.error.code == ErrorCode.INVALID_INPUT
        if not (bad_input and len(rows) > 1):
            return {
                row.index: line for row, line in zip(rows, _result_lines(rows, result), strict=True)
            }
        # One bad row spoils its job: ask again row by row so only that row fails.
        handles = [(row, self._submit(f"{chunk.job_id}.{row.index}", [row])) for row in rows]
        lines: dict[int, str] = {}
        for row, handle in handles:
            assert handle is not None
            lines[row.index] = _result_lines([row], self._wait(handle))[0]
        return lines

    def _write(self, sink: Any, chunk: _Chunk) -> None:
        try:
            answered = self._answer(chunk)
        except JobTimeout:
            sink.flush()
            raise
        lines = [answered.get(row.index) or _unreadable(row) for row in chunk.rows]
        sink.write("".join(lines))
        sink.flush()
        self.stats.answered += len(lines)
        self.stats.failed += sum('"status":"ok"' not in line for line in lines)
        self.on_progress(self.stats)
