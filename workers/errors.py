"""The workers' errors, one root, classified by attribute.

Every error carries ``code``, the contract's error code (``producer.contract.messages.ErrorCode``)
to put in the job's Result, and ``retriable``: True when the job itself was fine and
another attempt may succeed. The serving loop reads it (as it reads
``RegistryError.retriable``): a job that fails with a retriable error is not answered;
its record stays uncommitted and is read again after a backoff (the partition is
sought back to it), up to ``WorkerSettings.retry.attempts`` more times; then it is
answered with the error's code. Non-retriable errors are answered at once.

    WorkerError
    ├── InvalidInput      INVALID_INPUT  the job's inputs do not fit the model's signature
    ├── TooLarge          TOO_LARGE      the job has more rows than a worker accepts
    ├── Expired           EXPIRED        the job's deadline passed before it ran
    ├── QueueFull         INTERNAL       the batcher's queue is full (retriable; the
    │                                    serving loop waits for room rather than fail)
    ├── BatcherClosed     INTERNAL       the batcher was closed before the job ran (retriable)
    ├── InferenceError    INTERNAL       the model raised or returned malformed outputs
    ├── RuntimeLoadError  INTERNAL       a model artifact could not be loaded
    ├── ResolveError      (serving.models) no such model, version or alias: its code
    ├── PublishFailed     (kafka.publisher) a record not published after every retry
    ├── Stopped           (kafka.clients) start-up interrupted by the stop event
    ├── GrantsUnavailable (tenancy.grants) the registry could not be asked for grants
    ├── Failure           (training.steps) a retrain job that cannot produce a version:
    │                                    answered with its own ``code`` and ``message``
    └── Refused           (training.allowed) a retrain job asked for what the operator
                                         did not allow: its own ``code`` and ``message``

The first seven are raised by the batcher and the runtimes; the others live beside
the code that raises them (the module in brackets). Training recipes
(:class:`~workers.recipes.base.RecipeError`) and optimisation
(:class:`~workers.optimize.errors.OptimizeError`) keep documented trees of their own.
"""

from __future__ import annotations

from producer.contract.messages import ErrorCode


class WorkerError(Exception):
    """Root of the worker errors; ``code`` is the contract's error code."""

    code: ErrorCode = ErrorCode.INTERNAL
    retriable: bool = False  # True: the job is tried again before it is answered


class InvalidInput(WorkerError):
    """The job's inputs do not match the model's signature; the message says how."""

    code = ErrorCode.INVALID_INPUT


class TooLarge(WorkerError):
    """The job has more rows than ``BatchConfig.max_job_rows``."""

    code = ErrorCode.TOO_LARGE


class Expired(WorkerError):
    """The job's deadline passed before it was put in a batch."""

    code = ErrorCode.EXPIRED


class QueueFull(WorkerError):
    """The batcher holds ``max_queue_rows`` already; pause consuming and retry later.

    The serving loop never lets it reach a job: it waits for room in the queue (and
    pauses polling meanwhile)."""

    retriable = True


class BatcherClosed(WorkerError):
    """The batcher was closed (its version unloaded to make room for another) or its
    scheduler stopped before the job ran; the job is tried again."""

    retriable = True


class InferenceError(WorkerError):
    """Inference raised, or returned outputs that do not match the batch row for row."""


class RuntimeLoadError(WorkerError):
    """A model artifact could not be loaded (missing file, bad format, bad graph)."""
