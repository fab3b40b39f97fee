"""The digits recipe: an MLP on 8x8 handwritten digits (scikit-learn's bundled set).

The exported model takes raw pixels, ``x`` float32 [N, 64] with values 0..16 as in
``sklearn.datasets.load_digits``, and divides by 16 inside the graph; it returns
``probabilities`` float32 [N, 10] and ``label`` int64 [N] (the digit itself).

Data: the built-in ``digits`` (default) or a file (CSV, Parquet, JSONL) with 64 numeric
pixel columns and a label column (param ``label``, default "label").
"""

from __future__ import annotations

from typing import ClassVar

import numpy as np
import numpy.typing as npt

from workers.recipes.base import DatasetError
from workers.recipes.data import LabelledData, load_builtin
from workers.recipes.params import COMMON_PARAMS, Param
from workers.recipes.training import MLPRecipe, Scaling, held_out_split

N_PIXELS = 64
PIXEL_MAX = 16.0
DEFAULT_TEST_SIZE = 0.25
DEFAULT_SPLIT_SEED = 0


class DigitsRecipe(MLPRecipe):
    """Digits classifier; the gate compares ``accuracy``."""

    name: ClassVar[str] = "digits"
    metric: ClassVar[str] = "accuracy"
    param_specs: ClassVar[tuple[Param, ...]] = COMMON_PARAMS
    default_dataset: ClassVar[str | None] = "digits"

    def check_data(self, data: LabelledData) -> None:
        if data.n_features != N_PIXELS:
            raise DatasetError(
                f"the digits recipe needs {N_PIXELS} pixel columns besides the label, "
                f"{data.source} has {data.n_features}; use the tabular recipe for other data"
            )

    def scaling(self, x_train: npt.NDArray[np.float64]) -> Scaling:
        return np.zeros(N_PIXELS), np.full(N_PIXELS, PIXEL_MAX)


def held_out_rows(
    test_size: float = DEFAULT_TEST_SIZE, split_seed: int = DEFAULT_SPLIT_SEED
) -> npt.NDArray[np.int64]:
    """Indices into ``load_digits()`` of the rows the recipe holds out with these params."""
    _, test = held_out_split(load_builtin("digits").y, test_size, split_seed)
    return test
