"""The gateway's gRPC door (``inference.GRPCInferenceService``), driven by Triton's gRPC
client in front of a real worker on both brokers: answers equal the model's own."""

from __future__ import annotations

from typing import TYPE_CHECKING

import numpy as np
import onnxruntime as ort
import pytest
import tritonclient.grpc as triton_grpc
from tritonclient.utils import InferenceServerException

from workers.recipes.demo import digits_samples

if TYPE_CHECKING:
    from tests.gateway_fixtures import GatewayStack

pytestmark = pytest.mark.both_brokers


def _client(stack: GatewayStack) -> triton_grpc.InferenceServerClient:
    return triton_grpc.InferenceServerClient(f"127.0.0.1:{stack.grpc_port}")


def test_health_and_metadata(gateway_stack: GatewayStack) -> None:
    client = _client(gateway_stack)
    assert client.is_server_live() and client.is_server_ready()
    assert "binary_tensor_data" in client.get_server_metadata().extensions
    assert client.is_model_ready("digits") and not client.is_model_ready("nope")
    metadata = client.get_model_metadata("digits", as_json=True)
    assert metadata["versions"] == [str(gateway_stack.version)]
    assert metadata["inputs"] == [{"name": "x", "datatype": "FP32", "shape": ["-1", "64"]}]


def test_model_infer_answers_the_models_outputs(gateway_stack: GatewayStack) -> None:
    pixels, _ = digits_samples(6)
    tensor = triton_grpc.InferInput("x", list(pixels.shape), "FP32")
    tensor.set_data_from_numpy(pixels)
    result = _client(gateway_stack).infer(
        "digits",
        [tensor],
        outputs=[
            triton_grpc.InferRequestedOutput("probabilities"),
            triton_grpc.InferRequestedOutput("label"),
        ],
        request_id="g-1",
    )
    direct = ort.InferenceSession(str(gateway_stack.artifact)).run(None, {"x": pixels})
    np.testing.assert_allclose(result.as_numpy("probabilities"), direct[0], rtol=1e-5, atol=1e-6)
    np.testing.assert_array_equal(result.as_numpy("label"), direct[1])
    response = result.get_response()
    assert response.id == "g-1" and response.model_version == str(gateway_stack.version)


@pytest.mark.parametrize(
    ("model", "columns", "status"),
    [("nope", 64, "StatusCode.NOT_FOUND"), ("digits", 63, "StatusCode.INVALID_ARGUMENT")],
)
def test_errors_are_grpc_status_codes(
    gateway_stack: GatewayStack, model: str, columns: int, status: str
) -> None:
    tensor = triton_grpc.InferInput("x", [1, columns], "FP32")
    tensor.set_data_from_numpy(np.zeros((1, columns), dtype=np.float32))
    with pytest.raises(InferenceServerException) as caught:
        _client(gateway_stack).infer(model, [tensor])
    assert caught.value.status() == status


def test_tokens_travel_as_metadata(gateway_stack: GatewayStack) -> None:
    pixels, _ = digits_samples(1)
    tensor = triton_grpc.InferInput("x", list(pixels.shape), "FP32")
    tensor.set_data_from_numpy(pixels)
    client = _client(gateway_stack)
    acme = {"authorization": f"Bearer {gateway_stack.tokens['acme']}"}
    assert client.infer("digits", [tensor], headers=acme).as_numpy("label") is not None
    beta = {"authorization": f"Bearer {gateway_stack.tokens['beta']}"}
    with pytest.raises(InferenceServerException) as refused:
        client.infer("digits", [tensor], headers=beta)
    assert refused.value.status() == "StatusCode.PERMISSION_DENIED"
    with pytest.raises(InferenceServerException) as unknown:
        client.infer("digits", [tensor], headers={"authorization": "Bearer nope"})
    assert unknown.value.status() == "StatusCode.UNAUTHENTICATED"
