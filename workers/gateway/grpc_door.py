"""The gRPC door: ``inference.GRPCInferenceService`` on grpc.aio, through the same
:class:`~workers.gateway.service.Gateway` as REST.

Messages are the checked-in :mod:`workers.gateway.proto.oip_pb2` (OIP's field numbers);
the service is registered under OIP's name, so Triton's and KServe's gRPC clients call
it unchanged. Inputs come as ``raw_input_contents`` (one buffer per input, OIP's binary
layout: read as views over those bytes, which go on to the worker in a binary OIP
record) or as typed ``contents``; outputs always go back as ``raw_output_contents``
(the bytes of the worker's binary answer), as Triton answers. Errors abort the call with the status code of their
:class:`~workers.gateway.errors.GatewayError` (429: ``retry-after`` in the trailers).
"""

from __future__ import annotations

import time
from collections.abc import Awaitable, Callable
from typing import Any

import grpc
import numpy as np

from producer.contract.oip import OipDecodeError, RequestInput, datatype_of
from producer.contract.oip.datatypes import BYTES
from producer.contract.oip.tensors import from_buffer, from_json, to_buffer
from workers.gateway import meta, metrics
from workers.gateway.auth import Authenticator, Caller
from workers.gateway.errors import BadRequest, GatewayError, NotFound, TooManyRequests
from workers.gateway.proto import oip_pb2 as pb
from workers.gateway.records import body_of
from workers.gateway.service import Answer, Gateway, Target

SERVICE = "inference.GRPCInferenceService"
# Which InferTensorContents field holds each datatype's elements.
CONTENTS = {
    "BOOL": "bool_contents",
    "INT8": "int_contents",
    "INT16": "int_contents",
    "INT32": "int_contents",
    "INT64": "int64_contents",
    "UINT8": "uint_contents",
    "UINT16": "uint_contents",
    "UINT32": "uint_contents",
    "UINT64": "uint64_contents",
    "FP32": "fp32_contents",
    "FP64": "fp64_contents",
    BYTES: "bytes_contents",
}
Method = Callable[[Any, grpc.aio.ServicerContext], Awaitable[Any]]


def inputs_of(request: Any) -> dict[str, np.ndarray]:
    """A ModelInferRequest's tensors as named arrays, checked by the OIP codec."""
    raw = list(request.raw_input_contents)
    if raw and len(raw) != len(request.inputs):
        raise BadRequest(
            f"raw_input_contents has {len(raw)} buffers for {len(request.inputs)} inputs; "
            "send one per input, or none and each input's contents"
        )
    arrays: dict[str, np.ndarray] = {}
    for index, tensor in enumerate(request.inputs):
        if tensor.name in arrays:
            raise BadRequest(f"input `{tensor.name}` appears twice")
        if any(d < 0 for d in tensor.shape):
            raise BadRequest(
                f"input `{tensor.name}`: shape {list(tensor.shape)} has a negative dimension"
            )
        arrays[tensor.name] = _array(tensor, raw[index] if raw else None)
    if not arrays:
        raise BadRequest("a ModelInferRequest needs at least one input")
    return arrays


def _array(tensor: Any, raw: bytes | None) -> np.ndarray:
    described = RequestInput(name=tensor.name, datatype=tensor.datatype, shape=list(tensor.shape))
    if raw is not None:
        return from_buffer(described, memoryview(raw))
    field = CONTENTS.get(tensor.datatype)
    if field is None:
        raise BadRequest(
            f"input `{tensor.name}`: {tensor.datatype} travels only in raw_input_contents"
            if tensor.datatype == "FP16"
            else f"input `{tensor.name}`: unknown datatype {tensor.datatype!r}"
        )
    values = list(getattr(tensor.contents, field))
    if tensor.datatype == BYTES:
        flat = np.empty(len(values), dtype=object)
        flat[:] = values
        if flat.size != int(np.prod(tensor.shape)):
            raise BadRequest(
                f"input `{tensor.name}`: shape {list(tensor.shape)} does not hold {flat.size} elements"
            )
        return flat.reshape(list(tensor.shape))
    return from_json(
        RequestInput(
            name=tensor.name, datatype=tensor.datatype, shape=list(tensor.shape), data=values
        )
    )


