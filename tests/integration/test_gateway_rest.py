"""The gateway's REST door, driven by Triton's HTTP client and by plain httpx, in front
of a real worker on both brokers: answers equal the model's own."""

from __future__ import annotations

import socket
import time
from pathlib import Path
from typing import TYPE_CHECKING

import httpx
import numpy as np
import onnxruntime as ort
import pytest
import tritonclient.http as triton_http

from producer import Client
from registry.drafts import Draft
from registry.registry import Registry
from tests.deploy_helpers import exported_names, names_used_in_deploy
from tests.gateway_fixtures import start_gateway
from tests.optimize_helpers import build_text_model
from workers.gateway import GatewaySettings
from workers.recipes.demo import digits_samples

if TYPE_CHECKING:
    from tests.gateway_fixtures import GatewayStack

pytestmark = pytest.mark.both_brokers


def _direct(stack: GatewayStack, pixels: np.ndarray) -> list[np.ndarray]:
    return ort.InferenceSession(str(stack.artifact)).run(None, {"x": pixels})  # type: ignore[no-any-return]


def _json_request(pixels: np.ndarray, **extra: object) -> dict[str, object]:
    return {
        "inputs": [
            {
                "name": "x",
                "datatype": "FP32",
                "shape": list(pixels.shape),
                "data": pixels.ravel().tolist(),
            }
        ],
        **extra,
    }


def test_health_and_server_metadata(gateway_stack: GatewayStack) -> None:
    with httpx.Client(base_url=gateway_stack.http) as http:
        assert http.get("/v2/health/live").status_code == 200
        assert http.get("/v2/health/ready").status_code == 200
        server = http.get("/v2").json()
    assert server["name"] == "maas" and "binary_tensor_data" in server["extensions"]


def test_model_metadata_comes_from_the_signature(gateway_stack: GatewayStack) -> None:
    client = triton_http.InferenceServerClient(gateway_stack.http.removeprefix("http://"))
    metadata = client.get_model_metadata("digits")
    assert metadata["name"] == "digits" and metadata["versions"] == [str(gateway_stack.version)]
    assert metadata["inputs"] == [{"name": "x", "datatype": "FP32", "shape": [-1, 64]}]
    outputs = {o["name"]: o["datatype"] for o in metadata["outputs"]}
    assert outputs == {"probabilities": "FP32", "label": "INT64"}
    assert client.is_model_ready("digits")
    assert client.is_model_ready("digits", str(gateway_stack.version))
    assert not client.is_model_ready("nope")


@pytest.mark.parametrize("binary", [False, True])
def test_triton_http_client_gets_the_models_answer(
    gateway_stack: GatewayStack, binary: bool
) -> None:
    pixels, _ = digits_samples(5)
    client = triton_http.InferenceServerClient(gateway_stack.http.removeprefix("http://"))
    tensor = triton_http.InferInput("x", list(pixels.shape), "FP32")
    tensor.set_data_from_numpy(pixels, binary_data=binary)
    outputs = [
        triton_http.InferRequestedOutput(name, binary_data=binary)
        for name in ("probabilities", "label")
    ]
    result = client.infer("digits", [tensor], outputs=outputs, request_id="req-1")
    direct = _direct(gateway_stack, pixels)
    np.testing.assert_allclose(result.as_numpy("probabilities"), direct[0], rtol=1e-5, atol=1e-6)
    np.testing.assert_array_equal(result.as_numpy("label"), direct[1])
    response = result.get_response()
    assert response["id"] == "req-1" and response["model_version"] == str(gateway_stack.version)


def test_plain_json_over_httpx_with_a_version_in_the_path(gateway_stack: GatewayStack) -> None:
    pixels, _ = digits_samples(3)
    path = f"/v2/models/digits/versions/{gateway_stack.version}/infer"
    with httpx.Client(base_url=gateway_stack.http, timeout=30) as http:
        response = http.post(
            path, json=_json_request(pixels, id="abc", outputs=[{"name": "label"}])
        )
    assert response.status_code == 200, response.text
    body = response.json()
    assert body["id"] == "abc" and body["model_name"] == "digits"
    assert [o["name"] for o in body["outputs"]] == ["label"]
    assert body["outputs"][0]["datatype"] == "INT64" and body["outputs"][0]["shape"] == [3]
    assert body["outputs"][0]["data"] == _direct(gateway_stack, pixels)[1].tolist()


@pytest.mark.parametrize(
    ("path", "request_body", "status", "words"),
    [
        ("/v2/models/nope/infer", None, 404, "nope"),
        ("/v2/models/digits/versions/99/infer", None, 404, "99"),
        (
            "/v2/models/digits/infer",
            {"inputs": [{"name": "x", "datatype": "FP32", "shape": [1, 63], "data": [0.0] * 63}]},
            400,
            "x",
        ),
        (
            "/v2/models/digits/infer",
            {"inputs": [{"name": "x", "datatype": "FP32", "shape": [1, 64], "data": [0.0] * 3}]},
            400,
            "x",
        ),
        ("/v2/models/digits/infer", {"inputs": "nope"}, 400, "inputs"),
    ],
)
def test_errors_answer_their_status_with_an_oip_error_body(
    gateway_stack: GatewayStack, path: str, request_body: object, status: int, words: str
) -> None:
    body = request_body if request_body is not None else _json_request(digits_samples(1)[0])
    with httpx.Client(base_url=gateway_stack.http, timeout=30) as http:
        response = http.post(path, json=body)
    assert response.status_code == status, response.text
    assert words in response.json()["error"]


