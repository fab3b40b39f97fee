"""The public wire contract: job and result messages, one JSON object per record.

This module is the single source of truth for the schema in docs/contract.md. Decoding is
strict and happens at the edge: it either returns a frozen, validated message or
raises :class:`DecodeError` naming the offending field. Unknown fields are ignored
so that newer clients can talk to older workers.
"""

from __future__ import annotations

import re
from enum import StrEnum
from typing import Annotated, Any, Literal, TypedDict, TypeVar, Unpack

import msgspec
import numpy as np
import orjson

from producer.contract.errors import ContractError
from producer.contract.names import JOB_ID_PATTERN, MODEL_NAME_PATTERN, NAME_MAX_LENGTH
from producer.contract.outline import top_level_members

PREDICT_SCHEMA = "maas.predict/v1"
RESULT_SCHEMA = "maas.result/v1"
RETRAIN_SCHEMA = "maas.retrain/v1"
RETRAIN_RESULT_SCHEMA = "maas.retrain-result/v1"
CONTROL_SCHEMA = "maas.control/v1"
CAPTURE_SCHEMA = "maas.capture/v1"
FEEDBACK_SCHEMA = "maas.feedback/v1"

DEFAULT_ALIAS = "production"

NonEmptyStr = Annotated[str, msgspec.Meta(min_length=1, max_length=512)]
# Names and job ids are stored by the registry in columns of NAME_MAX_LENGTH characters:
# the rules are :mod:`producer.contract.names`', the registry's too.
ModelName = Annotated[
    str, msgspec.Meta(min_length=1, max_length=NAME_MAX_LENGTH, pattern=MODEL_NAME_PATTERN)
]
JobId = Annotated[
    str, msgspec.Meta(min_length=1, max_length=NAME_MAX_LENGTH, pattern=JOB_ID_PATTERN)
]
# Integers that end up in database columns or in numpy's int64 arithmetic are bounded at
# the edge, so an extreme value is INVALID_INPUT naming the field, not an overflow later.
INT32_MAX = 2**31 - 1
INT64_MAX = 2**63 - 1
Version = Annotated[int, msgspec.Meta(ge=1, le=INT32_MAX)]
EpochMillis = Annotated[int, msgspec.Meta(ge=0, le=INT64_MAX)]
Priority = Annotated[int, msgspec.Meta(ge=-INT32_MAX, le=INT32_MAX)]


class ErrorCode(StrEnum):
    """Error codes carried by a Result's ``error.code``."""

    INVALID_INPUT = "INVALID_INPUT"
    MODEL_NOT_FOUND = "MODEL_NOT_FOUND"
    VERSION_NOT_FOUND = "VERSION_NOT_FOUND"
    EXPIRED = "EXPIRED"
    TOO_LARGE = "TOO_LARGE"
    UNAUTHORIZED = "UNAUTHORIZED"
    INTERNAL = "INTERNAL"


# The codes that answer a client's mistake, not a failure of the model or the service:
# counted apart, never toward a version's error rate, rollback or retraining.
CLIENT_ERROR_CODES = frozenset(
    {
        ErrorCode.INVALID_INPUT,
        ErrorCode.UNAUTHORIZED,
        ErrorCode.TOO_LARGE,
        ErrorCode.EXPIRED,
        ErrorCode.MODEL_NOT_FOUND,
        ErrorCode.VERSION_NOT_FOUND,
    }
)


class DecodeError(ContractError):
    """A record is not a valid message. ``field`` names the offending field."""

    def __init__(self, message: str, *, field: str | None = None) -> None:
        super().__init__(message)
        self.field = field


class ErrorInfo(msgspec.Struct, frozen=True, kw_only=True):
    code: ErrorCode
    message: str


class Timing(msgspec.Struct, frozen=True, kw_only=True):
    queue_ms: float = 0.0
    infer_ms: float = 0.0
    total_ms: float = 0.0


class PredictJob(msgspec.Struct, frozen=True, kw_only=True):
    """A prediction request. ``inputs`` maps input names to rows (leading batch dim)."""

    job_id: JobId
    model: ModelName
    inputs: dict[str, list[Any]]
    schema: str = PREDICT_SCHEMA
    version: Version | None = None
    alias: NonEmptyStr = DEFAULT_ALIAS
    reply_to: NonEmptyStr | None = None
    deadline_ms: EpochMillis | None = None
    priority: Priority = 0
    metadata: dict[str, Any] = {}

    @property
    def rows(self) -> int:
        """Number of rows in the job (validated equal across inputs)."""
        return len(next(iter(self.inputs.values())))


