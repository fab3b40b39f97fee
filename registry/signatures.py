"""Whether one version can take another's place behind an alias: the signature check.

Clients send a model's inputs by name, dtype and shape, and read its outputs by name.
A version that breaks either for the version an alias serves now would fail every
call of every client, so moving the alias to it (a promotion by hand or by the
evaluation gate, a rollback to it, registering it with ``promote``) is refused with
:class:`~registry.errors.IncompatibleSignature` unless forced. What may change freely:
shapes where either side leaves a dimension open, outputs added, output shapes (a
retrained classifier may know more classes). A text model is called by its text
input alone, so its token inputs are its own business.
"""

from __future__ import annotations

from registry.entities import Dim, Signature, TensorSpec, shape_text
from registry.errors import IncompatibleSignature


def differences(serving: Signature, candidate: Signature) -> list[str]:
    """What in ``candidate`` would break the clients of ``serving``; empty if nothing."""
    if serving.text_input is not None or candidate.text_input is not None:
        problems = _text_input(serving.text_input, candidate.text_input)
    else:
        problems = _inputs(serving.inputs, candidate.inputs)
    return problems + _outputs(serving.outputs, candidate.outputs)


def check_replaces(
    serving: Signature, candidate: Signature, *, what: str, instead_of: str, force_hint: str
) -> None:
    """Raise :class:`IncompatibleSignature` when ``candidate`` cannot serve the clients of
    ``serving``; the message names both signatures and ends with ``force_hint``."""
    problems = differences(serving, candidate)
    if problems:
        raise IncompatibleSignature(
            f"{what} would break the clients of {instead_of}: {'; '.join(problems)}. "
            f"{instead_of} takes {serving.describe()}; {what} takes {candidate.describe()}. "
            f"{force_hint}"
        )


def _text_input(serving: str | None, candidate: str | None) -> list[str]:
    if serving == candidate:
        return []
    if candidate is None:
        return [f"it takes tensors, not texts in {serving!r}"]
    if serving is None:
        return [f"it takes texts in {candidate!r}, not tensors"]
    return [f"it takes texts in {candidate!r}, not in {serving!r}"]


def _inputs(serving: tuple[TensorSpec, ...], candidate: tuple[TensorSpec, ...]) -> list[str]:
    problems = _tensors("input", serving, candidate, shapes=True)
    known = {spec.name for spec in serving}
    extra = [spec.name for spec in candidate if spec.name not in known]
    return problems + [f"it needs input {name!r}, which clients do not send" for name in extra]


def _outputs(serving: tuple[TensorSpec, ...], candidate: tuple[TensorSpec, ...]) -> list[str]:
    return _tensors("output", serving, candidate, shapes=False)


def _tensors(
    kind: str,
    serving: tuple[TensorSpec, ...],
    candidate: tuple[TensorSpec, ...],
    *,
    shapes: bool,
) -> list[str]:
    """How the candidate's ``kind`` tensors fall short of the serving version's: one
    missing, of another dtype or (when ``shapes``) of a shape that does not fit."""
    theirs = {spec.name: spec for spec in candidate}
    problems = []
    for spec in serving:
        new = theirs.get(spec.name)
        if new is None:
            problems.append(f"it has no {kind} {spec.name!r}")
        elif new.dtype != spec.dtype:
            problems.append(f"{kind} {spec.name!r} is {new.dtype}, not {spec.dtype}")
        elif shapes and not _shapes_fit(spec.shape, new.shape):
            problems.append(
                f"{kind} {spec.name!r} has shape {shape_text(new.shape)}, "
                f"not {shape_text(spec.shape)}"
            )
    return problems


def _shapes_fit(serving: tuple[Dim, ...], candidate: tuple[Dim, ...]) -> bool:
    """Same rank, and every dimension equal or left open by either side."""
    return len(serving) == len(candidate) and all(
        a == b or not isinstance(a, int) or not isinstance(b, int)
        for a, b in zip(serving, candidate, strict=True)
    )
