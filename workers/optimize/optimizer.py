"""Optimise a registered version: quantise it, measure the result against it, and
register the result as a new version derived from it.

Nothing reaches the registry until the candidate is built and measured, and then it
is registered in one transaction (version, lineage, figures, and the alias move when
the verdict allows one), so a failure at any step leaves the registry as it was. The
parent's artifact is checked against its sha256 before it is read, as a worker does
before it loads one.
"""

from __future__ import annotations

import json
import math
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Protocol

import onnx

from registry.artifacts import TOKENIZER_FILE, ArtifactStore, model_file
from registry.drafts import Draft
from registry.entities import ModelVersion, Signature
from workers.optimize.cpu import Int8Settings, detect
from workers.optimize.measure import Comparison, Contender, MeasureSettings, compare
from workers.optimize.quantize import (
    METHOD_NAMES,
    METHODS,
    Method,
    calibration_feeds,
    quantize,
    require_onnx,
)
from workers.optimize.report import summary
from workers.optimize.rows import Rows, select
from workers.runtime.loader import Runtime, RuntimeSettings, load_runtime

Progress = Callable[[str, float], None]
"""``progress(stage, fraction)``: ``fraction`` of the whole run done, 0.0 to 1.0."""

# Absorbs float noise such as 0.96 - 0.95 > 0.01 when comparing a drop to the limit.
TOLERANCE = 1e-12


class VersionStore(Protocol):
    """What optimising needs of the registry."""

    def get_version(self, name: str, version: int) -> ModelVersion: ...

    def register(
        self, name: str, draft: Draft, *, actor: str, alias: str = ...
    ) -> ModelVersion: ...


@dataclass(frozen=True, slots=True)
class OptimizeSettings:
    """How much data is used and how speed is measured. Built once at the entrypoint."""

    measure: MeasureSettings = field(default_factory=MeasureSettings)
    max_rows: int = 1000  # rows read to measure quality on (and to calibrate from a file)
    calibration_rows: int = 256
    calibration_batch: int = 32
    int8: Int8Settings | None = None  # None: chosen by what this CPU supports (cpu.py)


@dataclass(frozen=True, slots=True)
class Request:
    """``maas models optimize NAME VERSION [--quantize M] [--calibration DATA] ...``"""

    model: str
    version: int
    method: Method = "dynamic"
    calibration: Path | None = None
    max_drop: float = 0.01
    promote: bool = False
    alias: str = "production"

    def __post_init__(self) -> None:
        if self.method not in METHODS:
            raise ValueError(f"method must be one of {', '.join(METHODS)}, not {self.method!r}")
        if not (math.isfinite(self.max_drop) and self.max_drop >= 0):
            raise ValueError(f"max_drop must be a finite number >= 0, got {self.max_drop!r}")


@dataclass(frozen=True, slots=True)
class Candidate:
    """A quantised artifact and how it measured against its parent; not registered."""

    artifact: Path
    method: str  # as the version records it, e.g. int8-dynamic
    comparison: Comparison
    evaluated_on: str
    calibrated_on: str | None
    int8: Int8Settings  # the settings the CPU that quantised it called for

    def params(self, parent: dict[str, Any]) -> dict[str, Any]:
        """The parent's params (its data and split still describe this version) and how
        this one was made, the int8 settings this CPU called for included."""
        made: dict[str, Any] = {"method": self.method, "evaluated_on": self.evaluated_on}
        if self.calibrated_on is not None:
            made["calibrated_on"] = self.calibrated_on
        made |= {"reduce_range": self.int8.reduce_range, "int8_cpu": self.int8.why}
        return {**parent, "optimization": made}

    def metrics(self) -> dict[str, float]:
        """The measured figures, and ``int8_reduce_range`` (1.0: 7-bit weights): the
        quality figure depends on it, and so on the CPU that chose it."""
        return {**self.comparison.metrics(), "int8_reduce_range": float(self.int8.reduce_range)}

    def draft(self, parent: ModelVersion, verdict: Verdict) -> Draft:
        """The version to register: derived from ``parent``, promoted as ``verdict`` says."""
        return Draft(
            self.artifact,
            reason=verdict.reason,
            promote=verdict.promote,
            dataset_hash=parent.dataset_hash,
            params=self.params(parent.params),
            metrics=self.metrics(),
            derived_from=parent.version,
            method=self.method,
        )


@dataclass(frozen=True, slots=True)
class Verdict:
    """``decision`` in a few words; ``reason`` (for the audit log and ``history``) adds
    what the version is and the figures."""

    promote: bool
    decision: str
    reason: str


@dataclass(frozen=True, slots=True)
class Optimized:
    version: ModelVersion
    candidate: Candidate
    verdict: Verdict


