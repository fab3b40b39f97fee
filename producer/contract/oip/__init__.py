"""The Open Inference Protocol (V2, KServe/Triton/MLServer) codec: bytes ⇄ named arrays.

Pure and Kafka-free: the worker reads OIP records off the predict topics with it and an
HTTP gateway reads ``/v2/models/{m}/infer`` bodies with it. Two layouts:

- **JSON**: the body is an ``InferenceRequest`` / ``InferenceResponse`` document.
- **Binary data extension**: a JSON header of ``header_length`` bytes (sent beside the
  body: Kafka header or HTTP header ``inference-header-content-length``), then the raw
  tensors in the order the header lists them, each with ``parameters.binary_data_size``;
  numbers little-endian and row-major, BYTES elements a 4-byte little-endian length and
  the bytes.

Public API::

    request = decode_request(body, header_length)   # header_length None for JSON
    request.inputs        # {"input": np.ndarray}, binary tensors via np.frombuffer
    request.id, request.parameters
    chosen = request.select(model_outputs)          # the outputs asked for, and how
    body = encode_response(model_outputs, model_name="m", model_version="3",
                           id=request.id, request=request)
    body.data, body.header_length                  # header_length None: plain JSON
    encode_error("what went wrong")                 # b'{"error":"..."}'
    encode_request({...}, binary=True) / decode_response(data, header_length)  # clients
    is_inference_request(json_bytes)                # an OIP request, not maas.predict/v1

Every problem with an input is one :class:`OipDecodeError` (a
:class:`~producer.contract.messages.DecodeError`, answered INVALID_INPUT / HTTP 400)
whose message and ``tensor`` name the tensor: unknown datatype, shape against the data's
count, ``binary_data_size`` against shape times datatype size, a truncated buffer, a value outside
its datatype. :data:`DTYPES` is the datatype table (BOOL, UINT8 to UINT64, INT8 to INT64, FP16, FP32,
FP64, BYTES as object arrays of bytes).
"""

from producer.contract.oip.codec import (
    Body,
    Request,
    Response,
    WantedOutput,
    decode_request,
    decode_response,
    encode_error,
    encode_request,
    encode_response,
    is_inference_request,
)
from producer.contract.oip.datatypes import DATATYPES, DTYPES, datatype_of
from producer.contract.oip.errors import OipDecodeError
from producer.contract.oip.wire import (
    InferenceErrorResponse,
    InferenceRequest,
    InferenceResponse,
    RequestInput,
    RequestOutput,
    ResponseOutput,
)

HEADER_LENGTH = "inference-header-content-length"
"""The header (Kafka or HTTP) that carries the binary layout's JSON header length."""
CONTENT_TYPE = "application/vnd.oip.v2+json"
"""The ``content-type`` header value that marks a Kafka record as an OIP request."""

__all__ = [
    "CONTENT_TYPE",
    "DATATYPES",
    "DTYPES",
    "HEADER_LENGTH",
    "Body",
    "InferenceErrorResponse",
    "InferenceRequest",
    "InferenceResponse",
    "OipDecodeError",
    "Request",
    "RequestInput",
    "RequestOutput",
    "Response",
    "ResponseOutput",
    "WantedOutput",
    "datatype_of",
    "decode_request",
    "decode_response",
    "encode_error",
    "encode_request",
    "encode_response",
    "is_inference_request",
]
