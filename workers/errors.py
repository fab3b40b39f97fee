"""Errors raised by the batcher and the runtimes, classified by attribute.

Every error carries ``code``, the contract's error code (``producer.messages.ErrorCode``)
to put in the job's Result, and ``retriable``: True when the job itself was fine and
another attempt (another worker, a later version) may succeed, so the serving loop can
leave its offset uncommitted rather than answer it with an error.

    WorkerError
    ├── InvalidInput      INVALID_INPUT  the job's inputs do not fit the model's signature
    ├── TooLarge          TOO_LARGE      the job has more rows than a worker accepts
    ├── Expired           EXPIRED        the job's deadline passed before it ran
    ├── QueueFull         INTERNAL       the batcher's queue is full (retriable)
    ├── BatcherClosed     INTERNAL       the batcher was closed before the job ran (retriable)
    ├── InferenceError    INTERNAL       the model raised or returned malformed outputs
    └── RuntimeLoadError  INTERNAL       a model artifact could not be loaded
"""

from __future__ import annotations

from producer.messages import ErrorCode


class WorkerError(Exception):
    """Root of the worker errors; ``code`` is the contract's error code."""

    code: ErrorCode = ErrorCode.INTERNAL
    retriable: bool = False


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
    """The batcher holds ``max_queue_rows`` already; pause consuming and retry later."""

    retriable = True


class BatcherClosed(WorkerError):
    """The batcher was closed while the job waited; it never ran."""

    retriable = True


class InferenceError(WorkerError):
    """Inference raised, or returned outputs that do not match the batch row for row."""


class RuntimeLoadError(WorkerError):
    """A model artifact could not be loaded (missing file, bad format, bad graph)."""
