"""What the trainer answers a retrain job: the version it registered, why it failed, or,
for a job delivered again, what its stored run recorded."""

from __future__ import annotations

from producer.messages import ErrorCode, ErrorInfo, RetrainJob, RetrainResult
from registry.entities import ModelVersion, RetrainRun


def from_run(job: RetrainJob, run: RetrainRun) -> RetrainResult:
    """The answer a finished run gives again (a redelivered job is answered alike)."""
    if run.status == "ok":
        return ok_result(job.job_id, run, promoted=run.promoted, reason=run.reason)
    code = ErrorCode(run.error_code) if run.error_code in set(ErrorCode) else ErrorCode.INTERNAL
    return error_result(job.job_id, run.model, code, run.reason or "the run failed")


def ok_result(
    job_id: str, trained: ModelVersion | RetrainRun, *, promoted: bool, reason: str
) -> RetrainResult:
    """A job answered with the version it registered (or its run recorded)."""
    return RetrainResult(
        job_id=job_id,
        status="ok",
        model=trained.model,
        version=trained.version,
        metrics=dict(trained.metrics),
        promoted=promoted,
        reason=reason,
    )


def error_result(job_id: str, model: str, code: ErrorCode, message: str) -> RetrainResult:
    """A job answered with why it produced no version."""
    return RetrainResult(
        job_id=job_id,
        status="error",
        model=model,
        error=ErrorInfo(code=code, message=message),
        reason=message,
    )
