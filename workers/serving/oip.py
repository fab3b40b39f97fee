"""OIP records on the predict topics: read into a job, answered as an InferenceResponse.

A record is an Open Inference Protocol request when its headers say so (``content-type:
application/vnd.oip.v2+json``, the binary layout's ``inference-header-content-length``,
or a model named in ``maas-model`` / ``mlserver-model``), or, without those, when its
value has an InferenceRequest's shape (see the edge). It becomes an :class:`OipJob`, a
PredictJob like any other (batched, versioned, tenancy and metrics alike) that also
carries the decoded request, so that its answer is written the way the client asked:
an InferenceResponse, JSON or binary, keyed by the request id, with the CloudEvents
headers MLServer sets; an error is ``{"error": "..."}`` with ``maas-error-code``. A
header ``maas-deadline-ms`` gives the job its ``deadline_ms``.
"""

from __future__ import annotations

import functools
import re
import uuid
from collections.abc import Sequence
from typing import Any

import msgspec
import numpy as np

from producer.contract.messages import (
    DEFAULT_ALIAS,
    DecodeError,
    ErrorCode,
    JobEnvelope,
    PredictJob,
    Result,
)
from producer.contract.names import MODEL_NAME_PATTERN
from producer.contract.oip import (
    CONTENT_TYPE,
    HEADER_LENGTH,
    OipDecodeError,
    Request,
    decode_request,
    encode_error,
    encode_response,
)
from workers.errors import WorkerError
from workers.kafka.publisher import Outgoing, Record, without_own_headers

__all__ = [
    "DEADLINE_HEADER",
    "ERROR_HEADER",
    "MODEL_HEADERS",
    "REPLY_HEADER",
    "VERSION_HEADERS",
    "OipEnvelope",
    "OipJob",
    "OipRefusal",
    "OipUnreadable",
    "answer",
    "envelope_of",
    "marked",
    "read",
]

MODEL_HEADERS = ("maas-model", "mlserver-model")
VERSION_HEADERS = ("maas-version", "mlserver-version")
REPLY_HEADER = "maas-reply-to"
DEADLINE_HEADER = "maas-deadline-ms"
ERROR_HEADER = "maas-error-code"
RESPONSE_TYPE = "io.seldon.serving.inference.response"
_NAME = re.compile(MODEL_NAME_PATTERN)
_CONTENT_TYPE = ("content-type", CONTENT_TYPE.encode())
_MARKERS = frozenset({HEADER_LENGTH, *MODEL_HEADERS})
# Request headers that describe the request itself, not echoed on its answer.
_NOT_ECHOED = frozenset(
    {"content-type", REPLY_HEADER, DEADLINE_HEADER, *_MARKERS, *VERSION_HEADERS}
)


class OipJob(PredictJob, frozen=True, kw_only=True):
    """A PredictJob read from an OIP record; ``request`` says how to answer it."""

    request: Any = None  # the decoded producer.contract.oip.Request


class OipEnvelope(JobEnvelope, frozen=True):
    """The envelope of an OIP record refused at the edge: answered as OIP's error."""


class OipRefusal(WorkerError):
    """An OIP record to be answered with an error (it has an id to answer)."""

    def __init__(self, envelope: OipEnvelope, code: ErrorCode, message: str) -> None:
        super().__init__(message)
        self.envelope, self.code, self.message = envelope, code, message


class OipUnreadable(WorkerError):
    """An OIP record that is not a request at all: for the dead-letter topic."""

    code = ErrorCode.INVALID_INPUT


def _headers(record: Record) -> dict[str, bytes]:
    return {key.lower(): value for key, value in record.headers or () if value is not None}


def marked(headers: Sequence[tuple[str, bytes]] | None) -> bool:
    """Whether a record's headers mark it as an OIP request."""
    for key, value in headers or ():
        lowered = key.lower()
        if lowered in _MARKERS or (lowered == "content-type" and value == CONTENT_TYPE.encode()):
            return True
    return False


def _text(headers: dict[str, bytes], names: Sequence[str]) -> str | None:
    for name in names:
        value = headers.get(name)
        if value:
            return value.decode("utf-8", errors="replace").strip()
    return None


