"""Plain, frozen entities returned by the registry. Never ORM rows."""

from __future__ import annotations

from dataclasses import dataclass, field
from datetime import datetime
from pathlib import Path
from typing import Any
from urllib.parse import urlparse
from urllib.request import url2pathname

# Shapes use None (or a symbolic name) for dynamic dimensions, as ONNX does.
Dim = int | str | None


def shape_text(shape: tuple[Dim, ...]) -> str:
    """``[?,64]``: a shape as the CLI and error messages write it."""
    return f"[{','.join('?' if d is None else str(d) for d in shape)}]"


@dataclass(frozen=True, slots=True)
class TensorSpec:
    """One named input or output of a model: numpy dtype name and shape."""

    name: str
    dtype: str
    shape: tuple[Dim, ...]

    def to_dict(self) -> dict[str, Any]:
        return {"name": self.name, "dtype": self.dtype, "shape": list(self.shape)}

    def describe(self) -> str:
        """``x: float32[?,64]``: name, dtype and shape, ``?`` for an open dimension."""
        return f"{self.name}: {self.dtype}{shape_text(self.shape)}"

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> TensorSpec:
        return cls(name=data["name"], dtype=data["dtype"], shape=tuple(data["shape"]))


@dataclass(frozen=True, slots=True)
class Signature:
    """A model's inputs and outputs; ``text_input`` names the input fed by a tokenizer."""

    inputs: tuple[TensorSpec, ...]
    outputs: tuple[TensorSpec, ...]
    text_input: str | None = None

    def describe(self) -> str:
        """``x: float32[?,64] -> probabilities: float32[?,10], label: int64[?]``."""
        text = " (text)" if self.text_input else ""
        inputs = ", ".join(t.describe() for t in self.inputs)
        return f"{inputs} -> {', '.join(t.describe() for t in self.outputs)}{text}"

    def to_dict(self) -> dict[str, Any]:
        return {
            "inputs": [t.to_dict() for t in self.inputs],
            "outputs": [t.to_dict() for t in self.outputs],
            "text_input": self.text_input,
        }

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> Signature:
        return cls(
            inputs=tuple(TensorSpec.from_dict(t) for t in data["inputs"]),
            outputs=tuple(TensorSpec.from_dict(t) for t in data["outputs"]),
            text_input=data.get("text_input"),
        )


@dataclass(frozen=True, slots=True)
class Model:
    """A named model; its versions are numbered 1, 2, 3, ..."""

    name: str
    created_by: str
    created_at: datetime


@dataclass(frozen=True, slots=True)
class ModelVersion:
    """One immutable, content-addressed version of a model and its lineage.

    ``parent_version`` is the version that was in production when this one was trained;
    ``derived_from`` the version whose artifact this one was made from, by ``method``
    (e.g. ``int8-dynamic``), without training.
    """

    model: str
    version: int
    artifact_uri: str
    sha256: str
    format: str
    signature: Signature
    status: str
    parent_version: int | None
    dataset_hash: str | None
    params: dict[str, Any]
    metrics: dict[str, Any]
    created_by: str
    created_at: datetime
    derived_from: int | None = None
    method: str | None = None

    @property
    def path(self) -> Path:
        """Local path of the artifact: the model file, or the directory holding it."""
        parsed = urlparse(self.artifact_uri)
        if parsed.scheme not in ("", "file"):
            raise ValueError(f"artifact {self.artifact_uri} is not a local file URI")
        return Path(url2pathname(parsed.path))


@dataclass(frozen=True, slots=True)
class ModelSummary:
    """One line of ``maas models list``."""

    name: str
    n_versions: int
    latest_version: int | None
    aliases: dict[str, int]


@dataclass(frozen=True, slots=True)
class AliasMove:
    """An alias moved to ``version`` from ``previous_version`` (None: a new alias)."""

    model: str
    alias: str
    version: int
    previous_version: int | None
    kind: str  # "promote" or "rollback"
    actor: str
    reason: str
    automatic: bool
    at: datetime

    @property
    def moved(self) -> bool:
        """False for a promotion of the version the alias already held: nothing changed,
        nothing was recorded (a self-move is no history and nothing to roll back to)."""
        return self.previous_version != self.version


