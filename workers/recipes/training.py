"""The shared pipeline of the built-in recipes: split, train, evaluate, export, check.

``MLPRecipe`` implements :class:`~workers.recipes.base.Recipe` for an MLP classifier on
labelled tabular data; the built-ins (digits, tabular) only choose defaults, the input
scaling and what data they accept. The held-out split depends on ``split_seed`` and
``test_size`` only, never on ``seed`` or ``label_noise``, so versions trained on the
same data are evaluated on the same rows. ``max_rows`` limits what is read of a dataset
file (:func:`~workers.recipes.data.rows_to_read`), and so the rows split: the gate
measures production on the candidate's own held-out rows all the same.
"""

from __future__ import annotations

import time
from collections.abc import Callable
from pathlib import Path
from typing import TYPE_CHECKING, Any, ClassVar

import numpy as np
import numpy.typing as npt

from registry.drafts import ReferenceDraft
from workers.drift.profile import build_profile
from workers.recipes import export
from workers.recipes.base import (
    DatasetError,
    DatasetRef,
    Limits,
    ProgressFn,
    RecipeError,
    TrainedModel,
    TrainRequest,
)
from workers.recipes.data import LabelledData, check_ref, load_dataset, rows_to_read
from workers.recipes.params import COMMON_PARAMS, Param, resolve_params

ARTIFACT_NAME = "model.onnx"
REFERENCE_ROWS = 10_000  # a profile summarises: more rows barely move its quantiles

if TYPE_CHECKING:  # torch is the `train` extra's: imported where a recipe trains
    from workers.recipes.network import Classifier

Scaling = tuple[npt.NDArray[np.float64], npt.NDArray[np.float64]]


def held_out_split(
    y: npt.NDArray[np.int64], test_size: float, split_seed: int
) -> tuple[npt.NDArray[np.int64], npt.NDArray[np.int64]]:
    """Stratified (train rows, held-out rows), both sorted, from the labels alone."""
    from sklearn.model_selection import train_test_split

    try:
        train, test = train_test_split(
            np.arange(len(y)), test_size=test_size, random_state=split_seed, stratify=y
        )
    except ValueError as exc:
        raise DatasetError(
            f"cannot make a stratified held-out split of {len(y)} rows with "
            f"test_size={test_size}: {exc} (add rows, or drop rare classes)"
        ) from exc
    return np.sort(train), np.sort(test)


def degrade(
    y: npt.NDArray[np.int64],
    rows: npt.NDArray[np.int64],
    n_classes: int,
    params: dict[str, Any],
) -> tuple[npt.NDArray[np.int64], npt.NDArray[np.int64]]:
    """Apply ``max_rows`` and ``label_noise`` to the training rows: (rows, their labels)."""
    rng = np.random.default_rng([params["seed"], 1])
    max_rows = params["max_rows"]
    if max_rows is not None and max_rows < len(rows):
        rows = np.sort(rng.choice(rows, size=max_rows, replace=False))
    labels = y[rows].copy()
    flipped = rng.random(len(rows)) < params["label_noise"]
    labels[flipped] = (labels[flipped] + rng.integers(1, n_classes, flipped.sum())) % n_classes
    return rows, labels


def evaluate(probabilities: npt.NDArray[np.float32], y: npt.NDArray[np.int64]) -> dict[str, float]:
    """Held-out metrics; the macro averages count a never-predicted class as 0."""
    from sklearn.metrics import accuracy_score, precision_recall_fscore_support

    predicted = probabilities.argmax(axis=1)
    precision, recall, f1, _ = precision_recall_fscore_support(
        y, predicted, average="macro", zero_division=0
    )
    picked = probabilities.astype(np.float64)[np.arange(len(y)), y]
    return {
        "accuracy": float(accuracy_score(y, predicted)),
        "precision_macro": float(precision),
        "recall_macro": float(recall),
        "f1_macro": float(f1),
        "f1": float(f1),
        "log_loss": float(-np.mean(np.log(np.clip(picked, 1e-15, 1.0)))),
    }


def standardise(x: npt.NDArray[np.float64]) -> Scaling:
    """Per-feature mean and std of the training rows; constant features get scale 1."""
    std = x.std(axis=0)
    return x.mean(axis=0), np.where(std > 1e-12, std, 1.0)


class MLPRecipe:
    """A one-hidden-layer MLP classifier; subclasses set the class attributes."""

    name: ClassVar[str] = "mlp"
    metric: ClassVar[str] = "accuracy"
    param_specs: ClassVar[tuple[Param, ...]] = COMMON_PARAMS
    default_dataset: ClassVar[str | None] = None
    held_out_params: ClassVar[tuple[str, ...]] = ("test_size", "split_seed")

    def check_data(self, data: LabelledData) -> None:
        """Reject data the recipe cannot use (raise DatasetError)."""

    def scaling(self, x_train: npt.NDArray[np.float64]) -> Scaling:
        return standardise(x_train)

    def effective_params(self, request: TrainRequest) -> dict[str, Any]:
        params = resolve_params(self.name, self.param_specs, request.params)
        if params["seed"] is None:
            params["seed"] = request.seed
        return params

    def check(self, request: TrainRequest) -> None:
        """What :meth:`train` refuses before it trains: unknown or out-of-range params,
        no dataset, an unknown built-in dataset, an unsupported dataset URI."""
        self.effective_params(request)
        check_ref(self.dataset(request))

    def dataset(self, request: TrainRequest) -> DatasetRef:
        if request.dataset is not None:
            return request.dataset
        if self.default_dataset is None:
            raise DatasetError(
                f"recipe {self.name!r} needs a dataset: give a file uri (CSV, Parquet or JSONL)"
            )
        return DatasetRef(name=self.default_dataset)

    def train(
        self, request: TrainRequest, workdir: Path, progress: ProgressFn | None = None
    ) -> TrainedModel:
        started = time.perf_counter()
        report = progress or _ignore
        self.check(request)
        params = self.effective_params(request)
        report("load", 0.0)
        data = load_dataset(
            self.dataset(request), label=params["label"], max_rows=rows_to_read(params)
        )
        self.check_data(data)
        request.limits.check_time()
        names = export.Names.like(request.replaces)
        run = _Run(self, data, params, report, names, request.limits)
        return run.execute(workdir, started)

    def measure(self, artifact: Path, request: TrainRequest) -> dict[str, float]:
        """Held-out metrics of the ONNX classifier at ``artifact`` (e.g. production) on
        the rows :meth:`train` holds out for ``request``."""
        params = self.effective_params(request)
        data = load_dataset(
            self.dataset(request), label=params["label"], max_rows=rows_to_read(params)
        )
        self.check_data(data)
        _, test = held_out_split(data.y, params["test_size"], params["split_seed"])
        x = data.x[test].astype(np.float32)
        return evaluate(export.probabilities_of(artifact, x, data.classes), data.y[test])


