"""The records the gateway publishes: OIP requests in the binary layout, never JSON numbers.

Whichever door a request came in by, REST (JSON or the binary data extension) or gRPC
(``raw_input_contents`` or typed ``contents``), its tensors, read by the OIP codec into
numpy arrays (binary ones are views over the request's own bytes), go to the workers as
one OIP ``InferenceRequest`` record in the binary layout: a JSON header that lists the
inputs (name, datatype, shape, ``binary_data_size``) and the outputs asked for, then the
tensors' bytes, copied once. The worker answers every output binary too
(``binary_data_output``): the gateway then writes the caller's answer in the form the
caller asked for, without a float round trip where it asked for binary.

The record's headers say what the worker needs beside the body (docs/oip.md): the model,
the version or alias, the gateway's reply topic, the deadline and, for a job answered
later (``Prefer: respond-async``), how to shape its answer, which the worker echoes on
the answer so that any gateway can give it (:data:`SHAPE_HEADER`).
"""

from __future__ import annotations

import time
from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from typing import Any

import msgspec
import numpy as np

from producer.contract.oip import CONTENT_TYPE, HEADER_LENGTH, Body, encode_request

Headers = tuple[tuple[str, bytes], ...]

SHAPE_HEADER = "maas-gateway-shape"
"""How to shape an async job's answer (the caller's request id, outputs and whether each
goes back binary) as JSON; the worker echoes it on the answer record."""


@dataclass(frozen=True, slots=True)
class Job:
    """One request as a record: ``which`` is a version number or an alias; ``body`` the
    OIP request (:func:`body_of`); ``shape`` travels in :data:`SHAPE_HEADER`."""

    job_id: str
    model: str
    which: int | str
    body: Body
    timeout_s: float
    shape: Mapping[str, Any] | None = None


def body_of(inputs: Mapping[str, np.ndarray], outputs: Iterable[str] = ()) -> Body:
    """The OIP request record of named arrays: the binary layout, every output asked for
    as raw bytes (``outputs``: those the caller names, in order; none: all)."""
    return encode_request(
        inputs, binary=True, outputs=outputs, parameters={"binary_data_output": True}
    )


def headers_of(job: Job, reply_to: str, *, now_s: float | None = None) -> Headers:
    """The record's headers: OIP's content type and header length, the model, version or
    alias, reply topic and deadline (epoch milliseconds) the worker reads."""
    deadline_ms = int(((time.time() if now_s is None else now_s) + job.timeout_s) * 1000)
    headers = [
        ("content-type", CONTENT_TYPE.encode()),
        ("maas-model", job.model.encode()),
        ("maas-version", str(job.which).encode()),
        ("maas-reply-to", reply_to.encode()),
        ("maas-deadline-ms", str(deadline_ms).encode()),
    ]
    if job.body.header_length is not None:
        headers.append((HEADER_LENGTH, str(job.body.header_length).encode()))
    if job.shape is not None:
        headers.append((SHAPE_HEADER, msgspec.json.encode(job.shape)))
    return tuple(headers)


def shape_in(headers: Iterable[tuple[str, bytes | None]] | None) -> dict[str, Any]:
    """The shape an answer record's :data:`SHAPE_HEADER` carries; empty without one, or
    with one that is not a JSON object."""
    for key, value in headers or ():
        if key == SHAPE_HEADER and value:
            try:
                found = msgspec.json.decode(value)
            except msgspec.DecodeError:
                return {}
            return found if isinstance(found, dict) else {}
    return {}