def _request_id(record: Record, raw_id: str | None) -> str:
    """The record's key overrides the body's id, as with MLServer; else a new one."""
    if record.key:
        return record.key.decode("utf-8", errors="replace")
    return raw_id or uuid.uuid4().hex


def envelope_of(
    record: Record, request_id: str | None = None, headers: dict[str, bytes] | None = None
) -> OipEnvelope:
    """Where an OIP record's answer goes, from its key and headers alone."""
    headers = _headers(record) if headers is None else headers
    return OipEnvelope(
        _request_id(record, request_id),
        _text(headers, MODEL_HEADERS) or "",
        _text(headers, (REPLY_HEADER,)),
    )


def _header_length(headers: dict[str, bytes]) -> int | None:
    value = headers.get(HEADER_LENGTH)
    if value is None:
        return None
    try:
        return int(value)
    except ValueError:
        raise OipDecodeError(
            f"header {HEADER_LENGTH} is {value!r}, not a number of bytes"
        ) from None


def _is_unreadable(exc: OipDecodeError) -> bool:
    cause = exc.__cause__
    return isinstance(cause, msgspec.DecodeError | UnicodeDecodeError | RecursionError) and not (
        isinstance(cause, msgspec.ValidationError)
    )


def read(record: Record, raw: bytes) -> OipJob:
    """The job in an OIP record. Raises :class:`OipRefusal` (answer it with the error) or
    :class:`OipUnreadable` (dead-letter it: not an InferenceRequest at all)."""
    headers = _headers(record)
    try:
        request = decode_request(raw, _header_length(headers))
    except OipDecodeError as exc:
        if _is_unreadable(exc):
            raise OipUnreadable(f"not an OIP InferenceRequest: {exc}") from exc
        envelope = envelope_of(record, None, headers)
        raise OipRefusal(envelope, ErrorCode.INVALID_INPUT, str(exc)) from exc
    return _job(envelope_of(record, request.id, headers), headers, request)


def _job(envelope: OipEnvelope, headers: dict[str, bytes], request: Request) -> OipJob:
    model = envelope.model
    if not model:
        message = "an OIP request names its model in the header maas-model (or mlserver-model)"
        raise OipRefusal(envelope, ErrorCode.INVALID_INPUT, message)
    if not _NAME.match(model):
        message = f"header maas-model {model!r} is not a model name"
        raise OipRefusal(envelope, ErrorCode.INVALID_INPUT, message)
    version, alias = _version(envelope, headers)
    deadline_ms = _deadline(envelope, headers)
    try:
        inputs = {name: _rows(name, array) for name, array in request.inputs.items()}
        _same_rows(inputs)
    except DecodeError as exc:
        raise OipRefusal(envelope, ErrorCode.INVALID_INPUT, str(exc)) from exc
    return OipJob(
        job_id=envelope.job_id,
        model=model,
        inputs=inputs,
        version=version,
        alias=alias,
        reply_to=envelope.reply_to,
        deadline_ms=deadline_ms,
        request=request,
    )


def _version(envelope: OipEnvelope, headers: dict[str, bytes]) -> tuple[int | None, str]:
    """``maas-version``: a version number, or an alias name; none: the default alias."""
    text = _text(headers, VERSION_HEADERS)
    if not text:
        return None, DEFAULT_ALIAS
    if text.isdigit() and 0 < int(text) < 2**31:
        return int(text), DEFAULT_ALIAS
    if _NAME.match(text):
        return None, text
    message = f"header maas-version {text!r} is neither a version number nor an alias"
    raise OipRefusal(envelope, ErrorCode.INVALID_INPUT, message)


def _deadline(envelope: OipEnvelope, headers: dict[str, bytes]) -> int | None:
    """``maas-deadline-ms``: epoch milliseconds after which the job is answered EXPIRED
    instead of run (a PredictJob's ``deadline_ms``); none: no deadline."""
    text = _text(headers, (DEADLINE_HEADER,))
    if not text:
        return None
    if not text.isdigit():
        message = f"header {DEADLINE_HEADER} {text!r} is not a time in epoch milliseconds"
        raise OipRefusal(envelope, ErrorCode.INVALID_INPUT, message)
    return int(text)