def _ignore(stage: str, fraction: float) -> None:
    """The default progress callback."""


class _Run:
    """One training run of an :class:`MLPRecipe`, step by step."""

    def __init__(
        self,
        recipe: MLPRecipe,
        data: LabelledData,
        params: dict[str, Any],
        report: ProgressFn,
        names: export.Names,
        limits: Limits,
    ) -> None:
        self.recipe, self.data, self.params, self.report = recipe, data, params, report
        self.names, self.limits = names, limits
        self.train_rows, self.test_rows = held_out_split(
            data.y, params["test_size"], params["split_seed"]
        )

    def execute(self, workdir: Path, started: float) -> TrainedModel:
        net, metrics = self.fit()  # says which extra to install when torch is missing
        self.limits.check_time()
        from workers.recipes.network import predict

        x_test = self.data.x[self.test_rows].astype(np.float32)
        self.report("evaluate", 0.9)
        metrics.update(evaluate(predict(net, x_test), self.data.y[self.test_rows]))
        self.report("export", 0.92)
        workdir.mkdir(parents=True, exist_ok=True)
        artifact = workdir / ARTIFACT_NAME
        export.export_onnx(net, self.data.n_features, artifact, self.metadata(), self.names)
        self.report("parity", 0.96)
        diff = export.check_parity(net, artifact, x_test, names=self.names)
        reference = self.reference(net)
        self.report("done", 1.0)
        return TrainedModel(
            recipe=self.recipe.name,
            artifact=artifact,
            metrics=metrics,
            dataset_hash=self.data.sha256,
            params=dict(self.params),
            duration_s=time.perf_counter() - started,
            parity_max_abs_diff=diff,
            classes=self.data.classes,
            signature=export.signature(artifact),
            reference=reference,
        )

    def reference(self, net: Classifier) -> ReferenceDraft:
        """The training split's profile: its inputs and what the model answers for them
        (at most :data:`REFERENCE_ROWS` rows), against which the monitor measures drift."""
        from workers.recipes.network import predict  # torch: the train extra

        x = self.data.x[self.train_rows[:REFERENCE_ROWS]].astype(np.float32)
        probabilities = predict(net, x)
        outputs = {
            self.names.probabilities: probabilities,
            self.names.label: probabilities.argmax(axis=1).astype(np.int64),
        }
        profile = build_profile({self.names.input: x}, outputs, source="training split")
        return ReferenceDraft(profile.rows, profile.source, profile.encode().decode())

    def fit(self) -> tuple[Classifier, dict[str, float]]:
        try:
            import torch
        except ModuleNotFoundError as exc:  # a trainer without the train extra
            raise RecipeError(
                f"recipe {self.recipe.name!r} trains with PyTorch, which this trainer lacks: "
                "pip install 'maas[train]' where the trainer runs"
            ) from exc

        from workers.recipes.network import Classifier, FitConfig, fit, n_parameters, n_steps

        n_classes = len(self.data.classes)
        rows, labels = degrade(self.data.y, self.train_rows, n_classes, self.params)
        config = FitConfig(
            epochs=self.params["epochs"],
            lr=self.params["lr"],
            batch_size=self.params["batch_size"],
            seed=self.params["seed"],
        )
        hidden = self.params["hidden"]
        parameters = n_parameters(self.data.n_features, hidden, n_classes)
        self.limits.check_work(n_steps(len(rows), config), parameters)  # before training
        x_train = self.data.x[rows]
        shift, scale = self.recipe.scaling(x_train)
        generator = torch.Generator().manual_seed(self.params["seed"])
        net = Classifier(shift, scale, hidden, n_classes, generator)
        on_epoch = self._on_epoch(config.epochs)
        loss = fit(net, x_train, labels, config, on_epoch, self.limits.check_time)
        counts = {"n_train": float(len(rows)), "n_test": float(len(self.test_rows))}
        return net, {**counts, "train_loss": loss}

    def _on_epoch(self, epochs: int) -> Callable[[int], None]:
        def on_epoch(epoch: int) -> None:
            self.report("train", 0.05 + 0.8 * epoch / epochs)

        return on_epoch

    def metadata(self) -> dict[str, str]:
        return {
            "maas.recipe": self.recipe.name,
            "maas.classes": export.json_list(self.data.classes),
            "maas.feature_names": export.json_list(self.data.feature_names),
            "maas.dataset_sha256": self.data.sha256,
        }
