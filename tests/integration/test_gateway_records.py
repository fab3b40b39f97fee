"""What the gateway puts on Kafka: every request, REST or gRPC, JSON or binary, is an
OIP record in the binary layout whose tensor bytes are the caller's own, and the
answers Triton's clients read back equal the model's, on both brokers."""

from __future__ import annotations

import asyncio
from typing import TYPE_CHECKING

import numpy as np
import onnxruntime as ort
import pytest
import tritonclient.grpc as triton_grpc
import tritonclient.http as triton_http

from producer.contract.oip import CONTENT_TYPE, HEADER_LENGTH, decode_request
from tests.kafka_helpers import read_all
from workers.recipes.demo import digits_samples

if TYPE_CHECKING:
    from aiokafka.structs import ConsumerRecord

    from tests.gateway_fixtures import GatewayStack

pytestmark = pytest.mark.both_brokers

OUTPUTS = ("probabilities", "label")


def _rest(stack: GatewayStack, pixels: np.ndarray, binary: bool) -> dict[str, np.ndarray]:
    client = triton_http.InferenceServerClient(stack.http.removeprefix("http://"))
    tensor = triton_http.InferInput("x", list(pixels.shape), "FP32")
    tensor.set_data_from_numpy(pixels, binary_data=binary)
    wanted = [triton_http.InferRequestedOutput(name, binary_data=binary) for name in OUTPUTS]
    result = client.infer("digits", [tensor], outputs=wanted)
    response = result.get_response()
    # The caller's form: raw bytes (binary_data_size) when asked for, JSON data otherwise.
    assert all(("data" in out) != binary for out in response["outputs"]), response
    return {name: result.as_numpy(name) for name in OUTPUTS}


def _grpc(stack: GatewayStack, pixels: np.ndarray) -> dict[str, np.ndarray]:
    client = triton_grpc.InferenceServerClient(f"127.0.0.1:{stack.grpc_port}")
    tensor = triton_grpc.InferInput("x", list(pixels.shape), "FP32")
    tensor.set_data_from_numpy(pixels)  # raw_input_contents
    result = client.infer("digits", [tensor])
    assert len(result.get_response().raw_output_contents) == len(OUTPUTS)
    return {name: result.as_numpy(name) for name in OUTPUTS}


def _published(stack: GatewayStack) -> list[ConsumerRecord[bytes, bytes]]:
    records = asyncio.run(read_all(stack.kafka, stack.kafka.topics.predict))
    return [r for r in records if dict(r.headers).get("maas-model") == b"digits"]


def test_every_request_travels_as_a_binary_oip_record_and_answers_as_the_model_does(
    gateway_stack: GatewayStack,
) -> None:
    pixels, _ = digits_samples(9)
    sent = {  # rows of the one sample set, each request its own, so its record is found
        "rest-json": pixels[0:3],
        "rest-binary": pixels[3:6],
        "grpc": pixels[6:9],
    }
    answers = {
        "rest-json": _rest(gateway_stack, sent["rest-json"], binary=False),
        "rest-binary": _rest(gateway_stack, sent["rest-binary"], binary=True),
        "grpc": _grpc(gateway_stack, sent["grpc"]),
    }
    session = ort.InferenceSession(str(gateway_stack.artifact))
    for way, rows in sent.items():
        direct = dict(zip(OUTPUTS, session.run(list(OUTPUTS), {"x": rows}), strict=True))
        np.testing.assert_allclose(answers[way]["probabilities"], direct["probabilities"], rtol=1e-5, atol=1e-6)  # fmt: skip
        np.testing.assert_array_equal(answers[way]["label"], direct["label"])

    by_bytes = {}
    for record in _published(gateway_stack):
        headers = dict(record.headers)
        assert headers["content-type"] == CONTENT_TYPE.encode()
        assert int(headers["maas-deadline-ms"]) > 0
        assert b".results.gateway-" in headers["maas-reply-to"]
        length = int(headers[HEADER_LENGTH])
        request = decode_request(record.value, length)
        assert request.binary and request.parameters["binary_data_output"] is True
        by_bytes[record.value[length:]] = request
    for way, rows in sent.items():
        # The record's tensor bytes are the request's float32 bytes: no JSON numbers.
        request = by_bytes.get(rows.astype("<f4").tobytes())
        assert request is not None, f"no binary record carries the {way} request's pixels"
        np.testing.assert_array_equal(request.inputs["x"], rows)
