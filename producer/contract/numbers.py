"""Numbers a job can carry: JSON numbers that are finite float64 values.

Python's ``json`` reads ``1e400`` as infinity and accepts ``NaN``; encoded into a job
either becomes ``null``, and the worker can only answer that the input holds nulls.
Inputs read from users' files and flags go through :func:`loads` instead, which says
which number is out of range.
"""

from __future__ import annotations

import json
import math
from typing import Any

from producer.contract.errors import ContractError

FLOAT64_MAX = 1.7976931348623157e308


class NumberOutOfRange(ContractError):
    """A number is infinite or NaN once read as a float64."""


def finite(number: str | float) -> float:
    """``number`` (as written, or read) as a finite float, else :class:`NumberOutOfRange`;
    what ``float()`` refuses raises its ValueError or TypeError."""
    value = float(number)
    if not math.isfinite(value):
        raise NumberOutOfRange(
            f"the number {number} is out of range: a float64 holds at most ±{FLOAT64_MAX:.4g}"
        )
    return value


def _constant(name: str) -> float:
    raise NumberOutOfRange(f"{name} is not a number a model can take; use a finite number")


def loads(text: str | bytes) -> Any:
    """``json.loads`` that refuses numbers out of float64's range, NaN and Infinity
    (:class:`NumberOutOfRange`, a ValueError like JSON's own errors)."""
    return json.loads(text, parse_float=finite, parse_constant=_constant)
