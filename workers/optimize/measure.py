"""Measure a candidate against its parent, on this machine, in one run.

Quality on the same rows: a classifier (a model with an integer output, its label) is
measured by the share of rows on which both give the same label, and by accuracy where
the rows carry known labels; any other model (an embedding) by the cosine similarity
of each row's float outputs to the parent's, mean and worst. Speed: each model's rows/s
at its own best batch size, found by a sweep and then timed in rounds that alternate
between the two, so that the drifting load of a shared machine hits both alike.
"""

from __future__ import annotations

import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass

import numpy as np
import numpy.typing as npt

from workers.optimize.rows import Rows
from workers.runtime.loader import Runtime

Tensors = dict[str, np.ndarray]
Progress = Callable[[str, float], None]
"""``progress(stage, fraction)``: ``fraction`` of the measurement done, 0.0 to 1.0."""


@dataclass(frozen=True, slots=True)
class MeasureSettings:
    """How long and at which sizes speed is measured; how big quality batches are."""

    batch_sizes: tuple[int, ...] = (1, 8, 32, 64, 128, 256)
    sweep_s: float = 0.3  # per batch size and model, to find each one's best size
    measure_s: float = 1.0  # per round and model, at its best size
    rounds: int = 3
    quality_batch: int = 64

    def __post_init__(self) -> None:
        if not self.batch_sizes or min(self.batch_sizes) < 1:
            raise ValueError("MeasureSettings.batch_sizes must be sizes >= 1")
        if self.rounds < 1 or self.quality_batch < 1:
            raise ValueError("MeasureSettings.rounds and quality_batch must be >= 1")


@dataclass(frozen=True, slots=True)
class Quality:
    """How close the candidate's answers are to the parent's.

    ``drop`` is what ``--max-drop`` bounds, in the units of ``metric``: accuracy lost
    (``accuracy``, where rows carry labels), the share of rows whose label changed
    (``agreement``, an upper bound on the accuracy lost), or ``1 - cosine_mean``.
    Negative when the candidate does better.
    """

    metric: str
    drop: float
    agreement: float | None = None
    accuracy: float | None = None
    parent_accuracy: float | None = None
    cosine_mean: float | None = None
    cosine_min: float | None = None


@dataclass(frozen=True, slots=True)
class Speed:
    rows_per_s: float
    batch_size: int


@dataclass(frozen=True, slots=True)
class Comparison:
    """Everything measured, as recorded with the candidate version."""

    quality: Quality
    parent: Speed
    candidate: Speed
    parent_bytes: int
    candidate_bytes: int
    rows: int  # rows the quality was measured on

    @property
    def speedup(self) -> float:
        return self.candidate.rows_per_s / self.parent.rows_per_s if self.parent.rows_per_s else 0.0

    @property
    def size_ratio(self) -> float:
        return self.candidate_bytes / self.parent_bytes if self.parent_bytes else 0.0

    def metrics(self) -> dict[str, float]:
        """Flat numbers for the version's ``metrics`` (what the retraining gate reads)."""
        q = self.quality
        optional = {
            "agreement": q.agreement,
            "accuracy": q.accuracy,
            "parent_accuracy": q.parent_accuracy,
            "cosine_mean": q.cosine_mean,
            "cosine_min": q.cosine_min,
        }
        return {
            "quality_drop": q.drop,
            **{name: value for name, value in optional.items() if value is not None},
            "eval_rows": float(self.rows),
            "size_bytes": float(self.candidate_bytes),
            "parent_size_bytes": float(self.parent_bytes),
            "rows_per_s": self.candidate.rows_per_s,
            "parent_rows_per_s": self.parent.rows_per_s,
            "batch_size": float(self.candidate.batch_size),
            "parent_batch_size": float(self.parent.batch_size),
            "speedup": self.speedup,
        }


@dataclass(frozen=True, slots=True)
class Contender:
    """One side of a comparison: a loaded model and the bytes of its artifact."""

    runtime: Runtime
    size_bytes: int


def compare(
    parent: Contender,
    candidate: Contender,
    rows: Rows,
    *,
    classes: tuple[str, ...] | None,
    settings: MeasureSettings,
    progress: Progress,
) -> Comparison:
    """Measure ``candidate`` against ``parent`` on ``rows``; ``classes`` name a
    classifier's label indices (None: the index is the name)."""
    progress("quality", 0.0)
    quality = _quality(parent.runtime, candidate.runtime, rows, classes, settings.quality_batch)
    progress("speed", 0.2)
    speeds = _Speeds(parent.runtime, candidate.runtime, rows, settings, progress)
    parent_speed, candidate_speed = speeds.measure()
    progress("speed", 1.0)
    return Comparison(
        quality, parent_speed, candidate_speed, parent.size_bytes, candidate.size_bytes, len(rows)
    )


