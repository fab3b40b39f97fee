"""Validating a job's JSON inputs against a model's signature, and converting them.

:func:`prepare_inputs` returns one array per input, in the dtype and shape the
signature declares, or raises :class:`InvalidInput` saying exactly what is wrong
(which input, which row, which value). Text models take ``{"text": [...]}``; see
:func:`workers.runtime.text.prepare_text`.
"""

from __future__ import annotations

import functools
from collections.abc import Mapping, Sequence
from typing import Any

import numpy as np

from registry.entities import Dim, Signature, TensorSpec
from workers.errors import InvalidInput
from workers.runtime.text import prepare_text

__all__ = ["Tensors", "describe_inputs", "prepare_inputs"]

Tensors = dict[str, np.ndarray]

# numpy kinds of parsed JSON values a model dtype accepts without losing meaning.
_ACCEPTS = {"f": "fiu", "i": "iuf", "u": "iuf", "b": "b", "U": "U", "O": "U"}
_KIND_WORDS = {"U": "strings", "O": "values that are not numbers", "b": "booleans", "f": "floats"}


def _render_shape(shape: Sequence[Dim]) -> str:
    dims = ["N"] + ["?" if dim is None else str(dim) for dim in shape[1:]]
    return f"({', '.join(dims)})" if len(dims) != 1 else "(N,)"


def describe_inputs(signature: Signature) -> str:
    """``x (float32, [N, 64]), mask (int64, [N, 64])`` for error messages."""
    return ", ".join(
        f"{spec.name} ({spec.dtype}, [{_render_shape(spec.shape)[1:-1].rstrip(',')}])"
        for spec in signature.inputs
    )


def prepare_inputs(signature: Signature, inputs: Mapping[str, Sequence[Any]]) -> Tensors:
    """Validate a job's inputs against ``signature`` and convert them to arrays."""
    if signature.text_input:
        return prepare_text(inputs, signature.text_input)
    specs = signature.inputs
    if len(inputs) != len(specs) or any(spec.name not in inputs for spec in specs):
        _name_mismatch(signature, inputs)
    arrays = {spec.name: _to_array(spec, inputs[spec.name]) for spec in specs}
    if len(arrays) > 1:
        counts = {name: len(array) for name, array in arrays.items()}
        if len(set(counts.values())) > 1:
            raise InvalidInput(f"inputs must have the same number of rows, got {counts}")
    return arrays


def _name_mismatch(signature: Signature, inputs: Mapping[str, Any]) -> None:
    expected = {spec.name for spec in signature.inputs}
    for name in inputs:
        if name not in expected:
            raise InvalidInput(
                f"unknown input {name!r}; the model's inputs are: {describe_inputs(signature)}"
            )
    for name in expected:
        if name not in inputs:
            raise InvalidInput(
                f"missing input {name!r}; the model's inputs are: {describe_inputs(signature)}"
            )


def _to_array(spec: TensorSpec, rows: Sequence[Any]) -> np.ndarray:
    if isinstance(rows, np.ndarray) and rows.ndim and len(rows):  # OIP tensors, decoded
        parsed = rows
        rows = parsed.ravel()[:1].tolist()  # what an error message quotes
    elif not isinstance(rows, list | tuple) or not rows:
        raise InvalidInput(f"input {spec.name!r} must be a non-empty list of rows")
    else:
        try:
            parsed = np.asarray(rows)
        except ValueError as exc:
            raise InvalidInput(
                f"input {spec.name!r} is ragged: {_ragged_or_deep(rows)}; every row must "
                f"have the shape {_render_shape(spec.shape)} without the N"
            ) from exc
    array = _cast(spec, rows, parsed)
    expected = spec.shape
    fixed = [(got, want) for got, want in zip(array.shape[1:], expected[1:], strict=False)]
    if array.ndim != len(expected) or any(
        isinstance(want, int) and got != want for got, want in fixed
    ):
        raise InvalidInput(
            f"input {spec.name!r} has shape {tuple(array.shape)}, "
            f"the model expects {_render_shape(expected)}"
        )
    return array


