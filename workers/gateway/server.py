"""Build the gateway once and run its doors until told to stop.

:func:`run` opens what the gateway needs (the registry's stores are passed in, the
Kafka clients open per tenant on demand), serves OIP REST with uvicorn and, when a
gRPC port is set, ``inference.GRPCInferenceService`` with grpc.aio, both in this
event loop, until ``stop`` is set. Ports 0 bind free ones (tests); :class:`Running`
says which.
"""

from __future__ import annotations

import asyncio
import contextlib
import socket
import uuid
from collections.abc import AsyncIterator, Callable
from dataclasses import dataclass

import grpc
import structlog
import uvicorn
from sqlalchemy import text

from producer.kafka import KafkaSettings
from registry.registry import Registry
from workers.gateway.auth import Authenticator, TokenSource
from workers.gateway.catalog import Catalog, ModelSource, TenantSource
from workers.gateway.dispatch import Dispatcher
from workers.gateway.grpc_door import GrpcDoor
from workers.gateway.jobs import AsyncJobs
from workers.gateway.limits import Admission
from workers.gateway.probes import Reachability
from workers.gateway.rest import RestApi
from workers.gateway.service import Gateway, Parts
from workers.gateway.settings import GatewaySettings
from workers.health import Probe, served

log = structlog.get_logger(__name__)


@dataclass(frozen=True, slots=True)
class Stores:
    """What the gateway reads from the registry, and how to see that it answers."""

    models: ModelSource
    tenants: TenantSource
    tokens: TokenSource
    ping: Callable[[], object]

    @classmethod
    def of(cls, registry: Registry) -> Stores:
        def ping() -> None:
            with registry.database.session() as session:
                session.execute(text("SELECT 1"))

        return cls(registry.models, registry.tenants, registry.tokens, ping)


@dataclass(frozen=True, slots=True)
class Running:
    """Where a started gateway listens (0: that door is closed)."""

    http_port: int
    grpc_port: int
    gateway_id: str


def build(
    kafka: KafkaSettings, stores: Stores, settings: GatewaySettings
) -> tuple[Gateway, Authenticator]:
    gateway_id = settings.gateway_id or uuid.uuid4().hex[:12]
    parts = Parts(
        settings=settings,
        catalog=Catalog(stores.models, stores.tenants, settings.token_ttl_s),
        dispatcher=Dispatcher(kafka, gateway_id),
        admission=Admission(settings.limits),
        reachability=Reachability(kafka.bootstrap_servers, stores.ping),
        jobs=AsyncJobs(settings.async_ttl_s),
    )
    auth = Authenticator(
        stores.tokens, allow_anonymous=settings.allow_anonymous, ttl_s=settings.token_ttl_s
    )
    return Gateway(parts), auth


def _listen(host: str, port: int) -> socket.socket:
    family = socket.AF_INET6 if ":" in host else socket.AF_INET
    sock = socket.socket(family, socket.SOCK_STREAM)
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    sock.bind((host, port))
    sock.listen(2048)
    sock.set_inheritable(True)
    return sock


@contextlib.asynccontextmanager
async def _http(
    gateway: Gateway, auth: Authenticator, settings: GatewaySettings
) -> AsyncIterator[int]:
    sock = _listen(settings.host, settings.http_port)
    config = uvicorn.Config(
        RestApi(gateway, auth).app(),
        log_config=None,
        access_log=False,
        lifespan="off",
        ssl_certfile=str(settings.tls_cert) if settings.tls_cert else None,
        ssl_keyfile=str(settings.tls_key) if settings.tls_key else None,
        timeout_graceful_shutdown=5,
    )
    server = uvicorn.Server(config)
    task = asyncio.create_task(server.serve(sockets=[sock]))
    while not server.started and not task.done():  # noqa: ASYNC110 uvicorn offers only a flag
        await asyncio.sleep(0.01)
    if task.done():
        await task  # raises why it could not start
    try:
        yield sock.getsockname()[1]
    finally:
        server.should_exit = True
        await task
        sock.close()


@contextlib.asynccontextmanager
async def _grpc(
    gateway: Gateway, auth: Authenticator, settings: GatewaySettings
) -> AsyncIterator[int]:
    """The gRPC door on ``settings.grpc_port`` (None: no door, port 0 yielded)."""
    if settings.grpc_port is None:
        yield 0
        return
    server = grpc.aio.server()
    server.add_generic_rpc_handlers((GrpcDoor(gateway, auth).handler(),))
    address = f"{settings.host}:{settings.grpc_port}"
    if settings.tls_cert is not None and settings.tls_key is not None:
        credentials = grpc.ssl_server_credentials(
            [(settings.tls_key.read_bytes(), settings.tls_cert.read_bytes())]
        )
        port = server.add_secure_port(address, credentials)
    else:
        port = server.add_insecure_port(address)
    await server.start()
    try:
        yield port
    finally:
        await server.stop(grace=5)


def _probe(reach: Reachability) -> Probe:
    async def probe() -> str | None:
        return reach.not_ready()

    return probe


async def run(
    kafka: KafkaSettings,
    stores: Stores,
    settings: GatewaySettings,
    stop: asyncio.Event,
    *,
    started: Callable[[Running], object] | None = None,
) -> None:
    """Serve until ``stop`` is set; ``started`` is called once both doors listen."""
    gateway, auth = build(kafka, stores, settings)
    reach = gateway.parts.reachability
    watch = asyncio.create_task(reach.run())
    try:
        await reach.checked.wait()
        async with (
            served(settings.metrics_port, _probe(reach)),
            _http(gateway, auth, settings) as http_port,
            _grpc(gateway, auth, settings) as grpc_port,
        ):
            running = Running(http_port, grpc_port, gateway.parts.dispatcher.gateway_id)
            log.info(
                "gateway serving",
                http_port=http_port,
                grpc_port=grpc_port,
                anonymous=settings.allow_anonymous,
                tls=settings.tls_cert is not None,
            )
            if started is not None:
                started(running)
            await stop.wait()
    finally:
        watch.cancel()
        with contextlib.suppress(asyncio.CancelledError):
            await watch
        await gateway.parts.dispatcher.close()
