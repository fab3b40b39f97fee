"""The HTTP door: OIP V2 REST on Starlette, answered through :class:`~workers.gateway.service.Gateway`.

Every handler authenticates first, then reads what it needs; a body larger than the
limit is refused from its ``Content-Length`` before a byte of it is read (or as soon
as a chunked body passes the limit). A :class:`~workers.gateway.errors.GatewayError`
(or a request the OIP codec refuses, 400) answers ``{"error": "..."}`` with its status;
429 adds ``Retry-After``. ``Prefer: respond-async`` on an infer answers 202 with a
``Location`` to poll (``GET /v2/jobs/{id}``: 202 while waiting, then the response).
"""

from __future__ import annotations

import time
from collections.abc import Awaitable, Callable
from typing import Any

from prometheus_client import CONTENT_TYPE_LATEST, REGISTRY, generate_latest
from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import JSONResponse, Response
from starlette.routing import Route

from producer.contract.oip import (
    HEADER_LENGTH,
    OipDecodeError,
    WantedOutput,
    decode_request,
    encode_error,
    encode_response,
)
from producer.contract.oip import Request as OipRequest
from workers.gateway import meta, metrics
from workers.gateway.auth import Authenticator, Caller
from workers.gateway.errors import BadRequest, GatewayError, TooLarge, TooManyRequests
from workers.gateway.records import body_of
from workers.gateway.service import Answer, Gateway, Target

Handler = Callable[[Request, Caller], Awaitable[Response]]
JSON = "application/json"


def _error(exc: GatewayError) -> Response:
    headers = {}
    if isinstance(exc, TooManyRequests):
        headers["Retry-After"] = str(exc.retry_after_s)
    return Response(encode_error(str(exc)), exc.status, headers, media_type=JSON)


