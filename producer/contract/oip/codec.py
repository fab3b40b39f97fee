"""Whole OIP bodies: requests in (JSON or binary) → named arrays; arrays → responses.

A body in the binary data extension's layout is a JSON header of ``header_length``
bytes followed by the tensors' raw bytes, in the order the header lists the tensors
that carry ``parameters.binary_data_size``; a plain JSON body has no header length.
"""

from __future__ import annotations

import functools
import math
from collections.abc import Iterable, Mapping
from typing import Any, NamedTuple, TypeVar

import msgspec
import numpy as np

from producer.contract.oip import tensors
from producer.contract.oip.datatypes import BYTES, DTYPES, datatype_of
from producer.contract.oip.errors import OipDecodeError
from producer.contract.oip.wire import (
    InferenceErrorResponse,
    InferenceRequest,
    InferenceResponse,
    RequestInput,
    RequestOutput,
    ResponseOutput,
)

T = TypeVar("T")


class Body(NamedTuple):
    """An encoded OIP body and, for the binary layout, the JSON header's length."""

    data: bytes
    header_length: int | None = None


class WantedOutput(msgspec.Struct, frozen=True):
    """An output the request names, and whether it wants it as raw bytes."""

    name: str
    binary: bool


class Request(msgspec.Struct, frozen=True, kw_only=True):
    """A decoded InferenceRequest: named arrays, and what the answer should hold.

    ``outputs`` are the requested outputs in order (empty: all of the model's);
    ``binary`` says how an output not listed there is sent back: as raw bytes when the
    request came in the binary layout, unless ``binary_data_output`` says otherwise.
    """

    inputs: dict[str, np.ndarray]
    id: str | None = None
    outputs: tuple[WantedOutput, ...] = ()
    binary: bool = False
    parameters: dict[str, Any] = {}

    def select(self, available: Mapping[str, np.ndarray]) -> list[tuple[str, np.ndarray, bool]]:
        """The outputs to answer with: (name, array, as raw bytes?); a requested output
        the model lacks raises :class:`OipDecodeError` naming it."""
        if not self.outputs:
            return [(name, array, self.binary) for name, array in available.items()]
        chosen = []
        for wanted in self.outputs:
            if wanted.name not in available:
                has = ", ".join(available) or "none"
                raise OipDecodeError(
                    f"output `{wanted.name}` is not one of the model's outputs ({has})",
                    tensor=wanted.name,
                    field=f"outputs.{wanted.name}",
                )
            chosen.append((wanted.name, available[wanted.name], wanted.binary))
        return chosen


class Response(msgspec.Struct, frozen=True, kw_only=True):
    """A decoded InferenceResponse (what a client reads back)."""

    model_name: str
    outputs: dict[str, np.ndarray]
    model_version: str | None = None
    id: str | None = None
    parameters: dict[str, Any] = {}


_DECODERS: dict[type[Any], msgspec.json.Decoder[Any]] = {}
_encoder = msgspec.json.Encoder()


def _document(header: bytes | memoryview, kind: type[T]) -> T:
    decoder = _DECODERS.get(kind)
    if decoder is None:
        decoder = _DECODERS[kind] = msgspec.json.Decoder(kind)
    try:
        document: T = decoder.decode(header)
    except msgspec.ValidationError as exc:
        raise OipDecodeError(f"not an OIP {kind.__name__}: {exc}") from exc
    except (msgspec.DecodeError, UnicodeDecodeError) as exc:
        raise OipDecodeError(f"not valid UTF-8 JSON: {exc}") from exc
    except RecursionError as exc:
        raise OipDecodeError("JSON nested too deeply") from exc
    return document


def _split(body: bytes, header_length: int | None) -> tuple[memoryview, memoryview]:
    view = memoryview(body)
    if header_length is None:
        return view, view[len(view) :]
    if not 0 < header_length <= len(view):
        raise OipDecodeError(
            f"the JSON header length {header_length} does not fit in a body of "
            f"{len(view)} bytes; send the header's length in bytes"
        )
    return view[:header_length], view[header_length:]


