"""ModelInferRequest tensors → arrays and answers → ModelInferResponse, without a server."""

from __future__ import annotations

import struct

import numpy as np
import pytest
from google.protobuf import descriptor_pool

from producer.contract.messages import Result
from producer.contract.oip import OipDecodeError
from workers.gateway.errors import BadRequest
from workers.gateway.grpc_door import inputs_of, response_of
from workers.gateway.proto import oip_pb2 as pb
from workers.gateway.service import Answer


def _request(**fields: object) -> pb.ModelInferRequest:
    return pb.ModelInferRequest(model_name="m", **fields)


def test_typed_contents_and_raw_buffers_give_the_same_arrays() -> None:
    x = np.arange(6, dtype=np.float32).reshape(2, 3)
    typed = _request(
        inputs=[
            pb.ModelInferRequest.InferInputTensor(
                name="x",
                datatype="FP32",
                shape=[2, 3],
                contents=pb.InferTensorContents(fp32_contents=x.ravel()),
            ),
            pb.ModelInferRequest.InferInputTensor(
                name="text",
                datatype="BYTES",
                shape=[2],
                contents=pb.InferTensorContents(bytes_contents=[b"a", b"bc"]),
            ),
        ]
    )
    raw = _request(
        inputs=[
            pb.ModelInferRequest.InferInputTensor(name="x", datatype="FP32", shape=[2, 3]),
            pb.ModelInferRequest.InferInputTensor(name="text", datatype="BYTES", shape=[2]),
        ],
        raw_input_contents=[
            x.tobytes(),
            struct.pack("<I", 1) + b"a" + struct.pack("<I", 2) + b"bc",
        ],
    )
    for request in (typed, raw):
        arrays = inputs_of(request)
        np.testing.assert_array_equal(arrays["x"], x)
        assert arrays["x"].dtype == np.float32
        assert arrays["text"].tolist() == [b"a", b"bc"]


@pytest.mark.parametrize(
    ("request_fields", "error"),
    [
        ({"inputs": []}, BadRequest),
        (
            {
                "inputs": [
                    pb.ModelInferRequest.InferInputTensor(
                        name="x",
                        datatype="FP32",
                        shape=[2],
                        contents=pb.InferTensorContents(fp32_contents=[1.0]),
                    )
                ]
            },
            OipDecodeError,
        ),
        (
            {
                "inputs": [
                    pb.ModelInferRequest.InferInputTensor(name="x", datatype="FP32", shape=[2])
                ],
                "raw_input_contents": [b"\\x00" * 4],
            },
            OipDecodeError,
        ),
        (
            {
                "inputs": [
                    pb.ModelInferRequest.InferInputTensor(name="x", datatype="FP16", shape=[1])
                ]
            },
            BadRequest,
        ),
        (
            {
                "inputs": [
                    pb.ModelInferRequest.InferInputTensor(name="x", datatype="NOPE", shape=[1])
                ]
            },
            BadRequest,
        ),
        (
            {
                "inputs": [
                    pb.ModelInferRequest.InferInputTensor(
                        name="x",
                        datatype="FP32",
                        shape=[1],
                        contents=pb.InferTensorContents(fp32_contents=[1.0]),
                    )
                ]
                * 2
            },
            BadRequest,
        ),
    ],
)
def test_bad_tensors_are_refused_naming_the_problem(
    request_fields: dict[str, object], error: type[Exception]
) -> None:
    with pytest.raises(error):
        inputs_of(_request(**request_fields))


def test_answers_go_back_as_raw_output_contents_in_the_order_asked() -> None:
    outputs = {
        "probabilities": np.full((2, 3), 0.5, dtype=np.float32),
        "label": np.array([1, 2], dtype=np.int64),
    }
    answer = Answer(Result(job_id="j", status="ok", model="m", version=3), outputs)
    request = _request(
        id="r1", outputs=[pb.ModelInferRequest.InferRequestedOutputTensor(name="label")]
    )
    response = response_of(request, "m", answer)
    assert (response.id, response.model_version) == ("r1", "3")
    assert [(o.name, o.datatype, list(o.shape)) for o in response.outputs] == [
        ("label", "INT64", [2])
    ]
    assert np.frombuffer(response.raw_output_contents[0], dtype="<i8").tolist() == [1, 2]
    with pytest.raises(BadRequest, match="nope"):
        response_of(
            _request(outputs=[pb.ModelInferRequest.InferRequestedOutputTensor(name="nope")]),
            "m",
            answer,
        )


def test_the_messages_live_in_maas_own_package() -> None:
    assert pb.ModelInferRequest.DESCRIPTOR.full_name == "maas.oip.v2.ModelInferRequest"
    assert descriptor_pool.Default().FindMessageTypeByName("maas.oip.v2.ModelInferResponse")
