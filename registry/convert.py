"""Rows to entities: the store hands out frozen dataclasses, never ORM rows.

An entity's field takes the row's attribute of the same name; each converter names only
the fields that differ: renamed columns, JSON columns copied off the row, and the model's
name (a row holds only its id).
"""

from __future__ import annotations

import dataclasses
import functools
from typing import TYPE_CHECKING, Any, TypeVar

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

if TYPE_CHECKING:
    from _typeshed import DataclassInstance

E = TypeVar("E", bound="DataclassInstance")

# A metric window's fields that its row names differently.
_WINDOW_COLUMNS = {"start": "window_start", "end": "window_end"}


@functools.cache
def _field_names(kind: type[DataclassInstance]) -> tuple[str, ...]:
    return tuple(f.name for f in dataclasses.fields(kind))


def _entity(kind: type[E], row: object, **differing: Any) -> E:
    """A ``kind`` built from ``row``'s attributes of the same names as its fields,
    but for the ``differing`` fields, given here."""
    same = {name: getattr(row, name) for name in _field_names(kind) if name not in differing}
    return kind(**same, **differing)


def version(row: VersionRow, model: str) -> ModelVersion:
    return _entity(
        ModelVersion,
        row,
        model=model,
        signature=Signature.from_dict(row.signature),
        params=dict(row.params),
        metrics=dict(row.metrics),
    )


def alias_move(row: AliasEventRow, model: str) -> AliasMove:
    return _entity(
        AliasMove, row, model=model, version=row.to_version, previous_version=row.from_version
    )


def window(row: MetricWindowRow, model: str) -> MetricWindow:
    return _entity(
        MetricWindow,
        row,
        model=model,
        errors={str(code): int(n) for code, n in row.errors.items()},
        client_errors={str(code): int(n) for code, n in (row.client_errors or {}).items()},
        **{name: getattr(row, column) for name, column in _WINDOW_COLUMNS.items()},
    )


def window_values(item: MetricWindow, model_id: int) -> dict[str, object]:
    """The column values of ``item``'s row."""
    values = {
        _WINDOW_COLUMNS.get(name, name): getattr(item, name)
        for name in _field_names(MetricWindow)
        if name != "model"
    }
    errors = {"errors": dict(item.errors), "client_errors": dict(item.client_errors)}
    return {**values, "model_id": model_id, **errors}


def rollback(row: RollbackRow, model: str) -> RollbackRecord:
    return _entity(RollbackRecord, row, model=model)


def run(row: RetrainRunRow) -> RetrainRun:
    return _entity(RetrainRun, row, params=dict(row.params), metrics=dict(row.metrics))


def schedule(row: ScheduleRow) -> Schedule:
    dataset = None if row.dataset is None else dict(row.dataset)
    return _entity(Schedule, row, dataset=dataset, params=dict(row.params))


def audit(row: AuditRow) -> AuditEntry:
    return _entity(AuditEntry, row, details=dict(row.details))


def tenant(row: TenantRow, models: set[str]) -> Tenant:
    return _entity(Tenant, row, models=frozenset(models))