def response_of(request: Any, model: str, answer: Answer) -> Any:
    """The ModelInferResponse: the requested outputs (all when none), as raw bytes."""
    wanted = [output.name for output in request.outputs] or list(answer.outputs)
    response = pb.ModelInferResponse(model_name=model, model_version=answer.version, id=request.id)
    for name in wanted:
        array = answer.outputs.get(name)
        if array is None:
            raise BadRequest(
                f"output `{name}` is not one of the model's outputs ({', '.join(answer.outputs)})"
            )
        datatype = datatype_of(array)
        response.outputs.add(name=name, datatype=datatype, shape=list(array.shape))
        response.raw_output_contents.append(to_buffer(array, datatype))
    return response


class GrpcDoor:
    """The service's methods, each authenticated (health excepted) and error-mapped."""

    def __init__(self, gateway: Gateway, auth: Authenticator) -> None:
        self._gateway = gateway
        self._auth = auth

    def handler(self) -> grpc.GenericRpcHandler:
        methods: dict[str, tuple[Method, Any]] = {
            "ServerLive": (self.server_live, pb.ServerLiveRequest),
            "ServerReady": (self.server_ready, pb.ServerReadyRequest),
            "ServerMetadata": (self._guarded(self.server_metadata), pb.ServerMetadataRequest),
            "ModelReady": (self._guarded(self.model_ready), pb.ModelReadyRequest),
            "ModelMetadata": (self._guarded(self.model_metadata), pb.ModelMetadataRequest),
            "ModelInfer": (self._guarded(self.model_infer, timed=True), pb.ModelInferRequest),
        }
        return grpc.method_handlers_generic_handler(
            SERVICE,
            {
                name: grpc.unary_unary_rpc_method_handler(
                    method,
                    request_deserializer=kind.FromString,
                    response_serializer=lambda message: message.SerializeToString(),
                )
                for name, (method, kind) in methods.items()
            },
        )

    def _guarded(
        self, method: Callable[[Any, Caller], Awaitable[Any]], *, timed: bool = False
    ) -> Method:
        async def run(request: Any, context: grpc.aio.ServicerContext) -> Any:
            start = time.perf_counter()
            caller: Caller | None = None
            try:
                caller = await self._auth.caller(_authorization(context))
                response = await method(request, caller)
            except OipDecodeError as exc:
                error: GatewayError = BadRequest(str(exc))
            except GatewayError as exc:
                error = exc
            else:
                _count(caller, 200, start, timed=timed)
                return response
            _count(caller, error.status, start, timed=timed)
            if isinstance(error, TooManyRequests):
                context.set_trailing_metadata((("retry-after", str(error.retry_after_s)),))
            await context.abort(getattr(grpc.StatusCode, error.grpc), str(error))
            raise error  # abort raises; never reached

        return run

    async def server_live(self, request: Any, context: grpc.aio.ServicerContext) -> Any:
        return pb.ServerLiveResponse(live=True)

    async def server_ready(self, request: Any, context: grpc.aio.ServicerContext) -> Any:
        return pb.ServerReadyResponse(ready=self._gateway.parts.reachability.not_ready() is None)

    async def server_metadata(self, request: Any, caller: Caller) -> Any:
        return pb.ServerMetadataResponse(**meta.server_metadata())

    async def model_ready(self, request: Any, caller: Caller) -> Any:
        try:
            await self._gateway.version(caller, Target.parse(request.name, request.version))
        except NotFound:
            return pb.ModelReadyResponse(ready=False)
        return pb.ModelReadyResponse(ready=True)

    async def model_metadata(self, request: Any, caller: Caller) -> Any:
        found = await self._gateway.version(caller, Target.parse(request.name, request.version))
        document = meta.model_metadata(found)
        return pb.ModelMetadataResponse(
            name=document["name"],
            versions=document["versions"],
            platform=document["platform"],
            inputs=[pb.ModelMetadataResponse.TensorMetadata(**t) for t in document["inputs"]],
            outputs=[pb.ModelMetadataResponse.TensorMetadata(**t) for t in document["outputs"]],
        )

    async def model_infer(self, request: Any, caller: Caller) -> Any:
        target = Target.parse(request.model_name, request.model_version)
        body = body_of(inputs_of(request), [output.name for output in request.outputs])
        answer = await self._gateway.infer(caller, target, body)
        return response_of(request, target.model, answer)


def _count(caller: Caller | None, status: int, start: float, *, timed: bool) -> None:
    tenant = caller.label if caller is not None else "-"
    metrics.answered("grpc", tenant, status, time.perf_counter() - start if timed else None)


def _authorization(context: grpc.aio.ServicerContext) -> str | None:
    for key, value in context.invocation_metadata() or ():
        if key == "authorization":
            return value if isinstance(value, str) else value.decode()
    return None
