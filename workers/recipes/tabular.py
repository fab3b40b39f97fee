"""The tabular recipe: an MLP classifier for any numeric table with a label column.

Data: a file (CSV, Parquet or JSONL; ``file://`` URI or local path) or a built-in
(``iris``, ``wine``, ``breast_cancer``, ``digits``). Param ``label`` (default "label")
names the label column; every other column is a numeric feature, in file order.
Labels may be integers or strings: the model's ``label`` output is a class index into
:attr:`~workers.recipes.base.TrainedModel.classes`.

Features are standardised with the training split's mean and std inside the graph, so
the exported model takes raw feature rows, ``x`` float32 [N, n_features]. Retraining a
model with names of its own, it keeps them (``workers.recipes.export.Names.like``).
"""

from __future__ import annotations

from typing import ClassVar

from workers.recipes.params import COMMON_PARAMS, Param
from workers.recipes.training import MLPRecipe


class TabularRecipe(MLPRecipe):
    """Tabular classifier; the gate compares ``accuracy``."""

    name: ClassVar[str] = "tabular"
    metric: ClassVar[str] = "accuracy"
    param_specs: ClassVar[tuple[Param, ...]] = COMMON_PARAMS
    default_dataset: ClassVar[str | None] = None
