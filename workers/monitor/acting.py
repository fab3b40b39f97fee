"""Policies acting: when a model's condition holds over its latest windows, publish one
retrain job (``trigger`` ``drift`` or ``quality``).

:func:`decide` is pure: given a policy, its parsed condition and the model's latest drift
and quality windows, it returns the RetrainJob to publish or None. The job's ``job_id``
is derived from the model, the policy and the window that completed the condition, so
two monitors (or one started again) that decide alike publish the same job, which the
trainer runs once. :class:`PolicyActor` adds the state: it asks the registry to claim the
fire (one caller per cooldown, however many monitors race) and never fires while a
retrain of the model is running.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import Any, Literal, Protocol

import structlog

from producer.contract.messages import Dataset, RetrainJob
from registry.drift import DriftWindow, Policy
from registry.labelled import QualityWindow
from workers.drift.policy import Condition, InvalidPolicy, parse_condition

log = structlog.get_logger(__name__)

Trigger = Literal["drift", "quality"]
LOOKBACK = timedelta(days=7)


class PolicyStore(Protocol):
    def policies(self, model: str | None = None) -> list[Policy]: ...

    def windows(
        self, model: str, since: datetime | None = None, version: int | None = None
    ) -> list[DriftWindow]: ...

    def claim_fire(self, policy_id: int, now: datetime | None = None) -> bool: ...


class QualityWindows(Protocol):
    def windows(
        self, name: str, version: int | None = None, since: datetime | None = None
    ) -> list[QualityWindow]: ...


class RunningRetrains(Protocol):
    def running(self, model: str) -> list[Any]: ...


def series(
    metric: str, drift: Sequence[DriftWindow], quality: Sequence[QualityWindow]
) -> tuple[list[float | None], datetime | None]:
    """The metric's values over the latest version's consecutive windows (oldest first),
    and the start of the last of them; a gap between windows restarts the run."""
    if metric in ("drift", "prediction_drift", "estimated_accuracy"):
        points = [(w.version, w.start, w.end, _drift_value(metric, w)) for w in drift]
    else:
        points = [
            (w.version, w.start, w.start + timedelta(seconds=w.window_s), _quality_value(metric, w))
            for w in quality
        ]
    if not points:
        return [], None
    latest = max(points, key=lambda p: p[1])[0]
    mine = sorted((p for p in points if p[0] == latest), key=lambda p: p[1])
    run: list[float | None] = []
    previous_end = None
    for _, start, end, value in mine:
        if previous_end is not None and start != previous_end:
            run = []
        run.append(value)
        previous_end = end
    return run, mine[-1][1]


def _drift_value(metric: str, window: DriftWindow) -> float | None:
    if metric == "drift":
        return window.share_drifted
    if metric == "prediction_drift":
        return window.prediction_drift
    return window.estimated_accuracy


def _quality_value(metric: str, window: QualityWindow) -> float | None:
    if metric == "f1":
        macro = window.macro()
        return None if macro is None else macro[2]
    value: float | None = getattr(window, metric)
    return value


def decide(
    policy: Policy,
    condition: Condition,
    drift: Sequence[DriftWindow],
    quality: Sequence[QualityWindow],
) -> RetrainJob | None:
    """The retrain job ``policy`` publishes now, or None when its condition does not hold."""
    values, last = series(condition.metric, drift, quality)
    if last is None or not condition.holds(values):
        return None
    trigger: Trigger = "drift" if condition.trigger == "drift" else "quality"
    job_id = f"{trigger}-{policy.model}-p{policy.id}-{last:%Y%m%dT%H%M%SZ}"
    return RetrainJob(
        job_id=job_id[:200],
        model=policy.model,
        dataset=_dataset(policy.dataset),
        trigger=trigger,
        promote=policy.promote,  # type: ignore[arg-type]
    )


def _dataset(text: str | None) -> Dataset | None:
    """A policy's ``--dataset``: a URI or a file (it has ``:``, ``/`` or a suffix) or a
    built-in data set's name."""
    if not text:
        return None
    if "://" in text or "/" in text or "." in text:
        return Dataset(uri=text)
    return Dataset(name=text)


@dataclass(frozen=True, slots=True)
class Fired:
    """A retrain job a policy fired, and why (for the log and the metrics)."""

    job: RetrainJob
    policy: Policy
    reason: str


class PolicyActor:
    """Turns holding conditions into retrain jobs, once per cooldown, never beside a
    running retrain of the same model."""

    def __init__(
        self,
        store: PolicyStore,
        quality: QualityWindows,
        runs: RunningRetrains,
        clock: Callable[[], datetime],
    ) -> None:
        self._store, self._quality, self._runs, self._clock = store, quality, runs, clock

    def check(self, model: str, closed: Sequence[datetime] = ()) -> list[Fired]:
        """The jobs ``model``'s policies fire now (claimed: publish each one).
        ``closed``: the starts of the drift windows just written; each policy is judged
        as the windows stood after each of them, oldest first, so that a monitor
        catching up after a restart, which writes many at once, fires on a run of
        windows that held between them as a live one would have (once: the claim)."""
        policies = self._store.policies(model)
        if not policies:
            return []
        now = self._clock()
        since = now - LOOKBACK
        drift = self._store.windows(model, since)
        quality = self._quality.windows(model, since=since)
        fired = []
        for policy in policies:
            job = self._first(policy, drift, quality, sorted(closed))
            if job is None or policy.id is None:
                continue
            if self._runs.running(model):
                log.info("policy holds; a retrain is running", model=model, policy=policy.id)
                continue
            if self._store.claim_fire(policy.id, now):
                fired.append(Fired(job, policy, f"{policy.condition} (policy {policy.id})"))
        return fired

    def _first(
        self,
        policy: Policy,
        drift: Sequence[DriftWindow],
        quality: Sequence[QualityWindow],
        closed: Sequence[datetime],
    ) -> RetrainJob | None:
        """The job ``policy`` fires after the first of ``closed`` at which it holds
        (drift windows up to it), or with every window (none closed, or none held)."""
        for last in closed[:-1]:
            job = self._decide(policy, [w for w in drift if w.start <= last], quality)
            if job is not None:
                return job
        return self._decide(policy, drift, quality)

    @staticmethod
    def _decide(
        policy: Policy, drift: Sequence[DriftWindow], quality: Sequence[QualityWindow]
    ) -> RetrainJob | None:
        try:
            condition = parse_condition(policy.condition)
        except InvalidPolicy:  # stored by an older maas: say so, never stop the monitor
            log.warning("policy unreadable", model=policy.model, policy=policy.id)
            return None
        return decide(policy, condition, drift, quality)