@dataclass(frozen=True, slots=True)
class MetricWindow:
    """Serving metrics of one model version on one worker over one time window."""

    model: str
    version: int
    worker: str
    start: datetime
    end: datetime
    jobs: int
    rows: int
    errors: dict[str, int] = field(default_factory=dict)  # the model's or service's, by code
    queue_ms_p50: float = 0.0
    queue_ms_p95: float = 0.0
    queue_ms_p99: float = 0.0
    infer_ms_p50: float = 0.0
    infer_ms_p95: float = 0.0
    infer_ms_p99: float = 0.0
    mean_batch_size: float = 0.0
    rows_per_s: float = 0.0
    # Jobs answered with a client's mistake (INVALID_INPUT, UNAUTHORIZED, ...), by code:
    # counted apart, never toward the error rate, rollback or retraining.
    client_errors: dict[str, int] = field(default_factory=dict)

    @property
    def n_errors(self) -> int:
        """Jobs the model or the service failed: what error rates are made of."""
        return sum(self.errors.values())

    @property
    def n_client_errors(self) -> int:
        return sum(self.client_errors.values())


@dataclass(frozen=True, slots=True)
class RollbackRecord:
    """An alias rolled back from ``from_version`` to ``to_version``."""

    model: str
    alias: str
    from_version: int
    to_version: int
    reason: str
    automatic: bool
    actor: str
    at: datetime


@dataclass(frozen=True, slots=True)
class RetrainRun:
    """One retraining job, identified by its ``job_id`` (idempotent)."""

    job_id: str
    model: str
    trigger: str
    status: str  # "running", "ok" or "error"
    params: dict[str, Any]
    version: int | None
    metrics: dict[str, Any]
    promoted: bool
    reason: str
    error_code: str | None  # what an "error" run failed with (a Result's error.code)
    started_at: datetime
    finished_at: datetime | None
    attempts: int = 1  # how often a trainer started it (a crash leaves it to start again)


@dataclass(frozen=True, slots=True)
class Schedule:
    """A cron trigger that publishes retraining jobs for ``model``."""

    id: int
    model: str
    cron: str
    dataset: dict[str, Any] | None
    params: dict[str, Any]
    promote: str  # "gate", "never" or "always"
    enabled: bool
    next_fire_at: datetime
    last_fired_at: datetime | None
    created_by: str
    created_at: datetime

    def job_id(self, due: datetime) -> str:
        """The retrain job id of the fire due at ``due``: the same for every scheduler."""
        return f"schedule-{self.id}-{due.strftime('%Y%m%dT%H%M%SZ')}"


@dataclass(frozen=True, slots=True)
class AuditEntry:
    """Who changed what, when and why."""

    id: int
    at: datetime
    actor: str
    action: str
    model: str | None
    version: int | None
    details: dict[str, Any]
    tenant: str | None = None  # the tenant changed, or whose job was refused


@dataclass(frozen=True, slots=True)
class Tenant:
    """A tenant: a namespace of topics (``maas.<name>.*``) and what the operator granted it.

    ``models``: the models its jobs may name; ``retrain``: it may retrain them (through
    its retrain topic); ``promote_always``: its retrain jobs may ask ``promote:
    "always"`` (skip the gate); ``principal``: the Kafka principal its ACLs were created
    for, if any.
    """

    name: str
    models: frozenset[str]
    retrain: bool
    promote_always: bool
    principal: str | None
    created_at: datetime

    def may_use(self, model: str) -> bool:
        """Whether this tenant's jobs may name ``model``."""
        return model in self.models


@dataclass(frozen=True, slots=True)
class Token:
    """A tenant's bearer token for the gateway, as listed: never the secret itself."""

    id: str
    tenant: str
    created_by: str
    created_at: datetime
    revoked_at: datetime | None = None

    @property
    def active(self) -> bool:
        return self.revoked_at is None


@dataclass(frozen=True, slots=True)
class Refusal:
    """A job refused for a tenant (``None``: the default tenant), for the audit log.

    ``reason`` is a short code saying why (e.g. ``model-not-granted``); ``suppressed``
    counts the repeats of the same refusal that were not recorded one by one (the
    worker's rate limit folds them into this entry).
    """

    tenant: str | None
    reason: str
    model: str | None = None
    job_id: str | None = None
    suppressed: int = 0
