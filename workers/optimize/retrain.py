"""Quantisation in retraining: a RetrainJob's ``params.quantize`` (``dynamic`` or
``static``) and ``params.max_drop`` (default 0.01).

The trainer trains as always, then quantises the trained model and measures it against
it on the held-out rows the recipe measured it on (rows of the training split calibrate
``static``). Both versions are registered, in one transaction. The evaluation gate
judges the one that would be promoted: the int8 version when its quality drop is
within ``max_drop`` and it is faster on this machine, else the trained one.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, replace
from pathlib import Path
from typing import Any, cast

from registry import Draft
from workers.optimize.errors import DataError
from workers.optimize.optimizer import Candidate, OptimizeSettings, Source, build, shortfall
from workers.optimize.quantize import METHODS, Method
from workers.optimize.report import summary
from workers.optimize.rows import trained_on
from workers.recipes import DatasetRef, ParamsError, TrainedModel
from workers.recipes.params import Param, resolve_params

QUANTIZE_PARAMS: tuple[Param, ...] = (
    Param("quantize", str, None, "also register an int8 version: dynamic or static", optional=True),
    Param(
        "max_drop",
        float,
        0.01,
        "the most the int8 version's quality may drop for it to be the one promoted",
        minimum=0.0,
        maximum=1.0,
    ),
)
_NAMES = tuple(param.name for param in QUANTIZE_PARAMS)


@dataclass(frozen=True, slots=True)
class Quantize:
    """What a job's params ask for."""

    method: Method
    max_drop: float


def split_params(params: Mapping[str, Any]) -> tuple[dict[str, Any], Quantize | None]:
    """The recipe's params, and the quantisation the job asks for (None: none)."""
    ours = {name: params[name] for name in _NAMES if name in params}
    rest = {name: value for name, value in params.items() if name not in ours}
    resolved = resolve_params("retraining", QUANTIZE_PARAMS, ours)
    method = resolved["quantize"]
    if method is None:
        if "max_drop" in ours:
            raise ParamsError("param 'max_drop' bounds quantisation: give 'quantize' with it")
        return rest, None
    if method not in METHODS:
        raise ParamsError(f"param 'quantize' must be one of {', '.join(METHODS)}, got {method!r}")
    return rest, Quantize(cast(Method, method), float(resolved["max_drop"]))


@dataclass(frozen=True, slots=True)
class Plan:
    """The measured int8 candidate of a trained model, and whether the gate judges it."""

    candidate: Candidate
    judged: bool  # the int8 version is the one that would be promoted
    note: str  # which version the gate judges, and why

    def drafts(self, trained: Draft) -> tuple[Draft, Draft]:
        """(trained, int8) drafts; the one judged keeps ``trained.promote``."""
        derived = Draft(
            self.candidate.artifact,
            trained.reason,
            promote=trained.promote and self.judged,
            dataset_hash=trained.dataset_hash,
            params=self.candidate.params(trained.params),
            metrics=self.candidate.metrics(),
            method=self.candidate.method,
        )
        return replace(trained, promote=trained.promote and not self.judged), derived

    @property
    def metrics(self) -> dict[str, float]:
        return self.candidate.metrics()


def plan(
    trained: TrainedModel,
    quantize: Quantize,
    dataset: DatasetRef | None,
    workdir: Path,
    settings: OptimizeSettings | None = None,
) -> Plan:
    """Quantise and measure ``trained`` on its recipe's held-out rows of ``dataset`` (the
    request's, its file confined by the trainer; None: the recipe's built-in default)."""
    settings = settings or OptimizeSettings()
    rows = trained_on(
        trained.dataset_hash,
        trained.params,
        trained.signature,
        dataset=dataset,
        limit=settings.max_rows,
        calibration_rows=settings.calibration_rows,
    )
    if rows is None:
        raise DataError(
            f"recipe {trained.recipe!r} records no held-out split (test_size, split_seed) "
            "to measure the int8 version on; retrain without 'quantize'"
        )
    calibration, evaluation = rows
    candidate = build(
        Source(trained.artifact, trained.signature),
        quantize.method,
        (calibration if quantize.method == "static" else None, evaluation),
        workdir / "int8",
        settings=settings,
        progress=_ignore,
    )
    why_not = shortfall(candidate.comparison, quantize.max_drop)
    facts = summary(candidate.comparison)
    if why_not is None:
        note = f"the gate judged the {candidate.method} version derived from it ({facts})"
        return Plan(candidate, True, note)
    note = f"the gate judged the trained version, since its {candidate.method} version ({facts}) fell short: {why_not}"
    return Plan(candidate, False, note)


def _ignore(stage: str, fraction: float) -> None:
    """Training reports no progress of its own either."""
