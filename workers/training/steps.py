"""The steps of a retrain job that run in a worker thread: training and int8 planning.

Every failure of a step becomes the job's :class:`Failure`, answered with an error
code and a message that carries nothing read from the data (the log has the detail).
"""

from __future__ import annotations

import time
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

import structlog
from prometheus_client import Histogram

from producer.contract.messages import ErrorCode
from workers.errors import WorkerError
from workers.optimize import OptimizeError
from workers.optimize.retrain import Plan, Quantize, plan
from workers.recipes import Recipe, RecipeError, TrainedModel, TrainRequest

log = structlog.get_logger(__name__)

TRAINING = Histogram(
    "maas_retrain_seconds",
    "Time spent training a model, evaluation and export included",
    ["model"],
    buckets=(1, 5, 15, 30, 60, 120, 300, 600, 1200, 1800, 3600, 7200),
)


class Failure(WorkerError):
    """A job that cannot produce a version: answered with ``code`` and ``message``."""

    def __init__(self, code: ErrorCode, message: str) -> None:
        super().__init__(message)
        self.code = code
        self.message = message


@contextmanager
def job_step(step: str, prefix: str = "") -> Iterator[None]:
    """Make a failure of ``step`` (training, quantisation) the job's :class:`Failure`,
    whose message carries nothing read from the data (the log has the whole story)."""
    try:
        yield
    except (RecipeError, OptimizeError) as exc:
        log.warning(f"{step} failed", error=str(exc))
        public = exc.public if isinstance(exc, RecipeError) else str(exc)
        raise Failure(ErrorCode.INVALID_INPUT, prefix + public) from exc
    except Exception as exc:
        log.exception(f"{step} crashed")
        message = f"{step} failed ({type(exc).__name__}); the trainer's log says why"
        raise Failure(ErrorCode.INTERNAL, message) from exc


def train(recipe: Recipe, request: TrainRequest, workdir: Path) -> TrainedModel:
    """Train in this (worker) thread."""
    started = time.perf_counter()
    with job_step("training"):
        trained = recipe.train(request, workdir)
    seconds = time.perf_counter() - started
    TRAINING.labels(request.model).observe(seconds)
    log.info(
        "trained",
        recipe=recipe.name,
        seconds=round(seconds, 2),
        metrics={k: trained.metrics[k] for k in ("accuracy",) if k in trained.metrics},
    )
    return trained


def plan_int8(
    request: TrainRequest, trained: TrainedModel, quantize: Quantize, workdir: Path
) -> Plan:
    """Quantise and measure the trained model on the rows the recipe held out of the
    request's (confined) dataset."""
    with job_step("quantisation", "quantising the trained model failed: "):
        return plan(trained, quantize, request.dataset, workdir)
