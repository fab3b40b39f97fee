"""The demo model (digits) and sample rows to score against it.

``build_digits_model`` trains the digits recipe on the bundled data set in about a
second on two CPU cores (held-out accuracy ≈ 0.98 with the defaults). ``digits_samples``
draws only from the rows that recipe holds out, so accuracy measured on them in a
demo or benchmark is honest.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
import numpy.typing as npt

from workers.recipes import DatasetRef, DigitsRecipe, TrainedModel, TrainRequest
from workers.recipes.data import load_builtin
from workers.recipes.digits import held_out_rows

DEMO_MODEL = "digits"
DEMO_EPOCHS = 30


def build_digits_model(out_dir: Path, *, epochs: int = DEMO_EPOCHS, seed: int = 0) -> TrainedModel:
    """Train the demo digits model; its ONNX file is ``out_dir / "model.onnx"``.

    The model takes raw pixels ``x`` float32 [N, 64] (values 0..16) and returns
    ``probabilities`` float32 [N, 10] and ``label`` int64 [N].
    """
    request = TrainRequest(
        model=DEMO_MODEL,
        dataset=DatasetRef(name="digits"),
        params={"epochs": epochs},
        seed=seed,
    )
    return DigitsRecipe().train(request, out_dir)


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
