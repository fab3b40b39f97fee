"""The join of captures and labels by job, within a window, in bounded memory.

Kafka-free. A capture waits for its labels and labels wait for their capture, each
until ``window_ms`` after it was made (by the record's own time, so that reading the
topics again gives the same joins). A labelled row is handed out once: a second
label for a row already joined is a duplicate (first wins; counted). At most
``max_pending`` captures and as many labelled jobs wait; beyond that the oldest is
dropped (counted as overflow). Labels that find no capture before their window ends
are counted as unmatched. Feedback that cannot be scored against its capture (a row
beyond the job's rows, a label count that is not the job's row count, a label of the
wrong type) is refused with the reason, for the dead-letter topic.
"""

from __future__ import annotations

from collections import Counter, OrderedDict
from dataclasses import dataclass, field
from typing import Any

from producer.contract.messages import CaptureRecord, Feedback, Label

Key = tuple[str, str]  # (tenant or "", job_id)


@dataclass(frozen=True, slots=True)
class JoinSettings:
    """How long each side waits (default 7 days) and how many wait at most."""

    window_ms: int = 7 * 24 * 3600 * 1000
    max_pending: int = 1_000_000
    label_outputs: dict[str, str] = field(default_factory=dict)  # model → output to score


@dataclass(frozen=True, slots=True)
class Labelled:
    """One joined row: what the version predicted and what the truth was."""

    tenant: str | None
    job_id: str
    row: int
    model: str
    version: int
    answered_ms: int
    labelled_ms: int
    prediction: Any
    label: Label


@dataclass(frozen=True, slots=True)
class Refused:
    """Feedback that cannot be scored: ``reason`` says why. ``audit``: the refusal's
    code for the audit log, when it is one a tenant must answer for."""

    reason: str
    audit: str | None = None


@dataclass(slots=True)
class _Capture:
    tenant: str | None
    model: str
    version: int
    ts_ms: int
    predictions: list[Any]
    joined: set[int] = field(default_factory=set)


@dataclass(slots=True)
class _Labels:
    ts_ms: int
    labels: dict[int, Label]
    rows: int | None  # the row count the feedback implied (a labels list), if any


def predictions_of(record: CaptureRecord, output: str | None) -> list[Any] | None:
    """The predictions per row from a capture's outputs: ``output``, else ``label``,
    else the first output; a row that is a list of scores is its argmax."""
    outputs = record.outputs or {}
    name = output if output in outputs else ("label" if "label" in outputs else None)
    if name is None:
        name = next(iter(outputs), None)
    if name is None or not isinstance(outputs[name], list):
        return None
    return [_argmax(v) if isinstance(v, list) else v for v in outputs[name]]


def _argmax(scores: list[Any]) -> Any:
    if not scores or not all(isinstance(s, int | float) for s in scores):
        return None
    return max(range(len(scores)), key=scores.__getitem__)