def _arrays(described: Iterable[tensors.Tensor], buffer: memoryview) -> dict[str, np.ndarray]:
    """Each tensor from its JSON data or its slice of ``buffer``, consumed in order."""
    arrays: dict[str, np.ndarray] = {}
    offset = 0
    for tensor in described:
        if tensor.name in arrays:
            raise OipDecodeError(f"tensor `{tensor.name}` appears twice", tensor=tensor.name)
        size = tensors.binary_size(tensor)
        if size is None:
            arrays[tensor.name] = tensors.from_json(tensor)
            continue
        if offset + size > len(buffer):
            raise OipDecodeError(
                f"tensor `{tensor.name}`: binary data truncated, binary_data_size is {size} "
                f"but only {len(buffer) - offset} bytes remain",
                tensor=tensor.name,
            )
        arrays[tensor.name] = tensors.from_buffer(tensor, buffer[offset : offset + size])
        offset += size
    if offset != len(buffer):
        raise OipDecodeError(
            f"{len(buffer) - offset} bytes after the last binary tensor; each binary "
            "tensor needs parameters.binary_data_size"
        )
    return arrays


def _flag(parameters: Mapping[str, Any], name: str, default: bool) -> bool:
    if not parameters:
        return default
    value = parameters.get(name, default)
    if not isinstance(value, bool):
        raise OipDecodeError(f"parameter {name} must be true or false, got {value!r}")
    return value


def decode_request(body: bytes, header_length: int | None = None) -> Request:
    """Decode an InferenceRequest, JSON (``header_length`` None) or binary layout.

    Raises :class:`OipDecodeError` (a DecodeError) naming the tensor at fault: unknown
    datatype, shape against the data's count, a binary size that does not match, a
    truncated buffer, a value outside its datatype.
    """
    header, buffer = _split(body, header_length)
    document = _document(header, InferenceRequest)
    if not document.inputs:
        raise OipDecodeError("an InferenceRequest needs at least one input", field="inputs")
    binary = _flag(document.parameters, "binary_data_output", header_length is not None)
    wanted = (
        tuple(
            WantedOutput(output.name, _flag(output.parameters, "binary_data", binary))
            for output in document.outputs
        )
        if document.outputs
        else ()
    )
    return Request(
        inputs=_arrays(document.inputs, buffer),
        id=document.id,
        outputs=wanted,
        binary=binary,
        parameters=document.parameters,
    )


def _described(
    chosen: Iterable[tuple[str, np.ndarray, bool]],
) -> tuple[list[tuple[str, str, list[int], Any, dict[str, Any]]], list[bytes]]:
    described, raw = [], []
    for name, array, binary in chosen:
        datatype = datatype_of(array)
        if binary:
            data = tensors.to_buffer(array, datatype)
            raw.append(data)
            described.append(
                (name, datatype, list(array.shape), None, {"binary_data_size": len(data)})
            )
        else:
            described.append((name, datatype, list(array.shape), tensors.to_json(array), {}))
    return described, raw


def _body(header: bytes, raw: list[bytes]) -> Body:
    if not raw:
        return Body(header)
    return Body(b"".join([header, *raw]), len(header))


def encode_response(
    outputs: Mapping[str, np.ndarray],
    *,
    model_name: str,
    model_version: str | None = None,
    id: str | None = None,
    request: Request | None = None,
) -> Body:
    """An InferenceResponse of ``outputs``: those ``request`` asks for, each as JSON or
    raw bytes as it asks (all as JSON without a request). Raises OipDecodeError for a
    requested output the model lacks."""
    chosen = (request or _ALL_AS_JSON).select(outputs)
    fast = _binary_response(chosen, model_name, model_version, id)
    if fast is not None:
        return fast
    described, raw = _described(chosen)
    document = InferenceResponse(
        model_name=model_name,
        model_version=model_version,
        id=id,
        outputs=[
            ResponseOutput(name=n, datatype=d, shape=s, data=v, parameters=p)
            for n, d, s, v, p in described
        ],
    )
    return _body(_encoder.encode(document), raw)


