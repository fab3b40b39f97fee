"""A job inside the batcher: its rows in, checked and grouped; its rows out, checked.

Kafka-free and model-free: :class:`QueuedJob` is what the batcher queues, and the
functions here check a job's inputs, decide which jobs may share a batch
(:func:`group_key`), concatenate a batch and check what the model returned.
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field

import numpy as np

from workers.errors import InferenceError, InvalidInput

Tensors = dict[str, np.ndarray]
InferFn = Callable[[Tensors], Tensors]

# Jobs can share a batch only when they agree on input names, dtypes and trailing shapes.
GroupKey = tuple[tuple[str, str, tuple[int, ...]], ...]


@dataclass(frozen=True, slots=True)
class BatchOutput:
    """One job's answer: its own rows of every output, and how it was served."""

    outputs: Tensors
    batch_size: int
    queue_ms: float
    infer_ms: float


@dataclass(eq=False, slots=True)
class QueuedJob:
    """A job admitted to the batcher; ``future`` gets its answer or its error."""

    inputs: Tensors
    rows: int
    priority: int
    deadline: float | None
    seq: int
    key: GroupKey
    future: asyncio.Future[BatchOutput]
    enqueued: float = field(default_factory=time.monotonic)

    @property
    def order(self) -> tuple[int, int]:
        return (-self.priority, self.seq)

    def expired(self, now: float) -> bool:
        return self.deadline is not None and now >= self.deadline

    def answer(self, result: BatchOutput | BaseException) -> None:
        if self.future.done():
            return
        if isinstance(result, BaseException):
            self.future.set_exception(result)
        else:
            self.future.set_result(result)


def check_inputs(inputs: Mapping[str, np.ndarray]) -> int:
    """Return the job's row count; raise InvalidInput unless every input has it."""
    if not inputs:
        raise InvalidInput("a job needs at least one input")
    counts: dict[str, int] = {}
    for name, array in inputs.items():
        if not isinstance(array, np.ndarray) or array.ndim == 0:
            raise InvalidInput(f"input {name!r} must be an array with a leading row dimension")
        counts[name] = array.shape[0]
    if len(set(counts.values())) != 1:
        raise InvalidInput(f"inputs must have the same number of rows, got {counts}")
    rows = next(iter(counts.values()))
    if rows == 0:
        raise InvalidInput("a job needs at least one row")
    return rows


def group_key(inputs: Mapping[str, np.ndarray]) -> GroupKey:
    """What jobs must agree on to share a batch: input names, dtypes, trailing shapes."""
    if len(inputs) == 1:  # the usual case, without a generator and a sort
        ((name, a),) = inputs.items()
        return ((name, a.dtype.str, a.shape[1:]),)
    return tuple(sorted((name, a.dtype.str, a.shape[1:]) for name, a in inputs.items()))


def concat(jobs: list[QueuedJob]) -> Tensors:
    """A batch's inputs: the jobs' rows one after another, input by input."""
    if len(jobs) == 1:
        return dict(jobs[0].inputs)
    names = jobs[0].inputs.keys()
    return {name: np.concatenate([job.inputs[name] for job in jobs]) for name in names}


def check_outputs(outputs: object, rows: int) -> Tensors:
    """Every output must be an array with exactly one row per batch row."""
    if not isinstance(outputs, Mapping) or not outputs:
        raise InferenceError(
            f"the model returned {type(outputs).__name__}, expected a non-empty dict of arrays"
        )
    checked: Tensors = {}
    for name, value in outputs.items():
        array = np.asarray(value)
        if array.ndim == 0 or array.shape[0] != rows:
            got = "a scalar" if array.ndim == 0 else f"{array.shape[0]} rows"
            raise InferenceError(
                f"the model's output {name!r} has {got} for a batch of {rows} rows; "
                "every output must have one row per input row"
            )
        checked[str(name)] = array
    return checked