class JoinState:
    """Captures and labels waiting for each other; see the module's description."""

    def __init__(self, settings: JoinSettings) -> None:
        self.settings = settings
        self._captures: OrderedDict[Key, _Capture] = OrderedDict()
        self._labels: OrderedDict[Key, _Labels] = OrderedDict()
        self._owners: dict[str, str] = {}  # job_id → the tenant whose capture waits
        self.counts: Counter[str] = Counter()  # joined, duplicate, unmatched, overflow, ...
        self.watermark_ms = 0  # the latest record time seen

    def __len__(self) -> int:
        return len(self._captures) + len(self._labels)

    def capture(self, record: CaptureRecord) -> list[Labelled] | Refused:
        """Add a capture; the rows it joins with labels already waiting."""
        self._advance(record.ts_ms)
        if record.status != "ok":
            self.counts["capture_error"] += 1
            return []
        predictions = predictions_of(record, self.settings.label_outputs.get(record.model))
        if predictions is None:
            self.counts["capture_without_outputs"] += 1
            return Refused(f"capture of {record.model} has no output to score")
        key = (record.tenant or "", record.job_id)
        if key in self._captures:
            self.counts["capture_duplicate"] += 1  # a redelivered job: its first capture counts
            return []
        entry = _Capture(record.tenant, record.model, record.version, record.ts_ms, predictions)
        self._captures[key] = entry
        self._owners[record.job_id] = key[0]
        self._bound(self._captures)
        waiting = self._labels.pop(key, None)
        if waiting is None:
            return []
        problem = _check(entry, waiting)
        if problem is not None:
            self.counts["refused"] += 1
            return Refused(problem)
        return self._join(key, entry, waiting.labels, waiting.ts_ms)

    def feedback(
        self, tenant: str | None, feedback: Feedback, ts_ms: int
    ) -> list[Labelled] | Refused:
        """Add labels (``ts_ms``: when they were sent); the rows they join."""
        self._advance(ts_ms)
        key = (tenant or "", feedback.job_id)
        labels = feedback.by_row()
        rows = len(feedback.labels) if feedback.labels is not None else None
        entry = self._captures.get(key)
        if entry is None and self._owners.get(feedback.job_id, key[0]) != key[0]:
            self.counts["refused_tenant"] += 1
            return Refused(
                f"feedback through tenant {tenant or '(default)'}'s namespace for job "
                f"{feedback.job_id!r}, which is not its own",
                audit="feedback-for-another-tenants-job",
            )
        if entry is None:
            held = self._labels.get(key)
            if held is None:
                self._labels[key] = _Labels(ts_ms, labels, rows)
                self._bound(self._labels)
                return []
            fresh = {r: v for r, v in labels.items() if r not in held.labels}
            self.counts["duplicate"] += len(labels) - len(fresh)
            held.labels.update(fresh)
            return []
        problem = _check(entry, _Labels(ts_ms, labels, rows))
        if problem is not None:
            self.counts["refused"] += 1
            return Refused(problem)
        return self._join(key, entry, labels, ts_ms)

    def _join(
        self, key: Key, entry: _Capture, labels: dict[int, Label], ts_ms: int
    ) -> list[Labelled]:
        joined = []
        for row, label in sorted(labels.items()):
            if row in entry.joined:
                self.counts["duplicate"] += 1  # first wins
                continue
            entry.joined.add(row)
            joined.append(
                Labelled(
                    entry.tenant,
                    key[1],
                    row,
                    entry.model,
                    entry.version,
                    entry.ts_ms,
                    ts_ms,
                    entry.predictions[row],
                    label,
                )
            )
        self.counts["joined"] += len(joined)
        return joined

    def _advance(self, ts_ms: int) -> None:
        """Move the clock to ``ts_ms`` and let what waited past the window go."""
        if ts_ms <= self.watermark_ms:
            return
        self.watermark_ms = ts_ms
        horizon = ts_ms - self.settings.window_ms
        while self._captures:
            key, oldest = next(iter(self._captures.items()))
            if oldest.ts_ms >= horizon:
                break
            self._forget(key)
        while self._labels:
            key, waiting = next(iter(self._labels.items()))
            if waiting.ts_ms >= horizon:
                break
            del self._labels[key]
            self.counts["unmatched"] += len(waiting.labels)

    def _forget(self, key: Key) -> None:
        del self._captures[key]
        if self._owners.get(key[1]) == key[0]:
            del self._owners[key[1]]

    def _bound(self, pending: OrderedDict[Key, Any]) -> None:
        while len(pending) > self.settings.max_pending:
            if pending is self._captures:
                self._forget(next(iter(pending)))
            else:
                pending.popitem(last=False)
            self.counts["overflow"] += 1


def _check(entry: _Capture, labels: _Labels) -> str | None:
    """Why ``labels`` cannot be scored against ``entry``, or None."""
    n = len(entry.predictions)
    if labels.rows is not None and labels.rows != n:
        return f"feedback has {labels.rows} labels but the job had {n} rows"
    beyond = [r for r in labels.labels if r >= n]
    if beyond:
        return f"feedback labels row {beyond[0]} but the job had {n} rows (0-{n - 1})"
    classifier = not isinstance(entry.predictions[0], float)
    for label in labels.labels.values():
        if classifier and not (isinstance(label, int | str) or float(label).is_integer()):
            return f"label {label!r} is not a class: {entry.model} is a classifier"
        if not classifier and not isinstance(label, int | float):
            return f"label {label!r} is not a number: {entry.model} is a regressor"
        if isinstance(label, bool):
            return f"label {label!r} is a boolean: send a class or a number"
    return None
