"""Declared training params: names, types, ranges and defaults, checked with clear errors."""

from __future__ import annotations

import math
from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from typing import Any

from workers.recipes.base import ParamsError

_TYPE_NAMES = {int: "an integer", float: "a number", str: "a string"}


@dataclass(frozen=True, slots=True)
class Param:
    """One accepted param. ``minimum``/``maximum`` are inclusive; ``optional`` allows null."""

    name: str
    kind: type[int] | type[float] | type[str]
    default: Any
    help: str
    minimum: float | None = None
    maximum: float | None = None
    optional: bool = False

    def coerce(self, value: Any) -> Any:
        """Return ``value`` as this param's type, or raise :class:`ParamsError`."""
        if value is None:
            if self.optional:
                return None
            raise ParamsError(f"param {self.name!r} must not be null ({self.help})")
        typed = _as_type(value, self.kind)
        if typed is None:
            raise ParamsError(
                f"param {self.name!r} must be {_TYPE_NAMES[self.kind]}, "
                f"got {value!r} ({type(value).__name__}); {self.help}"
            )
        self._check_range(typed)
        return typed

    def _check_range(self, value: Any) -> None:
        if self.kind is str:
            return
        low = -math.inf if self.minimum is None else self.minimum
        high = math.inf if self.maximum is None else self.maximum
        if not low <= value <= high:
            raise ParamsError(
                f"param {self.name!r} must be between {_fmt(low)} and {_fmt(high)}, "
                f"got {value!r}; {self.help}"
            )


def _fmt(bound: float) -> str:
    return f"{bound:g}"


def _as_type(value: Any, kind: type) -> Any:
    if isinstance(value, bool):
        return None
    if kind is int:
        if isinstance(value, float) and value.is_integer():
            return int(value)
        return value if isinstance(value, int) else None
    if kind is float:
        ok = isinstance(value, int | float) and math.isfinite(value)
        return float(value) if ok else None
    return value if isinstance(value, str) else None


def resolve_params(recipe: str, specs: Iterable[Param], given: Mapping[str, Any]) -> dict[str, Any]:
    """Check ``given`` against ``specs`` and return every param, defaults filled in."""
    by_name = {spec.name: spec for spec in specs}
    unknown = sorted(set(given) - set(by_name))
    if unknown:
        allowed = ", ".join(sorted(by_name))
        raise ParamsError(
            f"unknown param(s) for recipe {recipe!r}: {', '.join(unknown)}; allowed: {allowed}"
        )
    return {
        name: spec.coerce(given[name]) if name in given else spec.default
        for name, spec in by_name.items()
    }


COMMON_PARAMS: tuple[Param, ...] = (
    Param("epochs", int, 30, "passes over the training split", minimum=1, maximum=10_000),
    Param("lr", float, 3e-3, "Adam learning rate", minimum=1e-8, maximum=10.0),
    Param("batch_size", int, 64, "rows per optimiser step", minimum=1, maximum=1_000_000),
    Param("hidden", int, 128, "width of the hidden layer", minimum=1, maximum=65_536),
    Param("test_size", float, 0.25, "held-out fraction", minimum=0.05, maximum=0.9),
    Param(
        "seed",
        int,
        None,
        "weight init and shuffling; null uses the job's seed",
        optional=True,
    ),
    Param(
        "split_seed",
        int,
        0,
        "held-out split; keep it fixed so versions are compared on the same rows",
    ),
    Param(
        "max_rows",
        int,
        None,
        "train on at most this many rows of the training split (null: all); a dataset "
        "file is read only as far as they and their held-out share need",
        minimum=1,
        optional=True,
    ),
    Param(
        "label_noise",
        float,
        0.0,
        "fraction of training labels replaced by a wrong class (for experiments)",
        minimum=0.0,
        maximum=1.0,
    ),
    Param("label", str, "label", "name of the label column in a dataset file"),
)
