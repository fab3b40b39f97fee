"""The OIP JSON documents as frozen msgspec structs: InferenceRequest, InferenceResponse.

Field names and nesting are the Open Inference Protocol's (KServe V2), so that the
records Triton's, KServe's and MLServer's clients write decode here unchanged. Tensor
``data`` stays untyped (flat or nested JSON, per datatype) until
:mod:`~producer.contract.oip.decode` turns it into numpy; ``parameters`` are free maps,
of which the binary data extension reads ``binary_data_size`` (on a tensor),
``binary_data`` (on a requested output) and ``binary_data_output`` (on the request).
"""

from __future__ import annotations

from typing import Annotated, Any

import msgspec

Dim = Annotated[int, msgspec.Meta(ge=0, le=2**63 - 1)]
TensorName = Annotated[str, msgspec.Meta(min_length=1, max_length=512)]


class RequestInput(msgspec.Struct, frozen=True, kw_only=True, omit_defaults=True):
    name: TensorName
    datatype: str
    shape: list[Dim]
    data: Any = None
    parameters: dict[str, Any] = {}


class RequestOutput(msgspec.Struct, frozen=True, kw_only=True, omit_defaults=True):
    name: TensorName
    parameters: dict[str, Any] = {}


class InferenceRequest(msgspec.Struct, frozen=True, kw_only=True, omit_defaults=True):
    inputs: list[RequestInput]
    id: str | None = None
    parameters: dict[str, Any] = {}
    outputs: list[RequestOutput] = []


class ResponseOutput(msgspec.Struct, frozen=True, kw_only=True, omit_defaults=True):
    name: str
    datatype: str
    shape: list[int]
    data: Any = None
    parameters: dict[str, Any] = {}


class InferenceResponse(msgspec.Struct, frozen=True, kw_only=True, omit_defaults=True):
    model_name: str
    outputs: list[ResponseOutput]
    model_version: str | None = None
    id: str | None = None
    parameters: dict[str, Any] = {}


class InferenceErrorResponse(msgspec.Struct, frozen=True):
    """OIP's error body: ``{"error": "..."}``."""

    error: str
