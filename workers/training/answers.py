"""What the trainer answers a retrain job: the version it registered, why it failed, or,
for a job delivered again, what its stored run recorded; and where, and whether its
tenant may ask for it at all (:func:`reply_topic_and_denial`)."""

from __future__ import annotations

from functools import partial

from producer.contract.messages import (
    DecodeError,
    ErrorCode,
    ErrorInfo,
    JobEnvelope,
    RetrainJob,
    RetrainResult,
    decode_envelope,
    encode,
)
from registry.entities import ModelVersion, RetrainRun
from workers.kafka.publisher import Outgoing, Record, without_own_headers
from workers.tenancy.grants import Denial, check_promote, check_retrain
from workers.tenancy.guard import Access


def reply_topic_and_denial(job: RetrainJob, access: Access) -> tuple[str, Denial | None]:
    """Where ``job`` of ``access``'s tenant is answered, and why it is refused before
    the trainer looks at it (None: it may go on): a reply topic outside the tenant's
    namespace (answered on the tenant's results topic instead), an unknown tenant, or
    one without the retrain, model or promote-always grant it needs."""
    if denial := access.outside(job.reply_to):
        return access.namespace.results, denial  # never where the job pointed
    denial = access.denial(job.model, check_retrain, partial(check_promote, mode=job.promote))
    return job.reply_to or access.namespace.results, denial


def outside_namespace(
    record: Record, access: Access
) -> tuple[Outgoing, Denial, JobEnvelope] | None:
    """For a record that is no RetrainJob but names a job_id and a reply topic outside
    its tenant's namespace: the ``UNAUTHORIZED`` answer on the tenant's results topic."""
    try:
        envelope = decode_envelope(record.value or b"")
    except DecodeError:
        return None
    denial = access.outside(envelope.reply_to)
    if denial is None:
        return None
    result = error_result(envelope.job_id, envelope.model, denial.code, denial.message)
    headers = without_own_headers(record.headers)
    answer = Outgoing(access.namespace.results, encode(result), envelope.job_id.encode(), headers)
    return answer, denial, envelope


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