class Result(msgspec.Struct, frozen=True, kw_only=True):
    """The answer to one PredictJob, published on its ``reply_to`` keyed by ``job_id``."""

    job_id: str
    status: Literal["ok", "error"]
    model: str
    version: int | None = None
    outputs: dict[str, Any] | None = None  # numpy arrays in the worker, lists once decoded
    error: ErrorInfo | None = None
    timing: Timing = Timing()
    batch_size: int = 0
    worker: str = ""
    metadata: dict[str, Any] = {}
    schema: str = RESULT_SCHEMA

    @property
    def ok(self) -> bool:
        return self.status == "ok"


class Dataset(msgspec.Struct, frozen=True, kw_only=True):
    """Training data: a ``uri`` (file://, a local path) or a built-in dataset ``name``."""

    uri: str | None = None
    name: str | None = None


PROMOTE_MODES = ("gate", "never", "always")  # RetrainJob.promote's values


class RetrainJob(msgspec.Struct, frozen=True, kw_only=True):
    job_id: JobId
    model: ModelName
    schema: str = RETRAIN_SCHEMA
    recipe: NonEmptyStr | None = None
    dataset: Dataset | None = None
    params: dict[str, Any] = {}
    trigger: Literal["manual", "schedule", "metric", "drift", "quality"] = "manual"
    promote: Literal["gate", "never", "always"] = "gate"
    reply_to: NonEmptyStr | None = None
    deadline_ms: EpochMillis | None = None  # a trainer that takes it later answers EXPIRED


class RetrainResult(msgspec.Struct, frozen=True, kw_only=True):
    job_id: str
    status: Literal["ok", "error"]
    model: str
    version: int | None = None
    metrics: dict[str, float] = {}
    promoted: bool = False
    reason: str = ""
    error: ErrorInfo | None = None
    schema: str = RETRAIN_RESULT_SCHEMA

    @property
    def ok(self) -> bool:
        return self.status == "ok"


class ControlEvent(msgspec.Struct, frozen=True, kw_only=True):
    """A registry event on the control topic: a model's (promote, rollback, archive,
    register; ``monitor``: its capture policy changed; ``pool``: a pinned worker pool
    announcing the models in ``model``, ``+``-separated) or a tenant's (``tenant``: added, granted, revoked or removed; ``model``
    empty, ``reason`` says which change)."""

    event: Literal["register", "promote", "rollback", "archive", "tenant", "monitor", "pool"]
    model: str = ""
    tenant: str | None = None
    alias: str | None = None
    version: int | None = None
    previous_version: int | None = None
    actor: str = ""
    reason: str = ""
    at_ms: int = 0
    schema: str = CONTROL_SCHEMA
    # The publisher's registry (RegistrySettings.identity): a worker reading another one
    # says so, since a model registered there is unknown to it.
    registry: str | None = None


# A label: a class (int or str) for classifiers, a number for regressors.
Label = int | float | str
RowIndex = Annotated[int, msgspec.Meta(ge=0, le=INT32_MAX)]


class CaptureRecord(msgspec.Struct, frozen=True, kw_only=True):
    """What a worker answered, on the capture topic keyed by ``job_id`` (monitoring):
    ``inputs`` as the model's capture policy says (all, none, or named fields hashed)."""

    job_id: JobId
    model: ModelName
    version: Version
    status: Literal["ok", "error"]
    ts_ms: EpochMillis
    tenant: str | None = None
    alias: str | None = None
    inputs: dict[str, Any] | None = None
    outputs: dict[str, Any] | None = None
    timing: Timing = Timing()
    schema: str = CAPTURE_SCHEMA


class Feedback(msgspec.Struct, frozen=True, kw_only=True):
    """Ground truth for an answered job, on the feedback topic keyed by ``job_id``:
    ``labels`` one per input row, or ``row`` and ``label`` for one row."""

    job_id: JobId
    labels: list[Label] | None = None
    row: RowIndex | None = None
    label: Label | None = None
    ts_ms: EpochMillis = 0
    schema: str = FEEDBACK_SCHEMA

    def by_row(self) -> dict[int, Label]:
        """The labels by row index."""
        if self.labels is not None:
            return dict(enumerate(self.labels))
        if self.row is None or self.label is None:  # decode_feedback refuses this
            return {}
        return {self.row: self.label}


