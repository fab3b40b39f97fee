"""The demo model (digits) and sample rows to score against it.

``build_digits_model`` trains the digits recipe's network on the bundled data set with
numpy (:mod:`workers.recipes.light`), not PyTorch, so that ``maas up`` needs only the
``worker`` extra; it takes about a second on two CPU cores (held-out accuracy ≈ 0.97
with the defaults) and has the digits recipe's inputs, outputs, metadata and held-out
split, so the trainer's digits recipe retrains it. ``digits_samples`` draws only from
the rows that recipe holds out, so accuracy measured on them in a demo or benchmark is
honest.
"""

from __future__ import annotations

import time
from pathlib import Path

import numpy as np
import numpy.typing as npt

from workers.recipes import DigitsRecipe, TrainedModel, light
from workers.recipes.data import load_builtin
from workers.recipes.digits import DEFAULT_SPLIT_SEED, DEFAULT_TEST_SIZE, held_out_rows
from workers.recipes.export import json_list, signature
from workers.recipes.training import ARTIFACT_NAME, evaluate, held_out_split

DEMO_MODEL = "digits"
DEMO_EPOCHS = 30


def build_digits_model(out_dir: Path, *, epochs: int = DEMO_EPOCHS, seed: int = 0) -> TrainedModel:
    """Train the demo digits model; its ONNX file is ``out_dir / "model.onnx"``.

    The model takes raw pixels ``x`` float32 [N, 64] (values 0..16) and returns
    ``probabilities`` float32 [N, 10] and ``label`` int64 [N]. Its metrics are measured
    on the digits recipe's held-out rows, which it never trains on.
    """
    started = time.perf_counter()
    data = load_builtin("digits")
    train, test = held_out_split(data.y, DEFAULT_TEST_SIZE, DEFAULT_SPLIT_SEED)
    config = light.LightConfig(epochs=epochs, seed=seed)
    recipe = DigitsRecipe()
    net, loss = light.fit(
        data.x[train], data.y[train], len(data.classes), recipe.scaling(data.x[train]), config
    )
    x_test = data.x[test].astype(np.float32)
    metrics = {"n_train": float(len(train)), "n_test": float(len(test)), "train_loss": loss}
    metrics |= evaluate(net.probabilities(x_test), data.y[test])
    out_dir.mkdir(parents=True, exist_ok=True)
    artifact = out_dir / ARTIFACT_NAME
    metadata = {
        "maas.recipe": recipe.name,
        "maas.classes": json_list(data.classes),
        "maas.feature_names": json_list(data.feature_names),
        "maas.dataset_sha256": data.sha256,
    }
    light.export_onnx(net, artifact, metadata)
    diff = light.check_parity(net, artifact, x_test)
    params = {"epochs": epochs, "lr": config.lr, "batch_size": config.batch_size}
    params |= {"hidden": config.hidden, "seed": seed, "test_size": DEFAULT_TEST_SIZE}
    return TrainedModel(
        recipe=recipe.name,
        artifact=artifact,
        metrics=metrics,
        dataset_hash=data.sha256,
        params={**params, "split_seed": DEFAULT_SPLIT_SEED, "trained_with": "numpy"},
        duration_s=time.perf_counter() - started,
        parity_max_abs_diff=diff,
        classes=data.classes,
        signature=signature(artifact),
    )


def digits_samples(n: int, seed: int = 0) -> tuple[npt.NDArray[np.float32], npt.NDArray[np.int64]]:
    """``n`` held-out digits: raw pixels float32 [n, 64] (0..16) and their labels int64 [n].

    Rows come from the demo model's held-out split (see ``demo_held_out_rows``) in a
    seeded order; past the 450 held-out rows they repeat, reshuffled each pass.
    """
    if n < 0:
        raise ValueError(f"n must be >= 0, got {n}")
    data = load_builtin("digits")
    rows = demo_held_out_rows()
    rng = np.random.default_rng(seed)
    passes = -(-n // len(rows)) if n else 0
    order = np.concatenate([rng.permutation(rows) for _ in range(passes)] or [rows[:0]])[:n]
    return data.x[order].astype(np.float32), data.y[order].astype(np.int64)


def demo_held_out_rows() -> npt.NDArray[np.int64]:
    """Indices into ``sklearn.datasets.load_digits()`` that the demo model never trains on."""
    return held_out_rows()
