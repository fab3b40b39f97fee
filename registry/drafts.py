"""New versions: a :class:`Draft` of one, staged (artifact inspected and stored) before
its transaction, then written inside it, numbered after the model's latest and audited.

A version may be derived from another of the same model (``derived_from``) by a
``method`` such as quantisation, instead of being trained or uploaded.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from sqlalchemy import func, select
from sqlalchemy.orm import Session

from registry.artifacts import ArtifactStore, inspect
from registry.rows import audit, find_model, version_row
from registry.tables import ModelRow, ReferenceProfileRow, VersionRow


@dataclass(frozen=True, slots=True)
class Draft:
    """A version to register with :meth:`~registry.models.ModelStore.register` (or, two
    at once, :meth:`~registry.models.ModelStore.register_derived`): its artifact and what
    to record with it (see :class:`~registry.entities.ModelVersion`). ``derived_from``
    and ``method`` go together: the version whose artifact this one was made from, and
    how (``register_derived`` fills in ``derived_from`` of the second draft itself)."""

    artifact: Path
    reason: str = ""
    promote: bool = False
    parent_version: int | None = None
    dataset_hash: str | None = None
    params: dict[str, Any] = field(default_factory=dict)
    metrics: dict[str, Any] = field(default_factory=dict)
    derived_from: int | None = None
    method: str | None = None
    reference: ReferenceDraft | None = None


@dataclass(frozen=True, slots=True)
class ReferenceDraft:
    """The reference profile a version is registered with (JSON, the monitor's shape):
    how many rows it summarises and where they came from."""

    rows: int
    source: str
    profile: str


@dataclass(frozen=True, slots=True)
class NewVersion:
    """Everything registering a version writes, gathered before the transaction starts."""

    name: str
    artifact_uri: str
    sha256: str
    format: str
    signature: dict[str, Any]
    actor: str
    reason: str
    parent_version: int | None
    dataset_hash: str | None
    params: dict[str, Any] = field(default_factory=dict)
    metrics: dict[str, Any] = field(default_factory=dict)
    promote: bool = False
    derived_from: int | None = None
    method: str | None = None
    reference: ReferenceDraft | None = None


def stage(artifacts: ArtifactStore, name: str, draft: Draft, actor: str) -> NewVersion:
    """Inspect and store the draft's artifact: the work done before the transaction."""
    fmt, signature = inspect(draft.artifact)
    uri, sha = artifacts.put(draft.artifact)
    return NewVersion(
        name=name,
        artifact_uri=uri,
        sha256=sha,
        format=fmt,
        signature=signature.to_dict(),
        actor=actor,
        reason=draft.reason,
        parent_version=draft.parent_version,
        dataset_hash=draft.dataset_hash,
        params=dict(draft.params),
        metrics=dict(draft.metrics),
        promote=draft.promote,
        derived_from=draft.derived_from,
        method=draft.method,
        reference=draft.reference,
    )


def lock_or_create_model(session: Session, name: str, actor: str) -> ModelRow:
    """The model row named ``name``, locked; created when there is none."""
    row = find_model(session, name, lock=True)
    if row is None:
        row = ModelRow(name=name, created_by=actor)
        session.add(row)
        session.flush()  # IntegrityError if another writer created it first: retried
    return row


def add_version(session: Session, model: ModelRow, new: NewVersion) -> VersionRow:
    """The next version of ``model``, numbered after the latest and audited;
    :class:`~registry.errors.VersionNotFound` if ``new.derived_from`` names none."""
    if new.derived_from is not None:
        version_row(session, model, new.derived_from)
    latest = session.scalar(
        select(func.max(VersionRow.version)).where(VersionRow.model_id == model.id)
    )
    row = VersionRow(
        model_id=model.id,
        version=(latest or 0) + 1,
        artifact_uri=new.artifact_uri,
        sha256=new.sha256,
        format=new.format,
        signature=new.signature,
        status="ready",
        parent_version=new.parent_version,
        dataset_hash=new.dataset_hash,
        params=new.params,
        metrics=new.metrics,
        created_by=new.actor,
        derived_from=new.derived_from,
        method=new.method,
    )
    session.add(row)
    session.flush()
    if new.reference is not None:
        session.add(
            ReferenceProfileRow(
                model_id=model.id,
                version=row.version,
                rows=new.reference.rows,
                source=new.reference.source[:200],
                profile=new.reference.profile,
                created_by=new.actor,
            )
        )
    lineage = {} if new.method is None else {"derived_from": new.derived_from, "method": new.method}
    audit(
        session,
        new.actor,
        "register",
        new.name,
        row.version,
        reason=new.reason,
        sha256=new.sha256,
        format=new.format,
        **lineage,
    )
    return row