class _Schema(msgspec.Struct, frozen=True):
    """Just the ``schema`` field: which kind of message a record is."""

    schema: str | None = None


class JobEnvelope(msgspec.Struct, frozen=True):
    """The few fields needed to answer a job whose full decoding failed."""

    job_id: JobId
    model: str = ""
    reply_to: NonEmptyStr | None = None
    metadata: dict[str, Any] = {}


def _encode_tensor(value: Any) -> Any:
    """numpy arrays and scalars (model outputs) as JSON numbers and nested arrays.

    float32 takes its shortest form that reads back as the same float32 (``0.1``, not
    ``0.10000000149011612``): an embedding is about half the bytes and parses several
    times faster, and nothing is lost. NaN and infinities become null, as msgspec does.
    """
    if isinstance(value, np.ndarray):
        if value.ndim and value.dtype.kind in "fiub":
            contiguous = value if value.flags.c_contiguous else np.ascontiguousarray(value)
            try:  # not contextlib.suppress: this runs per output of every job
                return msgspec.Raw(orjson.dumps(contiguous, option=orjson.OPT_SERIALIZE_NUMPY))
            except orjson.JSONEncodeError:  # a dtype orjson lacks
                pass
        return value.tolist()
    if isinstance(value, np.generic):
        return value.item()
    raise TypeError(f"cannot encode {type(value).__name__} as JSON")


_encoder = msgspec.json.Encoder(enc_hook=_encode_tensor)
_PATH = re.compile(r" - at `\$\.?(?P<path>[^`]*)`$")
_MISSING = re.compile(r"missing required field `(?P<path>[^`]*)`")


def encode(message: msgspec.Struct) -> bytes:
    """Encode any contract message to UTF-8 JSON bytes."""
    return _encoder.encode(message)


_DECODERS: dict[type[Any], msgspec.json.Decoder[Any]] = {}
T = TypeVar("T")


def _decode(raw: bytes | str, kind: type[T], schema: str | None) -> T:
    decoder = _DECODERS.get(kind)
    if decoder is None:
        decoder = _DECODERS[kind] = msgspec.json.Decoder(kind)
    try:
        message: T = decoder.decode(raw)
    except msgspec.ValidationError as exc:
        text = str(exc)
        match = _PATH.search(text) or _MISSING.search(text)
        field = match.group("path") if match else None
        detail = _PATH.sub("", text)
        where = f"field `{field}`" if field else "message"
        raise DecodeError(f"invalid {where}: {detail}", field=field) from exc
    except (msgspec.DecodeError, UnicodeDecodeError) as exc:
        raise DecodeError(f"not valid UTF-8 JSON: {exc}") from exc
    except RecursionError as exc:
        raise DecodeError("JSON nested too deeply") from exc
    found = getattr(message, "schema", schema)
    if schema is not None and found != schema:
        raise DecodeError(f"field `schema` must be {schema!r}, got {found!r}", field="schema")
    return message


def decode_predict(raw: bytes | str) -> PredictJob:
    """Decode and validate a PredictJob; raises :class:`DecodeError`."""
    job = _decode(raw, PredictJob, PREDICT_SCHEMA)
    validate_inputs(job.inputs)
    return job


def validate_inputs(inputs: dict[str, list[Any]]) -> int:
    """Check that ``inputs`` is non-empty with the same row count per input; return it."""
    if len(inputs) == 1:  # the usual case, without the dict and the set below
        ((name, rows),) = inputs.items()
        if not rows:
            raise DecodeError(f"input `{name}` has no rows", field=f"inputs.{name}")
        return len(rows)
    if not inputs:
        raise DecodeError("field `inputs` must name at least one input", field="inputs")
    counts = {name: len(rows) for name, rows in inputs.items()}
    for name, count in counts.items():
        if count == 0:
            raise DecodeError(f"input `{name}` has no rows", field=f"inputs.{name}")
    if len(set(counts.values())) > 1:
        raise DecodeError(f"inputs must have the same number of rows, got {counts}", field="inputs")
    return next(iter(counts.values()))