# -- quality ------------------------------------------------------------------------------


def _outputs(runtime: Runtime, rows: Rows, batch: int) -> Tensors:
    parts = [runtime.infer(chunk) for chunk in rows.chunks(batch)]
    return {name: np.concatenate([part[name] for part in parts]) for name in parts[0]}


def _quality(
    parent: Runtime, candidate: Runtime, rows: Rows, classes: tuple[str, ...] | None, batch: int
) -> Quality:
    ours, theirs = _outputs(candidate, rows, batch), _outputs(parent, rows, batch)
    label = next((name for name, out in theirs.items() if out.dtype.kind in "iu"), None)
    if label is None:
        return _cosine(ours, theirs)
    predicted, expected = ours[label].reshape(-1), theirs[label].reshape(-1)
    agreement = float(np.mean(predicted == expected))
    if rows.labels is None:
        return Quality("agreement", 1.0 - agreement, agreement=agreement)
    accuracy = _accuracy(predicted, rows.labels, classes)
    parent_accuracy = _accuracy(expected, rows.labels, classes)
    return Quality(
        "accuracy",
        parent_accuracy - accuracy,
        agreement=agreement,
        accuracy=accuracy,
        parent_accuracy=parent_accuracy,
    )


def _accuracy(
    predicted: npt.NDArray[np.integer], labels: tuple[str, ...], classes: tuple[str, ...] | None
) -> float:
    names = [classes[i] if classes and 0 <= i < len(classes) else str(i) for i in predicted]
    return float(np.mean([name == label for name, label in zip(names, labels, strict=True)]))


def _cosine(ours: Tensors, theirs: Tensors) -> Quality:
    """Row-wise cosine similarity of every float output; the worst output counts."""
    means, worst = [], []
    for name, expected in theirs.items():
        if expected.dtype.kind != "f":
            continue
        a = ours[name].reshape(len(expected), -1).astype(np.float64)
        b = expected.reshape(len(expected), -1).astype(np.float64)
        norms = np.linalg.norm(a, axis=1) * np.linalg.norm(b, axis=1)
        cosine = np.where(norms > 0, (a * b).sum(axis=1) / np.maximum(norms, 1e-30), 1.0)
        means.append(float(cosine.mean()))
        worst.append(float(cosine.min()))
    mean = min(means, default=1.0)
    return Quality("cosine", 1.0 - mean, cosine_mean=mean, cosine_min=min(worst, default=1.0))


# -- speed --------------------------------------------------------------------------------


class _Speeds:
    """The sweep and the alternating rounds, reporting progress as they go."""

    def __init__(
        self,
        parent: Runtime,
        candidate: Runtime,
        rows: Rows,
        settings: MeasureSettings,
        progress: Progress,
    ) -> None:
        self.runtimes = (parent, candidate)
        self.rows, self.settings, self.progress = rows, settings, progress
        self._steps = 2 * (len(settings.batch_sizes) + settings.rounds)
        self._done = 0

    def measure(self) -> tuple[Speed, Speed]:
        best = [self._best(runtime) for runtime in self.runtimes]
        done = [0, 0]
        seconds = [0.0, 0.0]
        for _ in range(self.settings.rounds):
            for i, runtime in enumerate(self.runtimes):
                n, elapsed = self._timed(runtime, best[i], self.settings.measure_s)
                done[i] += n
                seconds[i] += elapsed
        return (
            Speed(done[0] / seconds[0], best[0]),
            Speed(done[1] / seconds[1], best[1]),
        )

    def _best(self, runtime: Runtime) -> int:
        rates = {}
        for size in self.settings.batch_sizes:
            n, elapsed = self._timed(runtime, size, self.settings.sweep_s)
            rates[size] = n / elapsed
        return max(rates, key=lambda size: rates[size])

    def _timed(self, runtime: Runtime, size: int, seconds: float) -> tuple[int, float]:
        """Rows run and seconds taken, running batches of ``size`` for ``seconds`` (at
        least one, after one to warm up)."""
        batch = self.rows.cycle(size)
        runtime.infer(batch)
        done, started = 0, time.perf_counter()
        for _ in _until(started + seconds):
            runtime.infer(batch)
            done += size
        elapsed = time.perf_counter() - started
        self._done += 1
        self.progress("speed", 0.2 + 0.8 * self._done / self._steps)
        return done, elapsed


def _until(deadline: float) -> Iterator[None]:
    """Yield at least once, then while the deadline has not passed."""
    yield
    while time.perf_counter() < deadline:
        yield
