"""Rows to entities: the store hands out frozen dataclasses, never ORM rows."""

from __future__ import annotations

from registry.entities import (
    AliasMove,
    AuditEntry,
    MetricWindow,
    ModelVersion,
    RetrainRun,
    RollbackRecord,
    Schedule,
    Signature,
    Tenant,
)
from registry.tables import (
    AliasEventRow,
    AuditRow,
    MetricWindowRow,
    RetrainRunRow,
    RollbackRow,
    ScheduleRow,
    TenantRow,
    VersionRow,
)

LATENCY_FIELDS = tuple(
    f"{kind}_ms_{q}" for kind in ("queue", "infer") for q in ("p50", "p95", "p99")
)


def version(row: VersionRow, model: str) -> ModelVersion:
    return ModelVersion(
        model=model,
        version=row.version,
        artifact_uri=row.artifact_uri,
        sha256=row.sha256,
        format=row.format,
        signature=Signature.from_dict(row.signature),
        status=row.status,
        parent_version=row.parent_version,
        dataset_hash=row.dataset_hash,
        params=dict(row.params),
        metrics=dict(row.metrics),
        created_by=row.created_by,
        created_at=row.created_at,
        derived_from=row.derived_from,
        method=row.method,
    )


def alias_move(row: AliasEventRow, model: str) -> AliasMove:
    return AliasMove(
        model=model,
        alias=row.alias,
        version=row.to_version,
        previous_version=row.from_version,
        kind=row.kind,
        actor=row.actor,
        reason=row.reason,
        automatic=row.automatic,
        at=row.at,
    )


def window(row: MetricWindowRow, model: str) -> MetricWindow:
    return MetricWindow(
        model=model,
        version=row.version,
        worker=row.worker,
        start=row.window_start,
        end=row.window_end,
        jobs=row.jobs,
        rows=row.rows,
        errors={str(code): int(n) for code, n in row.errors.items()},
        mean_batch_size=row.mean_batch_size,
        rows_per_s=row.rows_per_s,
        **{name: getattr(row, name) for name in LATENCY_FIELDS},
    )


def window_values(item: MetricWindow, model_id: int) -> dict[str, object]:
    return {
        "model_id": model_id,
        "version": item.version,
        "worker": item.worker,
        "window_start": item.start,
        "window_end": item.end,
        "jobs": item.jobs,
        "rows": item.rows,
        "errors": dict(item.errors),
        "mean_batch_size": item.mean_batch_size,
        "rows_per_s": item.rows_per_s,
        **{name: getattr(item, name) for name in LATENCY_FIELDS},
    }


def rollback(row: RollbackRow, model: str) -> RollbackRecord:
    return RollbackRecord(
        model=model,
        alias=row.alias,
        from_version=row.from_version,
        to_version=row.to_version,
        reason=row.reason,
        automatic=row.automatic,
        actor=row.actor,
        at=row.at,
    )


def run(row: RetrainRunRow) -> RetrainRun:
    return RetrainRun(
        job_id=row.job_id,
        model=row.model,
        trigger=row.trigger,
        status=row.status,
        params=dict(row.params),
        version=row.version,
        metrics=dict(row.metrics),
        promoted=row.promoted,
        reason=row.reason,
        error_code=row.error_code,
        started_at=row.started_at,
        finished_at=row.finished_at,
    )


def schedule(row: ScheduleRow) -> Schedule:
    return Schedule(
        id=row.id,
        model=row.model,
        cron=row.cron,
        dataset=None if row.dataset is None else dict(row.dataset),
        params=dict(row.params),
        promote=row.promote,
        enabled=row.enabled,
        next_fire_at=row.next_fire_at,
        last_fired_at=row.last_fired_at,
        created_by=row.created_by,
        created_at=row.created_at,
    )


def audit(row: AuditRow) -> AuditEntry:
    return AuditEntry(
        id=row.id,
        at=row.at,
        actor=row.actor,
        action=row.action,
        model=row.model,
        version=row.version,
        details=dict(row.details),
        tenant=row.tenant,
    )


def tenant(row: TenantRow, models: set[str]) -> Tenant:
    return Tenant(
        name=row.name,
        models=frozenset(models),
        retrain=row.retrain,
        promote_always=row.promote_always,
        principal=row.principal,
        created_at=row.created_at,
    )
