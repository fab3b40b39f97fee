"""Finding a recipe by name (a built-in, or a user recipe at ``package.module:attr``),
choosing one for a model, and checking a request before anything trains."""

from __future__ import annotations

import importlib
from collections.abc import Callable
from typing import Any

from workers.recipes.base import Recipe, RecipeNotFoundError, TrainRequest
from workers.recipes.digits import DigitsRecipe
from workers.recipes.tabular import TabularRecipe

BUILTIN_RECIPES: dict[str, Callable[[], Recipe]] = {
    DigitsRecipe.name: DigitsRecipe,
    TabularRecipe.name: TabularRecipe,
}
DEFAULT_RECIPE = TabularRecipe.name


def recipe_for(model: str, recipe: str | None = None) -> str:
    """The recipe a retrain job of ``model`` runs: ``recipe`` when the job names one;
    else the model's own name if it is a built-in recipe; else the tabular recipe."""
    if recipe:
        return recipe
    return model if model in BUILTIN_RECIPES else DEFAULT_RECIPE


def check_request(recipe: Recipe, request: TrainRequest) -> None:
    """Raise the :class:`~workers.recipes.base.RecipeError` that ``recipe`` would raise
    for ``request`` before training (bad params, no or an unknown dataset). A recipe
    that defines ``check(request)`` is asked (the built-ins do, and :meth:`train` runs
    the same check); any other is taken at its word until it trains."""
    check = getattr(recipe, "check", None)
    if callable(check):
        check(request)


def get_recipe(name: str) -> Recipe:
    """The recipe called ``name``: a built-in, or ``package.module:attr`` to import.

    ``attr`` (dots allowed, for nested attributes) is a recipe object, or a class or
    zero-argument factory that returns one. Raises :class:`RecipeNotFoundError` saying
    what was tried.
    """
    builtin = BUILTIN_RECIPES.get(name)
    if builtin is not None:
        return builtin()
    if ":" not in name:
        raise RecipeNotFoundError(
            f"no recipe {name!r}: built-in recipes are {', '.join(sorted(BUILTIN_RECIPES))}; "
            "a user recipe is named by its import path, 'package.module:attr'"
        )
    return _as_recipe(name, _import(name))


def _import(path: str) -> Any:
    module_name, _, attr = path.partition(":")
    if not module_name or not attr:
        raise RecipeNotFoundError(
            f"recipe import path {path!r} must look like 'package.module:attr'"
        )
    try:
        target: Any = importlib.import_module(module_name)
    except ImportError as exc:
        raise RecipeNotFoundError(
            f"recipe {path!r}: cannot import module {module_name!r} ({exc}); "
            "is it installed or on PYTHONPATH?"
        ) from exc
    except Exception as exc:  # user code failing at import time
        raise RecipeNotFoundError(
            f"recipe {path!r}: importing module {module_name!r} failed: {type(exc).__name__}: {exc}"
        ) from exc
    for part in attr.split("."):
        if not hasattr(target, part):
            raise RecipeNotFoundError(f"recipe {path!r}: {module_name!r} has no attribute {attr!r}")
        target = getattr(target, part)
    return target


def _as_recipe(path: str, target: Any) -> Recipe:
    if isinstance(target, type) or (callable(target) and not isinstance(target, Recipe)):
        try:
            target = target()
        except TypeError as exc:
            raise RecipeNotFoundError(
                f"recipe {path!r}: calling it with no arguments failed ({exc}); "
                "point at a recipe object or a zero-argument class or factory"
            ) from exc
    if not _is_recipe(target):
        raise RecipeNotFoundError(
            f"recipe {path!r} is not a recipe: it needs string attributes `name` and "
            f"`metric` and a method train(request, workdir, progress); got {type(target).__name__}"
        )
    recipe: Recipe = target
    return recipe


def _is_recipe(target: Any) -> bool:
    return (
        isinstance(target, Recipe)
        and not isinstance(target, type)
        and isinstance(target.name, str)
        and isinstance(target.metric, str)
    )