def _rows(name: str, array: np.ndarray) -> Any:
    """An input as the runtime takes it: numbers as the array itself (no lists), BYTES
    (texts) as a list of strings."""
    if array.ndim == 0:
        raise DecodeError(
            f"input `{name}` has shape []; give it a leading batch dimension, e.g. [1]",
            field=f"inputs.{name}",
        )
    if array.dtype.kind == "O" and array.ndim == 1:
        return _texts(name, array.tolist())
    return array


def _texts(name: str, elements: list[Any]) -> list[Any]:
    """A 1-D BYTES input's elements as strings: the codec reads each as :class:`bytes`."""
    try:
        return [element.decode() for element in elements]
    except UnicodeDecodeError as exc:
        raise DecodeError(f"input `{name}` holds bytes that are not UTF-8 text") from exc
    except AttributeError:  # not bytes: as they are
        return [_utf8(name, element) for element in elements]


def _same_rows(inputs: dict[str, Any]) -> None:
    if len(inputs) == 1 and len(next(iter(inputs.values()))):
        return  # the usual case, without the dict and the set below
    counts = {name: len(rows) for name, rows in inputs.items()}
    if 0 in counts.values():
        raise DecodeError(f"every input needs at least one row, got {counts}", field="inputs")
    if len(set(counts.values())) > 1:
        raise DecodeError(f"inputs must have the same number of rows, got {counts}")


def _utf8(name: str, element: Any) -> Any:
    if isinstance(element, bytes):
        try:
            return element.decode()
        except UnicodeDecodeError as exc:
            raise DecodeError(f"input `{name}` holds bytes that are not UTF-8 text") from exc
    return element


def answer(
    record: Record,
    job: OipJob | OipEnvelope,
    result: Result,
    topic: str,
    namespace: str,
) -> Outgoing:
    """The record answering an OIP request with ``result`` on ``topic``: its
    InferenceResponse, or ``{"error": ...}`` with ``maas-error-code``."""
    value, extra = _value(job, result)
    key = job.job_id.encode()
    fixed = _fixed_cloudevents(result.model or job.model, namespace)
    headers = (*_echoed(record), ("Ce-Id", key), ("Ce-Requestid", key), *fixed, *extra)
    return Outgoing(topic, value, key, headers)


def _value(job: OipJob | OipEnvelope, result: Result) -> tuple[bytes, list[tuple[str, bytes]]]:
    if result.ok and result.outputs is not None:
        request = job.request if isinstance(job, OipJob) else None
        try:
            body = encode_response(
                result.outputs,
                model_name=result.model or job.model,
                model_version=None if result.version is None else str(result.version),
                id=job.job_id,
                request=request,
            )
        except OipDecodeError as exc:
            return _error(ErrorCode.INVALID_INPUT, str(exc))
        if body.header_length is None:
            return body.data, [_CONTENT_TYPE]
        return body.data, [_CONTENT_TYPE, (HEADER_LENGTH, str(body.header_length).encode())]
    error = result.error
    code = error.code if error is not None else ErrorCode.INTERNAL
    return _error(code, error.message if error is not None else "no outputs")


def _error(code: str, message: str) -> tuple[bytes, list[tuple[str, bytes]]]:
    return encode_error(message), [(ERROR_HEADER, str(code).encode())]


def _echoed(record: Record) -> Sequence[tuple[str, bytes]]:
    """The request's own headers that travel on (tracing and such), less those that
    described the request and the CloudEvents ones, which are the answer's own."""
    kept = [
        (key, value)
        for key, value in record.headers or ()
        if (lowered := key.lower()) not in _NOT_ECHOED and not lowered.startswith("ce-")
    ]
    return without_own_headers(tuple(kept)) if kept else ()


@functools.lru_cache(maxsize=1024)
def _fixed_cloudevents(model: str, namespace: str) -> tuple[tuple[str, bytes], ...]:
    """The CloudEvents headers MLServer puts on an inference response, less its id
    (``Ce-Id``, ``Ce-Requestid``): the same for every answer of a model's."""
    return (
        ("Ce-Specversion", b"0.3"),
        ("Ce-Source", f"io.seldon.serving.deployment.maas.{namespace}".encode()),
        ("Ce-Type", RESPONSE_TYPE.encode()),
        ("Ce-Modelid", model.encode()),
        ("Ce-Inferenceservicename", model.encode()),
        ("Ce-Namespace", namespace.encode()),
        ("Ce-Endpoint", model.encode()),
    )
