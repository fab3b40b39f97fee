"""Batch scoring: stream rows from a file through the service into JSONL, in order.

What it reads is in :mod:`producer.score_input`, what it writes in
:mod:`producer.score_output`. Rows travel in jobs of ``rows_per_job`` with at most
``max_in_flight`` jobs outstanding; only those jobs are held in memory. Job ids are
deterministic per (file, model, row range).

A rerun of an interrupted or partly failed run resumes: rows an earlier run wrote ok
are kept, the ones it wrote as failures are scored again (in a pass over the earlier
lines that replaces the output file only once it is complete), and scoring continues
after the last whole line. A run whose first jobs all fail on every row with one and
the same error (an unknown model, a wrong input name: nothing the next rows will
escape) stops early and says why (:attr:`ScoreStats.stopped`).
"""

from __future__ import annotations

import contextlib
import hashlib
import itertools
import os
import time
from collections import deque
from collections.abc import Callable, Iterable, Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import IO, Any

from producer.client import Client, Handle
from producer.contract.messages import ErrorCode, Result, RetrainResult
from producer.errors import JobTimeout
from producer.score_input import Row, UnreadableInput, count_rows, input_format, read_rows
from producer.score_output import (
    earlier_lines,
    result_lines,
    resume_point,
    unreadable_line,
)
from producer.score_settings import ScoreSettings

__all__ = [
    "Row",
    "ScoreSettings",
    "ScoreStats",
    "Scorer",
    "UnreadableInput",
    "count_rows",
    "input_format",
    "read_rows",
    "resume_point",
]

Error = tuple[str, str]  # (code, message) of a failed row
DISTINCT_ERRORS = 5  # distinct errors counted by name; the rest as "other"
EARLY_STOP_JOBS = 3  # the first jobs that, failing alike on every row, stop a run


@dataclass(slots=True)
class ScoreStats:
    """Counters for progress and the final summary.

    ``skipped``: ok rows an earlier run wrote, kept; ``retried``: rows it wrote as
    failures, scored again now; ``answered``: rows written now (retried included),
    ``failed`` of them. ``errors``: the first distinct errors of this run and how many
    rows had each (``other_errors``: the rest). ``stopped``: why the run stopped early.
    """

    total: int | None = None
    skipped: int = 0
    retried: int = 0
    sent: int = 0
    answered: int = 0
    failed: int = 0
    jobs: int = 0
    errors: dict[Error, int] = field(default_factory=dict)
    other_errors: int = 0
    stopped: str | None = None
    started: float = field(default_factory=time.monotonic)

    @property
    def rows_per_s(self) -> float:
        return self.answered / max(time.monotonic() - self.started, 1e-9)

    def count(self, error: Error | None) -> None:
        """One row written now, ``error`` if it failed."""
        self.answered += 1
        if error is None:
            return
        self.failed += 1
        if error in self.errors or len(self.errors) < DISTINCT_ERRORS:
            self.errors[error] = self.errors.get(error, 0) + 1
        else:
            self.other_errors += 1


@dataclass(slots=True)
class _Chunk:
    """One job's rows, with the lines of the rows that are not sent: kept from an
    earlier run (``kept``) or unreadable (``Row.error``)."""

    job_id: str
    rows: list[Row]
    kept: dict[int, str]
    handle: Handle | None = None

    @property
    def sendable(self) -> list[Row]:
        return [row for row in self.rows if row.error is None and row.index not in self.kept]


@dataclass(slots=True)
class _FirstJobs:
    """Watches a run's first jobs: when each of the first ``limit`` failed on every row
    with one and the same error, every row will, and :meth:`judge` says so."""

    limit: int = EARLY_STOP_JOBS
    error: Error | None = None
    seen: int = 0
    watching: bool = True

    def judge(self, errors: list[Error | None]) -> str | None:
        """The errors of one job's sent rows; a reason to stop, or None."""
        if not (self.watching and errors):
            return None
        first = errors[0]
        if first is None or any(e != first for e in errors) or self.error not in (None, first):
            self.watching = False
            return None
        self.error, self.seen = first, self.seen + 1
        if self.seen < self.limit:
            return None
        self.watching = False
        code, message = first
        return (
            f"the first {self.limit} jobs failed on every row with {code}: {message}; "
            "every row would, so scoring stopped"
        )


def _job_prefix(path: Path, settings: ScoreSettings) -> str:
    where = f"{path.resolve()}|{settings.model}|{settings.version}|{settings.alias}"
    return "score-" + hashlib.sha1(where.encode()).hexdigest()[:12]


def _chunks(rows: Iterable[tuple[Row, str | None]], prefix: str, size: int) -> Iterator[_Chunk]:
    iterator = iter(rows)
    while batch := list(itertools.islice(iterator, size)):
        first, last = batch[0][0].index, batch[-1][0].index
        kept = {row.index: line for row, line in batch if line is not None}
        yield _Chunk(f"{prefix}-{first}-{last}", [row for row, _ in batch], kept)