class RestApi:
    """The routes of one gateway process."""

    def __init__(self, gateway: Gateway, auth: Authenticator) -> None:
        self._gateway = gateway
        self._auth = auth
        self._max_body = gateway.parts.settings.max_body_bytes

    def app(self) -> Starlette:
        guarded = self._guarded
        model = "/v2/models/{model}"
        version = "/v2/models/{model}/versions/{version}"
        routes = [
            Route("/v2/health/live", self.live),
            Route("/v2/health/ready", self.ready),
            Route("/metrics", self.prometheus),
            Route("/v2", guarded(self.server)),
            Route("/v2/jobs/{job_id}", guarded(self.poll)),
        ]
        for path in (model, version):
            routes += [
                Route(path, guarded(self.metadata)),
                Route(f"{path}/ready", guarded(self.model_ready)),
                Route(f"{path}/infer", guarded(self.infer), methods=["POST"]),
            ]
        return Starlette(routes=routes)

    def _guarded(self, handler: Handler) -> Callable[[Request], Awaitable[Response]]:
        """``handler`` with the caller authenticated and errors answered in OIP's form."""

        async def run(request: Request) -> Response:
            start = time.perf_counter()
            caller: Caller | None = None
            try:
                caller = await self._auth.caller(request.headers.get("authorization"))
                response = await handler(request, caller)
            except OipDecodeError as exc:
                response = _error(BadRequest(str(exc)))
            except GatewayError as exc:
                response = _error(exc)
            tenant = caller.label if caller is not None else "-"
            timed = time.perf_counter() - start if handler == self.infer else None
            metrics.answered("http", tenant, response.status_code, timed)
            return response

        return run

    # -- health and metadata ------------------------------------------------------------

    async def live(self, request: Request) -> Response:
        return JSONResponse({"live": True})

    async def ready(self, request: Request) -> Response:
        reason = self._gateway.parts.reachability.not_ready()
        if reason is None:
            return JSONResponse({"ready": True})
        return JSONResponse({"ready": False, "error": reason}, 503)

    async def prometheus(self, request: Request) -> Response:
        metrics.BROKER_UP.set(1.0 if self._gateway.parts.reachability.broker else 0.0)
        return Response(generate_latest(REGISTRY), media_type=CONTENT_TYPE_LATEST)

    async def server(self, request: Request, caller: Caller) -> Response:
        return JSONResponse(meta.server_metadata())

    async def metadata(self, request: Request, caller: Caller) -> Response:
        found = await self._gateway.version(caller, _target(request))
        return JSONResponse(meta.model_metadata(found))

    async def model_ready(self, request: Request, caller: Caller) -> Response:
        await self._gateway.version(caller, _target(request))
        return JSONResponse({"name": request.path_params["model"], "ready": True})

    # -- inference ------------------------------------------------------------------------

    async def infer(self, request: Request, caller: Caller) -> Response:
        target = _target(request)
        decoded = decode_request(await self._body(request), _header_length(request))
        record = body_of(decoded.inputs, [output.name for output in decoded.outputs])
        if "respond-async" in request.headers.get("prefer", "").lower():
            shape = _shape_of(decoded)
            job = await self._gateway.submit(caller, target, record, decoded, shape)
            location = f"/v2/jobs/{job.handle.job_id}"
            body = {"id": job.handle.job_id, "status": "pending"}
            return JSONResponse(body, 202, {"Location": location})
        answer = await self._gateway.infer(caller, target, record)
        return _answered(target.model, answer, decoded)

    async def poll(self, request: Request, caller: Caller) -> Response:
        job_id = request.path_params["job_id"]
        job = self._gateway.parts.jobs.get(job_id, caller.tenant)
        if job is None:
            return await self._poll_kafka(job_id, caller)
        if not job.handle.done():
            body = {"id": job_id, "status": "pending"}
            return JSONResponse(body, 202, {"Location": f"/v2/jobs/{job_id}", "Retry-After": "1"})
        answer = await self._gateway.answer(job.handle, job.model)
        return _answered(job.model, answer, job.request)

    async def _poll_kafka(self, job_id: str, caller: Caller) -> Response:
        """A job this process does not hold: its answer from the reply topic it names."""
        found = await self._gateway.find(caller, job_id)
        if found is None:
            body = {"id": job_id, "status": "pending"}
            return JSONResponse(body, 202, {"Location": f"/v2/jobs/{job_id}", "Retry-After": "1"})
        answer = await self._gateway.answered(found, found.model)
        return _answered(found.model, answer, _request_of(found.metadata))

    async def _body(self, request: Request) -> bytes:
        """The request's body, refused with 413 past the limit (from Content-Length,
        before reading, when it is given)."""
        declared = request.headers.get("content-length")
        if declared is not None and declared.isdigit() and int(declared) > self._max_body:
            raise self._too_large(int(declared))
        chunks, size = [], 0
        async for chunk in request.stream():
            size += len(chunk)
            if size > self._max_body:
                raise self._too_large(size)
            chunks.append(chunk)
        return b"".join(chunks)

    def _too_large(self, size: int) -> TooLarge:
        return TooLarge(
            f"the request body is {size} bytes or more, over this gateway's limit of "
            f"{self._max_body}; send fewer rows per request, or ask the operator to raise "
            "`maas gateway --max-body-bytes`"
        )


def _target(request: Request) -> Target:
    return Target.parse(request.path_params["model"], request.path_params.get("version"))


def _header_length(request: Request) -> int | None:
    value = request.headers.get(HEADER_LENGTH)
    if value is None:
        return None
    if not value.strip().isdigit():
        raise BadRequest(f"{HEADER_LENGTH} must be a number of bytes, got {value!r}")
    return int(value)


def _answered(model: str, answer: Answer, decoded: OipRequest) -> Response:
    body = encode_response(
        answer.outputs,
        model_name=model,
        model_version=answer.version,
        id=decoded.id,
        request=decoded,
    )
    if body.header_length is None:
        return Response(body.data, media_type=JSON)
    headers = {HEADER_LENGTH: str(body.header_length)}
    return Response(body.data, headers=headers, media_type="application/octet-stream")


def _shape_of(decoded: OipRequest) -> dict[str, Any]:
    """What shapes the response, sent with an async job (its answer echoes it back)."""
    wanted = [[output.name, output.binary] for output in decoded.outputs]
    return {"oip": {"id": decoded.id, "outputs": wanted, "binary": decoded.binary}}


def _request_of(metadata: dict[str, Any]) -> OipRequest:
    shape = metadata.get("oip") or {}
    wanted = tuple(WantedOutput(str(n), bool(b)) for n, b in shape.get("outputs") or ())
    return OipRequest(
        inputs={}, id=shape.get("id"), outputs=wanted, binary=bool(shape.get("binary"))
    )