def optimize(
    store: VersionStore,
    request: Request,
    workdir: Path,
    *,
    actor: str,
    settings: OptimizeSettings | None = None,
    progress: Progress | None = None,
) -> Optimized:
    """Build, measure and register the optimised version that ``request`` asks for."""
    settings = settings or OptimizeSettings()
    report = progress or _ignore
    report("check", 0.0)
    parent = store.get_version(request.model, request.version)
    require_onnx(model_file(parent.path))
    ArtifactStore.verify(parent.path, parent.sha256)
    calibration, evaluation = select(
        parent,
        request.calibration,
        calibrate=request.method == "static",
        limit=settings.max_rows,
        calibration_rows=settings.calibration_rows,
    )
    candidate = build(
        Source(parent.path, parent.signature),
        request.method,
        (calibration, evaluation),
        workdir,
        settings=settings,
        progress=report,
    )
    verdict = judge(candidate, request.max_drop, promote=request.promote, source=parent.version)
    report("register", 0.97)
    version = store.register(
        request.model, candidate.draft(parent, verdict), actor=actor, alias=request.alias
    )
    report("done", 1.0)
    return Optimized(version, candidate, verdict)


@dataclass(frozen=True, slots=True)
class Source:
    """The model to quantise: a registered version's or a freshly trained one's."""

    artifact: Path
    signature: Signature


def build(
    source: Source,
    method: Method,
    rows: tuple[Rows | None, Rows],
    workdir: Path,
    *,
    settings: OptimizeSettings,
    progress: Progress,
) -> Candidate:
    """Quantise ``source`` into ``workdir`` and measure it against ``source`` on the
    evaluation rows; ``rows``: (calibration rows, needed by ``static``; evaluation)."""
    artifact, signature = source.artifact, source.signature
    calibration, evaluation = rows
    progress("quantize", 0.05)
    feeds = []
    if calibration is not None:
        tokenizer = model_file(artifact).parent / TOKENIZER_FILE
        feeds = calibration_feeds(calibration, signature, tokenizer, settings.calibration_batch)
    int8 = settings.int8 or detect()
    quantized = quantize(artifact, workdir, method, feeds, reduce_range=int8.reduce_range)
    comparison = _measure(
        artifact, quantized, signature, evaluation, settings.measure, _scaled(progress, 0.3, 0.95)
    )
    return Candidate(
        quantized,
        METHOD_NAMES[method],
        comparison,
        evaluation.source,
        None if calibration is None else calibration.source,
        int8,
    )


def shortfall(comparison: Comparison, max_drop: float) -> str | None:
    """Why the candidate should not replace its parent, or None when it may: its quality
    dropped by more than ``max_drop``, or it is not faster on this machine."""
    drop = comparison.quality.drop
    if drop > max_drop + TOLERANCE:
        return f"its quality drop {drop:.4f} exceeds the allowed {max_drop:.4f}"
    if comparison.speedup < 1.0:
        return (
            f"it is not faster than its parent on this machine "
            f"({comparison.speedup:.2f}x the rows/s)"
        )
    return None


def judge(candidate: Candidate, max_drop: float, *, promote: bool, source: int) -> Verdict:
    """Promote only when asked and when there is no :func:`shortfall`."""
    c = candidate.comparison
    why_not = shortfall(c, max_drop)
    if why_not is not None:
        decision = f"registered but not promoted: {why_not}"
    elif not promote:
        decision = (
            f"registered without promotion (--promote promotes it): within the allowed "
            f"drop {max_drop:.4f} and {c.speedup:.2f}x as fast"
        )
    else:
        decision = f"promoted: within the allowed drop {max_drop:.4f} and {c.speedup:.2f}x as fast"
    promoted = why_not is None and promote
    reason = f"{candidate.method} of version {source}, {decision}; {summary(c)}"
    return Verdict(promoted, decision, reason)


def _measure(
    parent: Path,
    candidate: Path,
    signature: Signature,
    rows: Rows,
    settings: MeasureSettings,
    progress: Progress,
) -> Comparison:
    runtimes: list[Runtime] = []
    try:
        for path in (parent, candidate):
            runtimes.append(load_runtime(path, "onnx", signature, RuntimeSettings()))
        parent_side, candidate_side = (
            Contender(runtime, model_file(path).stat().st_size)
            for runtime, path in zip(runtimes, (parent, candidate), strict=True)
        )
        return compare(
            parent_side,
            candidate_side,
            rows,
            classes=_classes(model_file(parent)),
            settings=settings,
            progress=progress,
        )
    finally:
        for runtime in runtimes:
            runtime.close()


def _classes(model: Path) -> tuple[str, ...] | None:
    """The class names a recipe stored in the model (``maas.classes``), if any."""
    props = {p.key: p.value for p in onnx.load(str(model), load_external_data=False).metadata_props}
    try:
        names = json.loads(props["maas.classes"])
    except (KeyError, ValueError):
        return None
    return tuple(str(name) for name in names) if isinstance(names, list) else None


def _scaled(progress: Progress, start: float, end: float) -> Progress:
    def scaled(stage: str, fraction: float) -> None:
        progress(stage, start + (end - start) * fraction)

    return scaled


def _ignore(stage: str, fraction: float) -> None:
    """The default progress callback."""