def decode_envelope(raw: bytes | str) -> JobEnvelope:
    """Decode just enough of a broken job to answer it; raises :class:`DecodeError`.

    A well-formed JSON object whose other fields are of the wrong type, or nested too
    deeply for the decoder, still yields its ``job_id`` (and ``model``, ``reply_to``
    and ``metadata`` where those decode on their own), so that such a job is answered
    rather than dead-lettered.
    """
    try:
        return _decode(raw, JobEnvelope, None)
    except DecodeError as exc:
        if not isinstance(exc.__cause__, msgspec.ValidationError | RecursionError):
            raise  # not JSON at all: nothing to salvage
        salvaged = _salvage_envelope(raw.encode() if isinstance(raw, str) else raw)
        if salvaged is None:
            raise
        return salvaged


class _Address(msgspec.Struct, frozen=True):
    job_id: JobId
    model: str = ""
    reply_to: NonEmptyStr | None = None


def decode_address(raw: bytes | str) -> JobEnvelope:
    """Decode only where a job's answer goes (``job_id``, ``model``, ``reply_to``), for a
    record too large to echo: its metadata is left out. Raises :class:`DecodeError`."""
    address = _decode(raw, _Address, None)
    return JobEnvelope(address.job_id, address.model, address.reply_to)


def _salvage_envelope(raw: bytes) -> JobEnvelope | None:
    """The envelope's fields decoded one by one (see :func:`decode_envelope`)."""
    members = top_level_members(raw)
    if members is None:
        return None

    def field(name: bytes, kind: Any, default: Any) -> Any:
        text = members.get(b'"' + name + b'"')
        if text is None:
            return default
        try:
            return msgspec.json.decode(text, type=kind)
        except (msgspec.DecodeError, RecursionError):  # ValidationError is a DecodeError
            return default

    job_id = field(b"job_id", JobId, None)
    if job_id is None:
        return None
    return JobEnvelope(
        job_id,
        field(b"model", str, ""),
        field(b"reply_to", NonEmptyStr | None, None),
        field(b"metadata", dict[str, Any], {}),
    )


def decode_result(raw: bytes | str) -> Result:
    return _decode(raw, Result, RESULT_SCHEMA)


def decode_retrain(raw: bytes | str) -> RetrainJob:
    job = _decode(raw, RetrainJob, RETRAIN_SCHEMA)
    if job.dataset is not None and not (job.dataset.uri or job.dataset.name):
        raise DecodeError("field `dataset` needs a `uri` or a `name`", field="dataset")
    return job


def decode_retrain_result(raw: bytes | str) -> RetrainResult:
    return _decode(raw, RetrainResult, RETRAIN_RESULT_SCHEMA)


def decode_control(raw: bytes | str) -> ControlEvent:
    return _decode(raw, ControlEvent, CONTROL_SCHEMA)


def decode_capture(raw: bytes | str) -> CaptureRecord:
    return _decode(raw, CaptureRecord, CAPTURE_SCHEMA)


def decode_feedback(raw: bytes | str) -> Feedback:
    """Decode a Feedback: ``labels`` (at least one), or ``row`` with ``label``."""
    feedback = _decode(raw, Feedback, FEEDBACK_SCHEMA)
    single = feedback.row is not None or feedback.label is not None
    if feedback.labels is not None:
        if single:
            raise DecodeError("give `labels`, or `row` and `label`, not both", field="labels")
        if not feedback.labels:
            raise DecodeError("field `labels` must have one label per input row", field="labels")
    elif feedback.row is None or feedback.label is None:
        raise DecodeError(
            "feedback needs `labels` (one per input row) or `row` and `label`", field="labels"
        )
    return feedback


def decode_any_reply(raw: bytes | str) -> Result | RetrainResult:
    """Decode a record from a reply topic, which carries both result kinds."""
    schema = _decode(raw, _Schema, None).schema
    if schema == RETRAIN_RESULT_SCHEMA:
        return decode_retrain_result(raw)
    return decode_result(raw)


class ErrorResultFields(TypedDict, total=False):
    """The optional fields of an error Result, as :func:`error_result` takes them."""

    model: str
    version: int | None
    metadata: dict[str, Any] | None
    worker: str
    timing: Timing | None


def error_result(
    job_id: str, code: ErrorCode, message: str, **fields: Unpack[ErrorResultFields]
) -> Result:
    """Build an error Result: ``message`` says what was wrong and how to fix it."""
    return Result(
        job_id=job_id,
        status="error",
        model=fields.get("model", ""),
        version=fields.get("version"),
        error=ErrorInfo(code=code, message=message),
        metadata=fields.get("metadata") or {},
        worker=fields.get("worker", ""),
        timing=fields.get("timing") or Timing(),
    )
