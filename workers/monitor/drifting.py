"""Drift from captured traffic: what each version was asked and answered, window by
window, compared with the version's reference profile when the window closes.

The monitor hands every capture record it reads to :meth:`DriftTracker.capture`; rows
gather per (model, version, window) up to ``max_rows`` (later ones are counted, not
kept). A window closes once a capture ``grace_s`` past its end has been read (captures
arrive roughly in time order per partition), and :meth:`DriftTracker.due` returns its
:class:`~registry.drift.DriftWindow`. Versions without a reference are skipped and
counted. The store keeps one drift window per (model, version, start): a monitor that
restarts and reads the topics again writes nothing twice, and where several monitors
share the capture partitions the first to close a window writes it from its share of
the traffic (capture partitions are by ``job_id``, so that share is a random sample).
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Any, Protocol

import numpy as np
import structlog
from numpy.typing import NDArray
from prometheus_client import Counter, Gauge

from producer.contract.messages import CaptureRecord, RetrainJob
from registry.drift import DriftWindow, Reference
from workers.drift import DriftThresholds, ReferenceProfile, window_drift
from workers.monitor.acting import PolicyActor

log = structlog.get_logger(__name__)

DRIFT_SHARE = Gauge(
    "maas_monitor_drift_share",
    "Share of a version's input features that drifted in its latest window",
    ["model", "version"],
)
PREDICTION_DRIFT = Gauge(
    "maas_monitor_prediction_drift",
    "Jensen-Shannon distance of a version's predicted classes from its reference",
    ["model", "version"],
)
ESTIMATED_ACCURACY = Gauge(
    "maas_monitor_estimated_accuracy",
    "A version's accuracy estimated from its predictions' confidences (no labels)",
    ["model", "version"],
)
DRIFT_WINDOWS = Counter("maas_monitor_drift_windows", "Drift windows written")
POLICY_FIRES = Counter(
    "maas_monitor_policy_fires", "Retrain jobs fired by policies", ["model", "trigger"]
)

Key = tuple[str, int, int]  # model, version, window start (epoch ms)


class References(Protocol):
    def reference(self, model: str, version: int) -> Reference | None: ...


@dataclass(frozen=True, slots=True)
class DriftSettings:
    """How drift windows are cut and judged."""

    window_s: int = 300
    grace_s: int = 60
    max_rows: int = 10_000
    thresholds: DriftThresholds = field(default_factory=DriftThresholds)

    def __post_init__(self) -> None:
        if self.window_s < 1 or self.grace_s < 0 or self.max_rows < 1:
            raise ValueError("drift settings: window_s >= 1, grace_s >= 0, max_rows >= 1")


@dataclass(slots=True)
class _Open:
    inputs: dict[str, list[Any]] = field(default_factory=dict)
    outputs: dict[str, list[Any]] = field(default_factory=dict)
    rows: int = 0
    skipped: int = 0


@dataclass(slots=True)
class DriftCounts:
    """What the tracker did, for the monitor's metrics."""

    windows: int = 0
    no_reference: int = 0
    late: int = 0
    unreadable: int = 0


class DriftTracker:
    """Windows of captured rows per version, judged against the version's reference."""

    def __init__(self, references: References, settings: DriftSettings | None = None) -> None:
        self.settings = settings or DriftSettings()
        self.counts = DriftCounts()
        self._references = references
        self._profiles: dict[tuple[str, int], ReferenceProfile | None] = {}
        self._open: dict[Key, _Open] = {}
        self._closed_before: dict[tuple[str, int], int] = {}
        self._watermark = 0

    def capture(self, record: CaptureRecord) -> None:
        """Add an answered job's rows to its window (errors and empty answers are left out)."""
        if record.status != "ok" or not record.outputs:
            return
        self._watermark = max(self._watermark, record.ts_ms)
        width = self.settings.window_s * 1000
        start = record.ts_ms - record.ts_ms % width
        if start < self._closed_before.get((record.model, record.version), 0):
            self.counts.late += 1
            return
        window = self._open.setdefault((record.model, record.version, start), _Open())
        rows = _rows(record.outputs)
        if window.rows + rows > self.settings.max_rows:
            window.skipped += rows
            return
        window.rows += rows
        _extend(window.outputs, record.outputs)
        if record.inputs:
            _extend(window.inputs, record.inputs)

    def due(self) -> list[DriftWindow]:
        """The windows that closed since the last call, judged (versions with a reference)."""
        width = self.settings.window_s * 1000
        horizon = self._watermark - self.settings.grace_s * 1000
        closing = [key for key in self._open if key[2] + width <= horizon]
        judged = []
        for key in sorted(closing, key=lambda k: k[2]):
            model, version, start = key
            window = self._open.pop(key)
            self._closed_before[(model, version)] = max(
                self._closed_before.get((model, version), 0), start + width
            )
            drift = self._judge(key, window)
            if drift is not None:
                judged.append(drift)
        return judged

    def _judge(self, key: Key, window: _Open) -> DriftWindow | None:
        model, version, start = key
        profile = self._profile(model, version)
        if profile is None:
            self.counts.no_reference += 1
            return None
        inputs, outputs = _arrays(window.inputs), _arrays(window.outputs)
        if len(inputs) < len(window.inputs) or len(outputs) < len(window.outputs):
            self.counts.unreadable += 1
        result = window_drift(profile, inputs, outputs, self.settings.thresholds)
        self.counts.windows += 1
        features = {f.name: f.as_dict() for f in (*result.features, *result.predictions)}
        width = self.settings.window_s * 1000
        return DriftWindow(
            model,
            version,
            _moment(start),
            _moment(start + width),
            window.rows,
            result.share_drifted,
            result.prediction_drift,
            result.estimated_accuracy,
            features,
        )

    def _profile(self, model: str, version: int) -> ReferenceProfile | None:
        if (model, version) not in self._profiles:
            stored = self._references.reference(model, version)
            self._profiles[(model, version)] = (
                None if stored is None else ReferenceProfile.decode(stored.profile)
            )
        return self._profiles[(model, version)]

    def forget_references(self) -> None:
        """Read references again (one was set or replaced since)."""
        self._profiles.clear()


