"""The gateway's settings: one frozen value built at the entrypoint (flags and env)."""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path


@dataclass(frozen=True, slots=True)
class Limits:
    """What one tenant may ask of one gateway at once.

    ``concurrency``: requests in flight (waiting for their answer); ``rate`` requests
    per second on average with bursts of ``burst`` (a token bucket); 0 turns a limit
    off. Over either, the request is answered 429 with ``Retry-After``.
    """

    concurrency: int = 256
    rate: float = 0.0
    burst: int = 100


@dataclass(frozen=True, slots=True)
class GatewaySettings:
    """``http_port`` and ``grpc_port`` (0: any free port; ``grpc_port`` None: no gRPC); TLS on both when ``tls_cert`` and
    ``tls_key`` are given. ``allow_anonymous``: a request without a token acts for the
    default tenant (the demo's setting; off in compose and Kubernetes).
    ``max_body_bytes``: a larger request is answered 413 before its body is read.
    ``timeout_s``: how long a request waits for its answer (then 504, and the job's
    deadline, so a worker answers it EXPIRED rather than run it late). ``token_ttl_s``:
    how long a checked token is trusted before the registry is asked again (so a
    revoked token stops working within that long on every gateway)."""

    host: str = "0.0.0.0"
    http_port: int = 8080
    grpc_port: int | None = 8081
    metrics_port: int = 0  # also /metrics, /healthz, /readyz there, as every maas process
    tls_cert: Path | None = None
    tls_key: Path | None = None
    allow_anonymous: bool = False
    max_body_bytes: int = 16 * 1024 * 1024
    timeout_s: float = 30.0
    token_ttl_s: float = 2.0
    async_ttl_s: float = 600.0
    gateway_id: str = ""
    limits: Limits = Limits()