@functools.cache
def _dtype(name: str) -> np.dtype[Any]:
    return np.dtype(name)


def _cast(spec: TensorSpec, rows: Sequence[Any], parsed: np.ndarray) -> np.ndarray:
    target = _dtype(spec.dtype)
    kind = parsed.dtype.kind
    if kind not in _ACCEPTS.get(target.kind, target.kind):
        example = _first_non_number(rows)
        if example is _NUMBER and kind == "O":  # numbers, some beyond every numpy integer
            raise InvalidInput(
                f"input {spec.name!r} holds integers too large for {spec.dtype} "
                f"(e.g. {max(parsed.ravel().tolist(), key=abs)})"
            )
        if example is _NUMBER:
            example = parsed.ravel()[0].item()
        raise InvalidInput(
            f"input {spec.name!r} holds {_KIND_WORDS.get(kind, parsed.dtype.name)} "
            f"(e.g. {example!r}), the model expects {spec.dtype}"
        )
    if target.kind in "iu" and kind == "f" and not _integral(parsed):
        raise InvalidInput(
            f"input {spec.name!r} holds non-integer values (e.g. {_first_fraction(parsed)!r}), "
            f"the model expects {spec.dtype}"
        )
    if target.kind in "iu" and parsed.size:
        info = np.iinfo(target)
        if parsed.min() < info.min or parsed.max() > info.max:
            raise InvalidInput(
                f"input {spec.name!r} holds values outside the range of {spec.dtype} "
                f"({info.min}..{info.max})"
            )
    if target.kind == "f" and parsed.dtype.itemsize > target.itemsize:  # e.g. 1e308 to float32
        try:
            with np.errstate(over="raise"):
                return parsed.astype(target)
        except FloatingPointError:
            limit = np.finfo(target).max
            raise InvalidInput(
                f"input {spec.name!r} holds values outside the range of {spec.dtype} "
                f"(-{limit:.4g}..{limit:.4g})"
            ) from None
    return parsed.astype(target, copy=False)


def _integral(values: np.ndarray) -> bool:
    return bool(np.all(np.isfinite(values) & (values == np.round(values))))


def _first_non_number(rows: Any) -> Any:
    """The first leaf of nested lists that is not an int or float (for messages)."""
    if isinstance(rows, list | tuple):
        for row in rows:
            found = _first_non_number(row)
            if found is not _NUMBER:
                return found
        return _NUMBER
    if isinstance(rows, bool) or not isinstance(rows, int | float):
        return rows
    return _NUMBER


def _first_fraction(parsed: np.ndarray) -> Any:
    """The first value that is not a whole number (for messages)."""
    flat = parsed.ravel()
    return flat[np.argmax(~(np.isfinite(flat) & (flat == np.round(flat))))].item()


_NUMBER = object()


def _ragged_or_deep(rows: Sequence[Any]) -> str:
    try:
        found = _ragged(rows)
    except RecursionError:
        found = ""
    return found or "its rows are nested more deeply than an array can be"


def _ragged(rows: Sequence[Any], path: str = "") -> str:
    """Where nested lists stop having one length, e.g. ``row 1 has 3 values, row 0 has 4``."""
    lengths = [len(row) if isinstance(row, list | tuple) else None for row in rows]
    first = lengths[0]
    for index, length in enumerate(lengths):
        if length != first:
            what = "a scalar" if length is None else f"{length} values"
            then = "a scalar" if first is None else f"{first} values"
            return f"row {path}{index} has {what}, row {path}0 has {then}"
    for index, row in enumerate(rows):
        if isinstance(row, list | tuple) and row:
            found = _ragged(row, f"{path}{index}.")
            if found:
                return found
    return ""
