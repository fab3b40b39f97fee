"""What a training recipe is: its request, its result, its protocol and its errors.

A recipe turns a :class:`TrainRequest` into a :class:`TrainedModel`: an ONNX file that
has already passed a parity check against the framework it was trained in, with the
held-out metrics the evaluation gate compares. Recipes know nothing about Kafka or the
registry; the training worker calls them.
"""

from __future__ import annotations

import threading
import time
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Protocol, runtime_checkable

from registry.drafts import ReferenceDraft
from registry.entities import Signature

ProgressFn = Callable[[str, float], None]
"""``progress(stage, fraction)``: ``fraction`` of the whole run done, from 0.0 to 1.0."""


class RecipeError(Exception):
    """Root of every training failure; the message says what to fix.

    ``retriable`` is False for all of them: running the same job again gives the same
    error, so the worker answers it instead of retrying. ``public`` is the message
    without anything read from the data (column names, keys, values): the trainer
    answers the job's sender with it and logs the full message for the operator.
    """

    retriable = False

    def __init__(self, message: str, *, public: str | None = None) -> None:
        super().__init__(message)
        self.public = message if public is None else public


class RecipeNotFoundError(RecipeError):
    """No built-in recipe has that name and it is not an importable ``module:attr``."""


class ParamsError(RecipeError):
    """A param is unknown, of the wrong type or out of range."""


class DatasetError(RecipeError):
    """The dataset is missing, unreadable, empty or not shaped as the recipe needs."""


class ParityError(RecipeError):
    """The exported ONNX model does not reproduce the trained model's outputs."""


class OverBudget(RecipeError):
    """The training asked for (steps * parameters) exceeds :attr:`Limits.max_work`."""


class OutOfTime(RecipeError):
    """The training ran past :attr:`Limits.deadline`; it stopped at an optimiser step."""


class Cancelled(RecipeError):
    """:attr:`Limits.stop` was set (``maas runs cancel``); it stopped at an optimiser step."""


@dataclass(frozen=True, slots=True)
class Limits:
    """What one training run may spend, checked by the recipe: ``max_work`` (optimiser
    steps * model parameters, before it trains), ``deadline`` (a ``time.monotonic()``
    value) and ``stop`` (set to cancel), both at every optimiser step. None: no limit."""

    max_work: int | None = None
    deadline: float | None = None
    time_budget_s: float | None = None  # what ``deadline`` came from, for the messages
    stop: threading.Event | None = None

    def check_work(self, steps: int, parameters: int) -> None:
        """Refuse ``steps`` * ``parameters`` over ``max_work``, naming the limit."""
        work = steps * parameters
        if self.max_work is not None and work > self.max_work:
            raise OverBudget(
                f"this training would take {steps:,} optimiser steps of a model with "
                f"{parameters:,} parameters ({work:.3g} steps * parameters), over the "
                f"trainer's limit of {self.max_work:.3g} (maas trainer --max-work, env "
                "MAAS_TRAIN_MAX_WORK); ask for fewer epochs, a larger batch_size, a smaller "
                "hidden or fewer max_rows"
            )

    def check_time(self) -> None:
        """Stop (raise) once cancelled or past the deadline; call at every step."""
        if self.stop is not None and self.stop.is_set():
            raise Cancelled("the run was cancelled (maas runs cancel)")
        if self.deadline is not None and time.monotonic() > self.deadline:
            raise OutOfTime(
                f"training ran past its time budget of {self.time_budget_s or 0:g} s and was "
                "stopped (the trainer's --time-budget, env MAAS_TRAIN_TIME_BUDGET_S, or the "
                "job's param time_budget_s); ask for fewer epochs, a larger batch_size or a "
                "smaller hidden"
            )


@dataclass(frozen=True, slots=True)
class DatasetRef:
    """Training data: a ``uri`` (``file://`` URI or local path) or a built-in ``name``.

    ``path``, when set, is the file ``uri`` was resolved to by whoever checked it (the
    trainer confines it to its data roots); it is read instead of ``uri``, which stays
    the name that messages show.
    """

    uri: str | None = None
    name: str | None = None
    path: Path | None = None
    # Set by the trainer: the folders the opened file must lie in (checked on the file
    # opened, so that no symlink swap can race it), and its size limit. None: none.
    roots: tuple[Path, ...] | None = None
    max_bytes: int | None = None

    def __post_init__(self) -> None:
        if (self.uri is None) == (self.name is None):
            raise DatasetError("a dataset needs exactly one of `uri` or `name`")


@dataclass(frozen=True, slots=True)
class TrainRequest:
    """One training run. ``dataset=None`` means the recipe's own default data.

    ``seed`` is used when ``params`` has no ``seed`` of its own. ``replaces`` is the
    signature of the version the new one may replace (production's, when there is one):
    a recipe keeps its input and output names where it can, so that clients keep
    working after a promotion (the registry refuses one that would break them).
    """

    model: str
    dataset: DatasetRef | None = None
    params: Mapping[str, Any] = field(default_factory=dict)
    seed: int = 0
    replaces: Signature | None = None
    limits: Limits = field(default_factory=Limits)


@dataclass(frozen=True, slots=True)
class TrainedModel:
    """A trained, exported and parity-checked model version, ready to register.

    ``artifact`` is the ONNX file. ``metrics`` are measured on the held-out split and
    hold at least ``accuracy``, ``precision_macro``, ``recall_macro``, ``f1_macro``
    (``f1`` is the same value), ``log_loss``, ``n_train`` and ``n_test``. ``params`` are
    the effective params, defaults filled in. ``classes[i]`` names class index ``i``,
    the value of the model's ``label`` output; the ONNX file carries them as well, in
    its metadata under ``maas.classes`` (a JSON list).
    """

    recipe: str
    artifact: Path
    metrics: dict[str, float]
    dataset_hash: str
    params: dict[str, Any]
    duration_s: float
    parity_max_abs_diff: float
    classes: tuple[str, ...]
    signature: Signature
    # The reference profile of the training split's inputs and the model's outputs on
    # them (workers.drift), for drift monitoring; None when the recipe made none.
    reference: ReferenceDraft | None = None


@runtime_checkable
class Recipe(Protocol):
    """A way to train one kind of model.

    ``metric`` names the key of :attr:`TrainedModel.metrics` that the evaluation gate
    compares (higher is better unless the gate policy says otherwise).
    """

    @property
    def name(self) -> str: ...

    @property
    def metric(self) -> str: ...

    def train(
        self, request: TrainRequest, workdir: Path, progress: ProgressFn | None = None
    ) -> TrainedModel:
        """Train, evaluate, export to ONNX under ``workdir`` and check parity.

        Raises :class:`RecipeError` (or a subclass) on any failure the user can fix.
        """
        ...


@runtime_checkable
class Measures(Protocol):
    """A recipe that can measure another model of its kind on the rows it holds out.

    The evaluation gate measures production with it on the candidate's own held-out
    rows, so the two are compared on the same data. ``held_out_params`` name the params
    that choose those rows; a gated job may not set them.
    """

    @property
    def held_out_params(self) -> tuple[str, ...]: ...

    def measure(self, artifact: Path, request: TrainRequest) -> dict[str, float]:
        """The metrics of the model at ``artifact`` on the rows :meth:`Recipe.train` holds
        out for ``request``. Raises :class:`RecipeError` if that model does not fit them."""
        ...