def test_a_body_over_the_limit_is_refused_before_it_is_read(gateway_stack: GatewayStack) -> None:
    # Headers that announce 10 MiB, and not one byte of the body: the answer still comes.
    with socket.create_connection(("127.0.0.1", gateway_stack.http_port), timeout=30) as sock:
        sock.sendall(
            b"POST /v2/models/digits/infer HTTP/1.1\r\nHost: gw\r\n"
            b"Content-Type: application/json\r\nContent-Length: 10485760\r\n\r\n"
        )
        head = b""
        while b'"}' not in head and (chunk := sock.recv(65536)):
            head += chunk
    assert head.startswith(b"HTTP/1.1 413") and b"limit" in head
    with httpx.Client(base_url=gateway_stack.http, timeout=30) as http:
        chunked = http.post("/v2/models/digits/infer", content=iter([b" " * (512 << 10)] * 4))
    assert chunked.status_code == 413


def test_respond_async_answers_202_with_a_location_to_poll(gateway_stack: GatewayStack) -> None:
    pixels, _ = digits_samples(2)
    with httpx.Client(base_url=gateway_stack.http, timeout=30) as http:
        accepted = http.post(
            "/v2/models/digits/infer",
            json=_json_request(pixels, id="later"),
            headers={"Prefer": "respond-async"},
        )
        assert accepted.status_code == 202, accepted.text
        location = accepted.headers["location"]
        deadline = time.monotonic() + 30
        polled = http.get(location)
        while polled.status_code == 202 and time.monotonic() < deadline:
            time.sleep(0.05)
            polled = http.get(location)
        assert http.get("/v2/jobs/nojob").status_code == 404
        assert http.get("/v2/jobs/nogateway-job").status_code == 404
    assert polled.status_code == 200, polled.text
    body = polled.json()
    assert body["id"] == "later"
    labels = next(o for o in body["outputs"] if o["name"] == "label")["data"]
    assert labels == _direct(gateway_stack, pixels)[1].tolist()


def test_the_gateway_exports_every_gateway_metric_that_deploy_queries(
    gateway_stack: GatewayStack,
) -> None:
    with httpx.Client(base_url=gateway_stack.http, timeout=30) as http:
        http.post("/v2/models/digits/infer", json=_json_request(digits_samples(1)[0]))
        page = http.get("/metrics").text
    wanted = {name for name in names_used_in_deploy() if name.startswith("maas_gateway_")}
    assert len(wanted) >= 4
    assert wanted <= exported_names(page)


def test_a_text_model_takes_bytes_as_json_and_binary(
    gateway_stack: GatewayStack, tmp_path: Path
) -> None:
    with Registry.open(gateway_stack.registry) as registry:
        registry.models.register(
            "texts", Draft(build_text_model(tmp_path / "texts"), promote=True), actor="test"
        )
    texts = np.array([b"good movie", b"bad"], dtype=object)
    client = triton_http.InferenceServerClient(gateway_stack.http.removeprefix("http://"))
    metadata = client.get_model_metadata("texts")
    assert metadata["inputs"] == [{"name": "text", "datatype": "BYTES", "shape": [-1]}]
    answers = []
    for binary in (False, True):
        tensor = triton_http.InferInput("text", [2], "BYTES")
        tensor.set_data_from_numpy(texts, binary_data=binary)
        answers.append(client.infer("texts", [tensor]).as_numpy("embedding"))
    with Client(gateway_stack.kafka, timeout_s=30) as sdk:
        direct = sdk.predict("texts", {"text": ["good movie", "bad"]})
    assert direct.outputs is not None
    for answer in answers:
        assert answer is not None and answer.shape == (2, 8) and answer.dtype == np.float32
        np.testing.assert_allclose(answer, direct.outputs["embedding"], rtol=1e-6)


def test_an_async_answer_lives_on_kafka_for_any_gateway_to_give(
    gateway_stack: GatewayStack,
) -> None:
    """Submitted through a gateway that is then stopped, polled on another."""
    settings = GatewaySettings(host="127.0.0.1", http_port=0, grpc_port=None, allow_anonymous=True)
    thread, running = start_gateway(gateway_stack.kafka, gateway_stack.registry, settings)
    pixels, _ = digits_samples(2)
    try:
        with httpx.Client(base_url=f"http://127.0.0.1:{running.http_port}", timeout=30) as http:
            accepted = http.post(
                "/v2/models/digits/infer",
                json=_json_request(pixels, id="survivor", outputs=[{"name": "label"}]),
                headers={"Prefer": "respond-async"},
            )
    finally:
        thread.stop()
    assert accepted.status_code == 202, accepted.text
    with httpx.Client(base_url=gateway_stack.http, timeout=30) as http:
        deadline = time.monotonic() + 30
        polled = http.get(accepted.headers["location"])
        while polled.status_code == 202 and time.monotonic() < deadline:
            time.sleep(0.2)
            polled = http.get(accepted.headers["location"])
    assert polled.status_code == 200, polled.text
    body = polled.json()
    assert body["id"] == "survivor" and [o["name"] for o in body["outputs"]] == ["label"]
    assert body["outputs"][0]["data"] == _direct(gateway_stack, pixels)[1].tolist()
