"""The gateway when things break: a worker killed mid-request, no worker at all, the
broker gone. A caller always gets an answer: the model's, a 504 naming the job, or a
503 at once while the broker is down; never a hang."""

from __future__ import annotations

import asyncio
import re
import time
from dataclasses import replace
from pathlib import Path
from typing import TYPE_CHECKING

import httpx
import numpy as np
import onnxruntime as ort
import pytest
import tritonclient.http as triton_http

from maas.broker import EmbeddedBroker
from producer.kafka import KafkaSettings, Topics
from tests.gateway_fixtures import start_gateway
from workers.gateway import GatewaySettings
from workers.recipes.demo import digits_samples

if TYPE_CHECKING:
    from registry.entities import ModelVersion
    from registry.settings import RegistrySettings
    from tests.fault_helpers import Workers

pytestmark = pytest.mark.slow

SETTINGS = GatewaySettings(
    host="127.0.0.1", http_port=0, grpc_port=None, allow_anonymous=True, timeout_s=20.0
)


def _body(pixels: np.ndarray) -> dict[str, object]:
    return {"inputs": [{"name": "x", "datatype": "FP32", "shape": list(pixels.shape), "data": pixels.ravel().tolist()}]}  # fmt: skip


async def test_a_worker_killed_mid_request_leaves_no_caller_hanging(
    kafka: KafkaSettings, workers: Workers, digits_registry: RegistrySettings, digits_artifact: Path
) -> None:
    thread, running = start_gateway(kafka, digits_registry, replace(SETTINGS, timeout_s=4.0))
    pixels, _ = digits_samples(12)
    labels = ort.InferenceSession(str(digits_artifact)).run(None, {"x": pixels})[1].tolist()
    try:
        async with httpx.AsyncClient(
            base_url=f"http://127.0.0.1:{running.http_port}", timeout=120
        ) as http:
            # No worker yet: the caller hears so when its time is up, with the job's id.
            nobody = await http.post("/v2/models/digits/infer", json=_body(pixels[:1]))
            assert nobody.status_code == 504, nobody.text
            assert re.search(r"job [0-9a-f]{32}", nobody.json()["error"])

            first = workers.start()
            await workers.assigned(0, 60)
            warm = await http.post("/v2/models/digits/infer", json=_body(pixels[:1]))
            assert warm.status_code == 200, warm.text
            calls = [
                asyncio.create_task(
                    http.post("/v2/models/digits/infer", json=_body(pixels[i : i + 1]))
                )
                for i in range(len(pixels))
            ]
            first.kill()
            workers.start()
            answers = await asyncio.gather(*calls)
    finally:
        thread.stop()
    for i, answer in enumerate(answers):
        if answer.status_code == 200:
            label = next(o for o in answer.json()["outputs"] if o["name"] == "label")["data"]
            assert label == [labels[i]]
        else:
            assert answer.status_code == 504, answer.text
            assert re.search(r"job [0-9a-f]{32}", answer.json()["error"])


@pytest.mark.broker  # starts an embedded broker of its own
def test_with_the_broker_down_requests_are_503_at_once(
    registry_settings: RegistrySettings, digits: ModelVersion
) -> None:
    broker = EmbeddedBroker().start()
    kafka = KafkaSettings(
        bootstrap_servers=broker.bootstrap_servers, topics=Topics("down."), embedded=True
    )
    thread, running = start_gateway(kafka, registry_settings, replace(SETTINGS, timeout_s=600.0))
    try:
        with httpx.Client(base_url=f"http://127.0.0.1:{running.http_port}", timeout=120) as http:
            assert http.get("/v2/health/ready").status_code == 200
            broker.stop()
            deadline = time.monotonic() + 30
            while http.get("/v2/health/ready").status_code == 200 and time.monotonic() < deadline:
                time.sleep(0.2)  # polling the probe: no event to wait on
            ready = http.get("/v2/health/ready")
            # A 600 s timeout: only the broker check can answer this request now.
            refused = http.post("/v2/models/digits/infer", json=_body(digits_samples(1)[0]))
            assert http.get("/v2/health/live").status_code == 200
    finally:
        thread.stop()
        broker.stop()
    assert ready.status_code == 503 and "broker" in ready.json()["error"]
    assert refused.status_code == 503 and "broker" in refused.json()["error"]


def test_a_restarted_gateway_serves_its_old_clients_again(
    kafka: KafkaSettings, workers: Workers, digits_registry: RegistrySettings
) -> None:
    workers.start()
    asyncio.run(workers.assigned(0, 60))
    thread, running = start_gateway(kafka, digits_registry, SETTINGS)
    port = running.http_port
    client = triton_http.InferenceServerClient(f"127.0.0.1:{port}")
    pixels, _ = digits_samples(2)
    tensor = triton_http.InferInput("x", list(pixels.shape), "FP32")
    tensor.set_data_from_numpy(pixels, binary_data=True)
    try:
        before = client.infer("digits", [tensor]).as_numpy("label")
        thread.stop()
        thread, running = start_gateway(kafka, digits_registry, replace(SETTINGS, http_port=port))
        after = client.infer("digits", [tensor]).as_numpy("label")  # the same client object
    finally:
        thread.stop()
    assert before is not None and after is not None
    np.testing.assert_array_equal(before, after)
