"""Training recipes: turn a dataset and params into a parity-checked ONNX model.

The training worker calls ``get_recipe(name).train(request, workdir, progress)`` and
gets a :class:`TrainedModel`, or a :class:`RecipeError` whose message says what to fix.

Errors::

    RecipeError                 root; ``retriable`` is False
    ├── RecipeNotFoundError     unknown name or import path
    ├── ParamsError             unknown param, wrong type, out of range
    ├── DatasetError            missing, empty or badly shaped data
    ├── ParityError             the ONNX export does not match the torch model
    ├── OverBudget              steps * parameters over the trainer's limit (refused before training)
    ├── OutOfTime               training ran past its time budget (stopped at a step)
    └── Cancelled               the run was cancelled (stopped at a step)
"""

from workers.recipes.base import (
    Cancelled,
    DatasetError,
    DatasetRef,
    Limits,
    Measures,
    OutOfTime,
    OverBudget,
    ParamsError,
    ParityError,
    ProgressFn,
    Recipe,
    RecipeError,
    RecipeNotFoundError,
    TrainedModel,
    TrainRequest,
)
from workers.recipes.data import BUILTIN_DATASETS
from workers.recipes.digits import DigitsRecipe
from workers.recipes.lookup import (
    BUILTIN_RECIPES,
    DEFAULT_RECIPE,
    check_request,
    get_recipe,
    recipe_for,
)
from workers.recipes.params import Param
from workers.recipes.tabular import TabularRecipe
from workers.recipes.training import ARTIFACT_NAME, MLPRecipe

__all__ = [
    "ARTIFACT_NAME",
    "BUILTIN_DATASETS",
    "BUILTIN_RECIPES",
    "DEFAULT_RECIPE",
    "Cancelled",
    "DatasetError",
    "DatasetRef",
    "DigitsRecipe",
    "Limits",
    "MLPRecipe",
    "Measures",
    "OutOfTime",
    "OverBudget",
    "Param",
    "ParamsError",
    "ParityError",
    "ProgressFn",
    "Recipe",
    "RecipeError",
    "RecipeNotFoundError",
    "TabularRecipe",
    "TrainRequest",
    "TrainedModel",
    "check_request",
    "get_recipe",
    "recipe_for",
]