_ALL_AS_JSON = Request(inputs={})


def _binary_response(
    chosen: list[tuple[str, np.ndarray, bool]],
    model_name: str,
    model_version: str | None,
    id: str | None,
) -> Body | None:
    """The response when every output goes as raw numbers (not BYTES), the usual binary
    answer: its JSON header is a template per output signature, written once, to which
    only the id is added; None for any other response."""
    if not chosen:
        return None
    signature, raw = [], []
    for name, array, binary in chosen:
        datatype = datatype_of(array)
        if not binary or datatype == BYTES:
            return None
        signature.append((name, datatype, array.shape))
        raw.append(tensors.to_buffer(array, datatype))
    header = _binary_header(model_name, model_version, tuple(signature))
    if id is None:
        header += b"}"
    else:
        header = b"".join((header, b',"id":', _encoder.encode(id), b"}"))
    return Body(b"".join([header, *raw]), len(header))


@functools.lru_cache(maxsize=512)
def _binary_header(
    model_name: str,
    model_version: str | None,
    signature: tuple[tuple[str, str, tuple[int, ...]], ...],
) -> bytes:
    """A binary InferenceResponse's JSON header, without its id and closing brace (the
    id is the document's last field; ``parameters`` is never set on a response)."""
    outputs = [
        ResponseOutput(
            name=name,
            datatype=datatype,
            shape=list(shape),
            parameters={"binary_data_size": math.prod(shape) * DTYPES[datatype].itemsize},
        )
        for name, datatype, shape in signature
    ]
    document = InferenceResponse(
        model_name=model_name, model_version=model_version, outputs=outputs
    )
    return _encoder.encode(document)[:-1]


def encode_error(message: str) -> bytes:
    """OIP's error body, ``{"error": message}``."""
    return _encoder.encode(InferenceErrorResponse(message))


def encode_request(
    inputs: Mapping[str, np.ndarray],
    *,
    id: str | None = None,
    binary: bool = False,
    outputs: Iterable[str] = (),
    parameters: Mapping[str, Any] | None = None,
) -> Body:
    """An InferenceRequest of named arrays, JSON or (``binary``) the binary layout; the
    answer then comes back binary too unless ``parameters`` sets binary_data_output."""
    described, raw = _described((name, array, binary) for name, array in inputs.items())
    document = InferenceRequest(
        id=id,
        inputs=[
            RequestInput(name=n, datatype=d, shape=s, data=v, parameters=p)
            for n, d, s, v, p in described
        ],
        outputs=[RequestOutput(name=name) for name in outputs],
        parameters=dict(parameters or {}),
    )
    return _body(_encoder.encode(document), raw)


def decode_response(body: bytes, header_length: int | None = None) -> Response:
    """Decode an InferenceResponse (JSON or binary layout) into named arrays."""
    header, buffer = _split(body, header_length)
    document = _document(header, InferenceResponse)
    return Response(
        model_name=document.model_name,
        outputs=_arrays(document.outputs, buffer),
        model_version=document.model_version,
        id=document.id,
        parameters=document.parameters,
    )


class _Shape(msgspec.Struct):
    inputs: msgspec.Raw = msgspec.Raw(b"null")
    job_id: msgspec.Raw = msgspec.Raw(b"")  # a maas.predict/v1 job's, however broken


def is_inference_request(document: bytes | memoryview) -> bool:
    """Whether a JSON document has an InferenceRequest's shape (``inputs`` a list), as
    against a ``maas.predict/v1`` job (``inputs`` an object, or a ``job_id``); never
    raises."""
    try:
        shape = msgspec.json.decode(document, type=_Shape)
    except (msgspec.DecodeError, UnicodeDecodeError, RecursionError):
        return False
    return not shape.job_id and bytes(shape.inputs).startswith(b"[")
