"""The clients' side of the Open Inference Protocol on Kafka: jobs as OIP records,
InferenceResponses read back as Results.

``encoding="oip"`` sends a job as an OIP InferenceRequest in JSON, ``"binary"`` in the
binary data layout (tensors as raw little-endian bytes, the JSON header's length in
the Kafka header ``inference-header-content-length``); the model, version or alias and
reply topic travel in the ``maas-*`` headers. The answer, an InferenceResponse (or
``{"error": ...}`` with ``maas-error-code``), becomes the same :class:`Result` a
``maas.predict/v1`` job gets, its outputs numpy arrays.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any, Literal

import msgspec
import numpy as np

from producer.contract.messages import DecodeError, ErrorCode, ErrorInfo, Result
from producer.contract.oip import (
    CONTENT_TYPE,
    HEADER_LENGTH,
    OipDecodeError,
    decode_response,
    encode_request,
)

Encoding = Literal["json", "oip", "binary"]
ENCODINGS: tuple[str, ...] = ("json", "oip", "binary")
Headers = tuple[tuple[str, bytes], ...]
RESPONSE_TYPE = b"io.seldon.serving.inference.response"
ERROR_HEADER = "maas-error-code"


def request_record(
    job_id: str,
    model: str,
    inputs: Mapping[str, Any],
    *,
    target: tuple[int | None, str],
    reply_to: str,
    binary: bool,
) -> tuple[bytes, Headers]:
    """A job's record value and headers as an OIP InferenceRequest; ``target`` is the
    (version, alias) it asks for."""
    version, alias = target
    arrays = {name: np.asarray(rows) for name, rows in inputs.items()}
    body = encode_request(arrays, id=job_id, binary=binary)
    headers = [
        ("content-type", CONTENT_TYPE.encode()),
        ("maas-model", model.encode()),
        ("maas-version", str(version if version is not None else alias).encode()),
        ("maas-reply-to", reply_to.encode()),
    ]
    if body.header_length is not None:
        headers.append((HEADER_LENGTH, str(body.header_length).encode()))
    return body.data, tuple(headers)


def is_response(headers: Sequence[tuple[str, bytes]] | None) -> bool:
    """Whether a reply record is an OIP answer (its CloudEvents type or maas's error code)."""
    return any(
        (key == "Ce-Type" and value == RESPONSE_TYPE) or key == ERROR_HEADER
        for key, value in headers or ()
    )


def result_of(key: bytes | None, value: bytes, headers: Sequence[tuple[str, bytes]]) -> Result:
    """The Result an OIP answer stands for; raises DecodeError when it is not one."""
    found = dict(headers)
    job_id = (key or b"").decode("utf-8", errors="replace")
    if ERROR_HEADER in found:
        code = found[ERROR_HEADER].decode("utf-8", errors="replace")
        message = _error_message(value)
        error = ErrorInfo(code=_code(code), message=message)
        return Result(job_id=job_id, status="error", model="", error=error)
    length = found.get(HEADER_LENGTH)
    try:
        response = decode_response(value, None if length is None else int(length))
    except ValueError as exc:  # OipDecodeError, or a header length that is not a number
        raise DecodeError(f"not an OIP InferenceResponse: {exc}") from exc
    version = response.model_version
    return Result(
        job_id=job_id or response.id or "",
        status="ok",
        model=response.model_name,
        version=int(version) if version and version.isdigit() else None,
        outputs=response.outputs,
    )


def _code(text: str) -> ErrorCode:
    try:
        return ErrorCode(text)
    except ValueError:
        return ErrorCode.INTERNAL


def _error_message(value: bytes) -> str:
    try:
        return str(msgspec.json.decode(value, type=dict[str, Any]).get("error", ""))
    except msgspec.DecodeError:
        return value.decode("utf-8", errors="replace")


__all__ = [
    "ENCODINGS",
    "Encoding",
    "OipDecodeError",
    "is_response",
    "request_record",
    "result_of",
]
