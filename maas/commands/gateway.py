"""``maas gateway``: the Open Inference Protocol over HTTP and gRPC, served through Kafka."""

from __future__ import annotations

import argparse
import asyncio
import signal
from collections.abc import Callable
from pathlib import Path

from maas.commands.common import (
    Subparsers,
    add_kafka_options,
    add_metrics_option,
    add_registry_options,
    add_setting,
    add_verb,
    kafka_settings,
    positive_int,
    registry_settings,
)
from maas.errors import CommandError
from producer.kafka import KafkaSettings
from registry.registry import Registry
from workers.gateway import GatewaySettings, Limits, Running, Stores
from workers.gateway import run as run_gateway

DEFAULTS = GatewaySettings()


def register(subparsers: Subparsers) -> None:
    add_verb(
        subparsers,
        "gateway",
        run,
        summary="serve the Open Inference Protocol (V2) over HTTP and gRPC",
        description="Answer OIP V2 REST (/v2/...) and gRPC (inference.GRPCInferenceService) "
        "requests by publishing PredictJobs on the caller's tenant's predict topic and "
        "waiting for their Results. Callers authenticate with bearer tokens (`maas tenants "
        "token create TENANT`); the tenant comes from the token. Run as many as the load needs.",
        options=(
            _options,
            _limit_options,
            add_metrics_option,
            add_kafka_options,
            add_registry_options,
        ),
    )


def _port(text: str) -> int:
    port = int(text)
    if not 0 <= port <= 65535:
        raise argparse.ArgumentTypeError(f"{port} is not a TCP port (0-65535)")
    return port


def _options(parser: argparse.ArgumentParser) -> None:
    parser.add_argument(
        "--host", default=DEFAULTS.host, help="address to listen on (default 0.0.0.0)"
    )
    add_setting(parser, "--http-port", GatewaySettings, "http_port", "OIP REST port", type=_port)
    add_setting(
        parser, "--grpc-port", GatewaySettings, "grpc_port", "OIP gRPC port (0: none)", type=_port
    )
    parser.add_argument("--tls-cert", type=Path, metavar="F", help="PEM certificate: serve TLS")
    parser.add_argument("--tls-key", type=Path, metavar="F", help="PEM private key of --tls-cert")
    parser.add_argument(
        "--allow-anonymous",
        action="store_true",
        help="a request without a token acts for the default tenant (for demos on one "
        "machine; off by default, and in compose and Kubernetes)",
    )
    add_setting(
        parser,
        "--max-body-bytes",
        GatewaySettings,
        "max_body_bytes",
        "larger request bodies are answered 413 before they are read",
        type=positive_int,
    )
    add_setting(
        parser, "--timeout-s", GatewaySettings, "timeout_s", "how long a request waits (then 504)"
    )
    add_setting(
        parser,
        "--token-ttl-s",
        GatewaySettings,
        "token_ttl_s",
        "a checked token is trusted this long (a revoked one stops working within it)",
    )
    parser.add_argument(
        "--gateway-id", default="", help="names this gateway's reply topics (default: random)"
    )


def _limit_options(parser: argparse.ArgumentParser) -> None:
    group = parser.add_argument_group("per-tenant limits (429 with Retry-After beyond them)")
    add_setting(
        group, "--tenant-concurrency", Limits, "concurrency", "requests in flight (0: none)"
    )
    add_setting(group, "--tenant-rate", Limits, "rate", "requests per second (0: no limit)")
    add_setting(group, "--tenant-burst", Limits, "burst", "requests above the rate at once")


def settings_of(args: argparse.Namespace) -> GatewaySettings:
    if (args.tls_cert is None) != (args.tls_key is None):
        raise CommandError("--tls-cert and --tls-key go together: give both or neither")
    for path in (args.tls_cert, args.tls_key):
        if path is not None and not path.is_file():
            raise CommandError(f"{path} is not a readable file (--tls-cert/--tls-key)")
    if args.timeout_s <= 0 or args.token_ttl_s < 0 or args.tenant_rate < 0:
        raise CommandError(
            "--timeout-s must be positive; --token-ttl-s and --tenant-rate not negative"
        )
    return GatewaySettings(
        host=args.host,
        http_port=args.http_port,
        grpc_port=args.grpc_port or None,
        metrics_port=args.metrics_port,
        tls_cert=args.tls_cert,
        tls_key=args.tls_key,
        allow_anonymous=args.allow_anonymous,
        max_body_bytes=args.max_body_bytes,
        timeout_s=args.timeout_s,
        token_ttl_s=args.token_ttl_s,
        gateway_id=args.gateway_id,
        limits=Limits(
            concurrency=args.tenant_concurrency, rate=args.tenant_rate, burst=args.tenant_burst
        ),
    )


def run(args: argparse.Namespace) -> int:
    settings = settings_of(args)
    kafka = kafka_settings(args)
    with Registry.open(registry_settings(args)) as registry:
        asyncio.run(_serve(kafka, Stores.of(registry), settings))
    return 0


async def _serve(kafka: KafkaSettings, stores: Stores, settings: GatewaySettings) -> None:
    stop = asyncio.Event()
    loop = asyncio.get_running_loop()
    for sig in (signal.SIGINT, signal.SIGTERM):
        loop.add_signal_handler(sig, stop.set)
    try:
        await run_gateway(kafka, stores, settings, stop, started=_announce(settings))
    except OSError as exc:
        raise CommandError(f"the gateway could not listen: {exc}") from exc


def _announce(settings: GatewaySettings) -> Callable[[Running], None]:
    def started(running: Running) -> None:
        scheme = "https" if settings.tls_cert else "http"
        print(f"gateway: OIP REST on {scheme}://{settings.host}:{running.http_port}/v2", flush=True)
        if running.grpc_port:
            print(f"gateway: OIP gRPC on {settings.host}:{running.grpc_port}", flush=True)
        if settings.allow_anonymous:
            print("gateway: anonymous calls allowed: they act for the default tenant", flush=True)

    return started
