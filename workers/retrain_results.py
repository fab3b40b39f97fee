"""The RetrainResult a trainer answers: built from a fresh version, a stored run or a failure."""

from __future__ import annotations

from producer.messages import ErrorCode, ErrorInfo, RetrainJob, RetrainResult
from registry.entities import ModelVersion, RetrainRun


def from_run(job: RetrainJob, run: RetrainRun) -> RetrainResult:
    """The answer for a run already finished (a redelivered job): ok or its stored error."""
    if run.status == "ok":
        return ok(job.job_id, run, promoted=run.promoted, reason=run.reason)
    code = ErrorCode(run.error_code) if run.error_code in set(ErrorCode) else ErrorCode.INTERNAL
    return error(job.job_id, run.model, code, run.reason or "the run failed")


def ok(
    job_id: str, trained: ModelVersion | RetrainRun, *, promoted: bool, reason: str
) -> RetrainResult:
    """The answer for a version trained and registered, promoted or not."""
    return RetrainResult(
        job_id=job_id,
        status="ok",
        model=trained.model,
        version=trained.version,
        metrics=dict(trained.metrics),
        promoted=promoted,
        reason=reason,
    )


def error(job_id: str, model: str, code: ErrorCode, message: str) -> RetrainResult:
    """The answer for a job that failed: ``code`` and ``message``, also as the reason."""
    return RetrainResult(
        job_id=job_id,
        status="error",
        model=model,
        error=ErrorInfo(code=code, message=message),
        reason=message,
    )
