"""Who is calling the gateway: bearer tokens name the tenant, revoked ones stop within
seconds, grants answer 403, limits answer 429 with Retry-After, TLS serves https."""

from __future__ import annotations

import asyncio
import ssl
import subprocess
import time
from collections.abc import Iterator
from dataclasses import replace
from pathlib import Path
from typing import TYPE_CHECKING

import httpx
import pytest
from aiokafka.admin import AIOKafkaAdminClient

from registry.registry import Registry
from tests.gateway_fixtures import Thread, start_gateway
from workers.gateway import GatewaySettings, Limits
from workers.recipes.demo import digits_samples

if TYPE_CHECKING:
    from tests.gateway_fixtures import GatewayStack

pytestmark = pytest.mark.both_brokers

CLOSED = GatewaySettings(
    host="127.0.0.1", http_port=0, grpc_port=0, allow_anonymous=False, token_ttl_s=0.5
)


def _infer_body() -> dict[str, object]:
    pixels, _ = digits_samples(1)
    return {
        "inputs": [
            {"name": "x", "datatype": "FP32", "shape": [1, 64], "data": pixels.ravel().tolist()}
        ]
    }


def _bearer(token: str) -> dict[str, str]:
    return {"Authorization": f"Bearer {token}"}


@pytest.fixture(scope="module")
def closed(gateway_stack: GatewayStack) -> Iterator[str]:
    """A second gateway on the stack that lets no anonymous caller in: its base URL."""
    thread, running = start_gateway(gateway_stack.kafka, gateway_stack.registry, CLOSED)
    yield f"http://127.0.0.1:{running.http_port}"
    thread.stop()


def test_a_tenants_token_runs_its_jobs_in_its_namespace(
    gateway_stack: GatewayStack, closed: str
) -> None:
    with httpx.Client(base_url=closed, timeout=30) as http:
        answered = http.post(
            "/v2/models/digits/infer",
            json=_infer_body(),
            headers={**_bearer(gateway_stack.tokens["acme"]), "X-Tenant": "beta"},
        )
    assert answered.status_code == 200, answered.text
    topics = asyncio.run(_topics(gateway_stack.kafka.bootstrap_servers))
    acme_replies = [
        t
        for t in topics
        if t.startswith(f"{gateway_stack.kafka.topics.prefix}acme.results.gateway-")
    ]
    assert acme_replies, topics


async def _topics(bootstrap_servers: str) -> set[str]:
    admin = AIOKafkaAdminClient(bootstrap_servers=bootstrap_servers)
    await admin.start()
    try:
        return set(await admin.list_topics())
    finally:
        await admin.close()


@pytest.mark.parametrize(
    ("headers", "status"),
    [
        ({}, 401),
        ({"Authorization": "Bearer maas_nope_nope"}, 401),
        ({"Authorization": "Basic dXNlcjpwYXNz"}, 401),
    ],
)
def test_no_token_or_a_bad_one_is_401(closed: str, headers: dict[str, str], status: int) -> None:
    with httpx.Client(base_url=closed, timeout=30) as http:
        for response in (
            http.post("/v2/models/digits/infer", json=_infer_body(), headers=headers),
            http.get("/v2/models/digits", headers=headers),
        ):
            assert response.status_code == status, response.text
            assert "token" in response.json()["error"] or "Bearer" in response.json()["error"]
        assert http.get("/v2/health/live").status_code == 200  # probes need no token


def test_a_model_the_tenant_is_not_granted_is_403(gateway_stack: GatewayStack, closed: str) -> None:
    headers = _bearer(gateway_stack.tokens["beta"])
    with httpx.Client(base_url=closed, timeout=30) as http:
        infer = http.post("/v2/models/digits/infer", json=_infer_body(), headers=headers)
        metadata = http.get("/v2/models/digits", headers=headers)
    assert infer.status_code == metadata.status_code == 403
    assert "maas tenants grant beta digits" in infer.json()["error"]


def test_a_revoked_token_is_refused_within_seconds(
    gateway_stack: GatewayStack, closed: str
) -> None:
    with Registry.open(gateway_stack.registry) as registry:
        token, secret = registry.tokens.create("acme", actor="test")
        with httpx.Client(base_url=closed, timeout=30) as http:
            assert http.get("/v2/models/digits", headers=_bearer(secret)).status_code == 200
            registry.tokens.revoke(token.id, actor="test")
            deadline = time.monotonic() + 10
            status = 200
            while status == 200 and time.monotonic() < deadline:
                status = http.get("/v2/models/digits", headers=_bearer(secret)).status_code
                time.sleep(0.1)
    assert status == 401


def test_over_the_rate_is_429_with_retry_after(gateway_stack: GatewayStack) -> None:
    settings = replace(CLOSED, limits=Limits(concurrency=8, rate=0.001, burst=1))
    thread, running = start_gateway(gateway_stack.kafka, gateway_stack.registry, settings)
    try:
        headers = _bearer(gateway_stack.tokens["acme"])
        with httpx.Client(base_url=f"http://127.0.0.1:{running.http_port}", timeout=30) as http:
            first = http.post("/v2/models/digits/infer", json=_infer_body(), headers=headers)
            second = http.post("/v2/models/digits/infer", json=_infer_body(), headers=headers)
    finally:
        thread.stop()
    assert first.status_code == 200, first.text
    assert second.status_code == 429 and int(second.headers["retry-after"]) >= 1
    assert "acme" in second.json()["error"]


def _self_signed(folder: Path) -> tuple[Path, Path]:
    cert, key = folder / "cert.pem", folder / "key.pem"
    subprocess.run(
        ["openssl", "req", "-x509", "-newkey", "rsa:2048", "-nodes", "-days", "1",
         "-subj", "/CN=127.0.0.1", "-addext", "subjectAltName=IP:127.0.0.1",
         "-keyout", str(key), "-out", str(cert)],
        check=True,
        capture_output=True,
    )  # fmt: skip
    return cert, key


def test_tls_serves_https(gateway_stack: GatewayStack, tmp_path: Path) -> None:
    cert, key = _self_signed(tmp_path)
    settings = replace(CLOSED, tls_cert=cert, tls_key=key)
    thread: Thread
    thread, running = start_gateway(gateway_stack.kafka, gateway_stack.registry, settings)
    try:
        base = f"https://127.0.0.1:{running.http_port}"
        with httpx.Client(
            base_url=base, verify=ssl.create_default_context(cafile=str(cert)), timeout=30
        ) as http:
            live = http.get("/v2/health/live")
            answered = http.post(
                "/v2/models/digits/infer",
                json=_infer_body(),
                headers=_bearer(gateway_stack.tokens["acme"]),
            )
    finally:
        thread.stop()
    assert live.status_code == 200
    assert answered.status_code == 200, answered.text
