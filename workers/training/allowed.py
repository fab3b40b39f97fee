"""What a retrain job may ask of the trainer: only what its operator allowed.

A job names a recipe, a dataset and a promote mode. The operator decides, when the
trainer starts, which of each a job may name: the built-in recipes plus the user
recipes listed in ``MAAS_RECIPES`` (``--recipes``), files inside ``MAAS_DATA_ROOTS``
(``--data-root``), and ``promote: "always"`` only with ``--allow-promote-always``. A job
asking for anything else is refused (:class:`Refused`) before anything is imported or
read; a dataset outside the roots is refused alike whether or not the file exists.
"""

from __future__ import annotations

import os
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path

from producer.contract.messages import Dataset, ErrorCode
from workers.errors import WorkerError
from workers.recipes import (
    BUILTIN_RECIPES,
    DatasetError,
    DatasetRef,
    Recipe,
    RecipeError,
    get_recipe,
)
from workers.recipes.data import path_from_uri

DEFAULT_DATA_ROOT = Path(".maas/data")
_SHOWN = 200  # characters of a job's own text echoed in a refusal


class Refused(WorkerError):
    """A job asked for what the operator did not allow: answered ``code``, ``message``."""

    def __init__(self, code: ErrorCode, message: str) -> None:
        super().__init__(message)
        self.code = code
        self.message = message


@dataclass(frozen=True, slots=True)
class Allowed:
    """The recipes, data and promotion retrain jobs may ask this trainer for.

    ``recipes``: import paths (``package.module:attr``) of user recipes, besides the
    built-ins. ``data_roots``: the folders a dataset file must resolve into, symlinks
    followed; a relative dataset path is taken relative to the first. ``promote_always``:
    whether a job may skip the evaluation gate.
    """

    recipes: tuple[str, ...] = ()
    data_roots: tuple[Path, ...] = (DEFAULT_DATA_ROOT,)
    promote_always: bool = False

    def __post_init__(self) -> None:
        if not self.data_roots:
            raise ValueError("Allowed.data_roots needs at least one folder")

    @classmethod
    def from_env(
        cls,
        env: Mapping[str, str] | None = None,
        *,
        recipes: Sequence[str] | None = None,
        data_roots: Sequence[str | Path] | None = None,
        promote_always: bool = False,
    ) -> Allowed:
        """From ``MAAS_RECIPES`` (``,``-separated) and ``MAAS_DATA_ROOTS`` (``:``-separated);
        arguments, when given, win."""
        env = os.environ if env is None else env
        if recipes is None:
            recipes = env.get("MAAS_RECIPES", "").split(",")
        if data_roots is None:
            data_roots = env.get("MAAS_DATA_ROOTS", "").split(":")
        roots = tuple(Path(root) for root in data_roots if str(root).strip())
        return cls(
            recipes=tuple(name.strip() for name in recipes if name.strip()),
            data_roots=roots or (DEFAULT_DATA_ROOT,),
            promote_always=promote_always,
        )

    def load_recipes(self) -> None:
        """Import every listed user recipe once, so that a mistake shows at start
        (raises :class:`~workers.recipes.RecipeNotFoundError` naming it)."""
        for name in self.recipes:
            get_recipe(name)

    def recipe(self, name: str) -> Recipe:
        """The recipe ``name`` if it is allowed; else :class:`Refused`, importing nothing."""
        if name in BUILTIN_RECIPES or name in self.recipes:
            try:
                return get_recipe(name)
            except RecipeError as exc:  # a listed recipe that broke since the trainer started
                raise Refused(ErrorCode.INVALID_INPUT, exc.public) from exc
        choices = ", ".join([*sorted(BUILTIN_RECIPES), *self.recipes])
        raise Refused(
            ErrorCode.INVALID_INPUT,
            f"recipe {_shown(name)} is not one this trainer runs; it runs {choices} "
            "(its operator lists user recipes in MAAS_RECIPES)",
        )

    def dataset(self, dataset: Dataset | None) -> DatasetRef | None:
        """The job's dataset, a file confined to the data roots; else :class:`Refused`."""
        if dataset is None:
            return None
        if dataset.uri is None:
            return DatasetRef(name=dataset.name)
        return DatasetRef(uri=dataset.uri, path=self.confine(dataset.uri))

    def confine(self, uri: str) -> Path:
        """The real path of ``uri`` if it lies inside a data root; else :class:`Refused`,
        which says the same whether or not the file exists."""
        try:
            path = path_from_uri(uri)
        except DatasetError as exc:
            raise Refused(ErrorCode.INVALID_INPUT, exc.public) from exc
        real = _inside(self.data_roots[0] / path, self.data_roots)  # absolute: root ignored
        if real is None:
            raise Refused(
                ErrorCode.INVALID_INPUT,
                f"dataset {_shown(uri)} is not inside the trainer's data roots; put the file "
                "in one (its operator sets them in MAAS_DATA_ROOTS) and name it by its path "
                "there, or use a built-in dataset name",
            )
        return real

    def check_promote(self, mode: str) -> None:
        """Refuse ``promote: "always"`` unless the operator allowed it."""
        if mode == "always" and not self.promote_always:
            raise Refused(
                ErrorCode.UNAUTHORIZED,
                'promote "always" skips the evaluation gate, and this trainer does not allow '
                'it (its operator can, with maas trainer --allow-promote-always); use "gate", '
                'or "never" and promote by hand (maas models promote)',
            )


def _inside(path: Path, roots: Sequence[Path]) -> Path | None:
    """``path`` resolved (symlinks followed) if that lies inside one of ``roots``."""
    try:
        real = path.resolve()
        inside = any(real.is_relative_to(root.resolve()) for root in roots)
    except (OSError, RuntimeError, ValueError):  # a link loop, a NUL byte, a name too long
        return None
    return real if inside else None


def _shown(text: str) -> str:
    return repr(text if len(text) <= _SHOWN else text[:_SHOWN] + "...")