def _rows(tensors: Mapping[str, Any]) -> int:
    first: Any = next(iter(tensors.values()), [])
    return len(first) if isinstance(first, list) else 1


def _extend(gathered: dict[str, list[Any]], tensors: Mapping[str, Any]) -> None:
    for name, rows in tensors.items():
        gathered.setdefault(name, []).extend(rows if isinstance(rows, list) else [rows])


def _arrays(gathered: Mapping[str, list[Any]]) -> dict[str, NDArray[np.generic]]:
    """Each tensor's rows as one array; a tensor whose rows do not stack is left out."""
    arrays = {}
    for name, rows in gathered.items():
        try:
            array = np.asarray(rows)
        except ValueError:
            continue
        if array.dtype.kind in "biufOUS" and len(array):
            arrays[name] = array
    return arrays


def _moment(epoch_ms: int) -> datetime:
    return datetime.fromtimestamp(epoch_ms / 1000, tz=UTC)


class DriftStore(References, Protocol):
    """What the monitor's drift side asks of the registry."""

    def record_windows(self, windows: Sequence[DriftWindow]) -> list[DriftWindow]: ...


class DriftWatch:
    """The drift side of one monitor: the tracker, writing its windows once, the gauges,
    and the policies judged on each model with new windows (``actor`` None: none)."""

    def __init__(
        self, store: DriftStore, settings: DriftSettings, actor: PolicyActor | None = None
    ) -> None:
        self.store, self.settings, self.actor = store, settings, actor
        self.tracker = DriftTracker(store, settings)
        self._unwritten: list[DriftWindow] = []  # judged, not yet stored (registry away)

    def reset(self) -> None:
        """Partitions were assigned again and are read from their start: gather anew."""
        self.tracker = DriftTracker(self.store, self.settings)

    def close_windows(self) -> list[RetrainJob]:
        """Judge the windows that closed, store the new ones, and return the retrain jobs
        their models' policies fire (already claimed: publish each). Runs in a thread."""
        windows = [*self._unwritten, *self.tracker.due()]
        if not windows:
            return []
        try:
            stored = self.store.record_windows(windows)
        except Exception:
            self._unwritten = windows  # written at the next flush
            raise
        self._unwritten = []
        for window in stored:
            labels = (window.model, str(window.version))
            DRIFT_SHARE.labels(*labels).set(window.share_drifted)
            if window.prediction_drift is not None:
                PREDICTION_DRIFT.labels(*labels).set(window.prediction_drift)
            if window.estimated_accuracy is not None:
                ESTIMATED_ACCURACY.labels(*labels).set(window.estimated_accuracy)
        DRIFT_WINDOWS.inc(len(stored))
        if self.actor is None:
            return []
        jobs = []
        for model in sorted({w.model for w in stored}):
            closed = [w.start for w in stored if w.model == model]
            for fired in self.actor.check(model, closed):
                POLICY_FIRES.labels(model, fired.job.trigger).inc()
                log.warning(
                    "policy fired a retrain",
                    model=model,
                    job_id=fired.job.job_id,
                    trigger=fired.job.trigger,
                    reason=fired.reason,
                )
                jobs.append(fired.job)
        return jobs