def _stack(rows: list[Row]) -> dict[str, list[Any]]:
    inputs: dict[str, list[Any]] = {}
    for row in rows:
        for name, value in row.inputs.items():
            inputs.setdefault(name, []).append(value)
    return inputs


def _error_of(result: Result) -> Error | None:
    return None if result.error is None else (str(result.error.code), result.error.message)


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
        self._first_jobs = _FirstJobs()

    def run(self, source: Path, out: Path) -> ScoreStats:
        """Score ``source`` into ``out``, resuming what an earlier run left there."""
        earlier = resume_point(out)
        self.stats = ScoreStats(
            total=count_rows(source), skipped=earlier.done - earlier.failed, retried=earlier.failed
        )
        self._first_jobs = _FirstJobs()
        prefix = _job_prefix(source, self.settings)
        rows = read_rows(source, self.settings.input_name)
        done = itertools.islice(rows, earlier.done)
        if earlier.failed:
            with contextlib.closing(earlier_lines(out)) as lines:
                self._retry(zip(done, lines, strict=False), out, f"{prefix}.retry")
        else:
            deque(done, maxlen=0)  # skip what is written
        if self.stats.stopped is None:
            with out.open("a", encoding="utf-8") as sink:
                self._pass(((row, None) for row in rows), sink, prefix)
        return self.stats

    def _retry(self, rows: Iterable[tuple[Row, str | None]], out: Path, prefix: str) -> None:
        """Rewrite the earlier lines, scoring the failed ones again; ``out`` is replaced
        only by a complete rewrite (a stopped or interrupted one leaves it as it was)."""
        partial = out.with_name(f"{out.name}.retry")
        try:
            with partial.open("w", encoding="utf-8") as sink:
                self._pass(rows, sink, prefix)
            if self.stats.stopped is None:
                os.replace(partial, out)
        finally:
            with contextlib.suppress(FileNotFoundError):
                partial.unlink()

    def _pass(self, rows: Iterable[tuple[Row, str | None]], sink: IO[str], prefix: str) -> None:
        pending: deque[_Chunk] = deque()
        for chunk in _chunks(rows, prefix, self.settings.rows_per_job):
            if len(pending) >= self.settings.max_in_flight:
                self._write(sink, pending.popleft())
            chunk.handle = self._submit(chunk.job_id, chunk.sendable)
            pending.append(chunk)
            if self.stats.stopped is not None:
                return
        while pending and self.stats.stopped is None:
            self._write(sink, pending.popleft())

    def _submit(self, job_id: str, rows: list[Row]) -> Handle | None:
        if not rows:
            return None
        self.stats.sent += len(rows)
        self.stats.jobs += 1
        if self.settings.encoding != "json":  # an OIP request has no place for a priority
            return self.client.submit(
                self.settings.model,
                _stack(rows),
                version=self.settings.version,
                alias=self.settings.alias,
                job_id=job_id,
                encoding="binary" if self.settings.encoding == "binary" else "oip",
            )
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

    def _answer(self, chunk: _Chunk) -> dict[int, tuple[str, Error | None]]:
        """The line and the error (None when ok) of every row the chunk sent."""
        rows = chunk.sendable
        if chunk.handle is None:
            return {}
        result = self._wait(chunk.handle)
        error = _error_of(result)
        if not (error is not None and error[0] == ErrorCode.INVALID_INPUT and len(rows) > 1):
            lines = result_lines(rows, result)
            return {row.index: (line, error) for row, line in zip(rows, lines, strict=True)}
        # One bad row spoils its job: ask again row by row so only that row fails.
        handles = [(row, self._submit(f"{chunk.job_id}.{row.index}", [row])) for row in rows]
        answered = {}
        for row, handle in handles:
            assert handle is not None
            result = self._wait(handle)
            answered[row.index] = (result_lines([row], result)[0], _error_of(result))
        return answered

    def _write(self, sink: IO[str], chunk: _Chunk) -> None:
        try:
            answered = self._answer(chunk)
        except JobTimeout:
            sink.flush()
            raise
        lines = []
        for row in chunk.rows:
            kept = chunk.kept.get(row.index)
            if kept is not None:
                lines.append(kept)
            elif row.index in answered:
                line, error = answered[row.index]
                lines.append(line)
                self.stats.count(error)
            else:
                lines.append(unreadable_line(row))
                self.stats.count((ErrorCode.INVALID_INPUT.value, str(row.error)))
        sink.write("".join(lines))
        sink.flush()
        self.stats.stopped = self._first_jobs.judge([error for _, error in answered.values()])
        self.on_progress(self.stats)
