"""The OIP codec: JSON and binary bodies into numpy, responses back, errors naming tensors."""

from __future__ import annotations

import json

import msgspec
import numpy as np
import pytest
from tritonclient.utils import serialize_byte_tensor

from producer.contract.messages import DecodeError
from producer.contract.oip import (
    DTYPES,
    InferenceResponse,
    OipDecodeError,
    ResponseOutput,
    decode_request,
    decode_response,
    encode_error,
    encode_request,
    encode_response,
    is_inference_request,
)


def _binary(header: dict[str, object], *raw: bytes) -> tuple[bytes, int]:
    text = json.dumps(header).encode()
    return text + b"".join(raw), len(text)


def test_json_request_from_mlserver_docs() -> None:
    body = json.dumps(
        {
            "id": "req-1",
            "inputs": [{"name": "x", "datatype": "FP32", "shape": [2, 2], "data": [1, 2, 3, 4.5]}],
            "outputs": [{"name": "y"}],
        }
    ).encode()
    request = decode_request(body)
    assert request.id == "req-1"
    np.testing.assert_array_equal(request.inputs["x"], np.array([[1, 2], [3, 4.5]], np.float32))
    assert request.inputs["x"].dtype == np.float32
    assert [(o.name, o.binary) for o in request.outputs] == [("y", False)]
    assert not request.binary


def test_nested_json_data_is_accepted() -> None:
    body = b'{"inputs":[{"name":"x","datatype":"INT64","shape":[2,2],"data":[[1,2],[3,4]]}]}'
    assert decode_request(body).inputs["x"].tolist() == [[1, 2], [3, 4]]


@pytest.mark.parametrize("datatype", [name for name in DTYPES if name != "BYTES"])
def test_every_numeric_datatype_round_trips_binary(datatype: str) -> None:
    array = (np.arange(6).reshape(2, 3) % 2).astype(DTYPES[datatype])
    body = encode_request({"t": array}, binary=True)
    request = decode_request(body.data, body.header_length)
    assert request.inputs["t"].dtype == DTYPES[datatype]
    np.testing.assert_array_equal(request.inputs["t"], array)
    assert request.binary


def test_binary_request_built_like_tritonclient() -> None:
    pixels = np.random.default_rng(0).random((1, 4, 4, 3), dtype=np.float32)
    words = np.array([b"hello", b"", "wörld".encode()], dtype=object)
    serialized = serialize_byte_tensor(words).item()
    header = {
        "inputs": [
            {"name": "pixels", "datatype": "FP32", "shape": [1, 4, 4, 3],
             "parameters": {"binary_data_size": pixels.nbytes}},
            {"name": "words", "datatype": "BYTES", "shape": [3],
             "parameters": {"binary_data_size": len(serialized)}},
            {"name": "k", "datatype": "INT32", "shape": [1], "data": [7]},
        ],
    }  # fmt: skip
    body, length = _binary(header, pixels.tobytes(), serialized)
    request = decode_request(body, length)
    np.testing.assert_array_equal(request.inputs["pixels"], pixels)
    assert request.inputs["words"].tolist() == [b"hello", b"", "wörld".encode()]
    assert request.inputs["k"].tolist() == [7]


def test_binary_tensor_is_a_view_of_the_body_not_a_copy() -> None:
    array = np.arange(1000, dtype=np.float32)
    body = encode_request({"x": array}, binary=True)
    decoded = decode_request(body.data, body.header_length).inputs["x"]
    assert decoded.base is not None  # np.frombuffer over the record's bytes


@pytest.mark.parametrize(
    ("header", "raw", "words"),
    [
        ({"name": "x", "datatype": "FP32", "shape": [2], "parameters": {"binary_data_size": 4}},
         b"\0" * 4, "needs 8"),
        ({"name": "x", "datatype": "FP32", "shape": [2], "parameters": {"binary_data_size": 8}},
         b"\0" * 4, "truncated"),
        ({"name": "x", "datatype": "FP33", "shape": [1], "parameters": {"binary_data_size": 4}},
         b"\0" * 4, "unknown datatype"),
        ({"name": "x", "datatype": "BYTES", "shape": [1], "parameters": {"binary_data_size": 6}},
         b"\x09\0\0\0ab", "runs past"),
        ({"name": "x", "datatype": "BYTES", "shape": [2], "parameters": {"binary_data_size": 6}},
         b"\x02\0\0\0ab", "holds 2 elements"),
        ({"name": "x", "datatype": "INT8", "shape": [1], "parameters": {"binary_data_size": -1}},
         b"", "whole number"),
    ],
)  # fmt: skip
def test_binary_errors_name_the_tensor(header: dict[str, object], raw: bytes, words: str) -> None:
    body, length = _binary({"inputs": [header]}, raw)
    with pytest.raises(OipDecodeError, match=words) as caught:
        decode_request(body, length)
    assert caught.value.tensor == "x"
    assert "`x`" in str(caught.value)
    assert isinstance(caught.value, DecodeError)


@pytest.mark.parametrize(
    ("tensor", "words"),
    [
        ({"datatype": "FP32", "shape": [3], "data": [1, 2]}, "holds 3 elements, but `data` has 2"),
        ({"datatype": "FP32", "shape": [2], "data": ["a", "b"]}, "not FP32"),
        ({"datatype": "INT32", "shape": [1], "data": [1.5]}, "not INT32"),
        ({"datatype": "UINT8", "shape": [1], "data": [300]}, "outside UINT8"),
        ({"datatype": "BOOL", "shape": [1], "data": [1]}, "not BOOL"),
        ({"datatype": "FP32", "shape": [2, 2], "data": [[1, 2], [3]]}, "not a regular array"),
        ({"datatype": "BYTES", "shape": [1], "data": [5]}, "must hold strings"),
        ({"datatype": "FP32", "shape": [1]}, "neither `data`"),
    ],
)
def test_json_errors_name_the_tensor(tensor: dict[str, object], words: str) -> None:
    body = json.dumps({"inputs": [{"name": "x", **tensor}]}).encode()
    with pytest.raises(OipDecodeError, match=words) as caught:
        decode_request(body)
    assert caught.value.tensor == "x"


@pytest.mark.parametrize(
    ("body", "length", "words"),
    [
        (b"not json", None, "not valid UTF-8 JSON"),
        (b'{"inputs": []}', None, "at least one input"),
        (b'{"inputs": [{"name": "x"}]}', None, "not an OIP InferenceRequest"),
        (b'{"inputs": []}', 99, "does not fit"),
        (
            b'{"inputs":[{"name":"x","datatype":"INT8","shape":[1],"data":[1]}]}xx',
            66,
            "2 bytes after",
        ),
        (b"\xff" * 4, None, "not valid UTF-8"),
        (
            b'{"inputs":[{"name":"x","datatype":"FP32","shape":[1],"data":' + b"[" * 100_000,
            None,
            "JSON",
        ),
    ],
)
def test_documents_that_are_not_requests(body: bytes, length: int | None, words: str) -> None:
    with pytest.raises(OipDecodeError, match=words):
        decode_request(body, length)


def test_duplicate_tensor_names_are_refused() -> None:
    tensor = {"name": "x", "datatype": "INT8", "shape": [1], "data": [1]}
    with pytest.raises(OipDecodeError, match="twice"):
        decode_request(json.dumps({"inputs": [tensor, tensor]}).encode())


def test_json_response_is_flat_row_major_with_datatype_and_shape() -> None:
    outputs = {"y": np.array([[0.1, 0.2]], np.float32), "label": np.array([3], np.int64)}
    body = encode_response(outputs, model_name="m", model_version="2", id="r1")
    assert body.header_length is None
    assert json.loads(body.data) == {
        "model_name": "m",
        "model_version": "2",
        "id": "r1",
        "outputs": [
            {"name": "y", "datatype": "FP32", "shape": [1, 2], "data": [0.1, 0.2]},
            {"name": "label", "datatype": "INT64", "shape": [1], "data": [3]},
        ],
    }


def test_binary_request_is_answered_binary_and_reads_back() -> None:
    sent = encode_request({"x": np.ones((2, 3), np.float32)}, binary=True)
    request = decode_request(sent.data, sent.header_length)
    outputs = {
        "y": np.arange(6, dtype=np.float32).reshape(2, 3),
        "n": np.array([b"ab", b"c"], object),
    }
    body = encode_response(outputs, model_name="m", id="r", request=request)
    assert body.header_length is not None
    header = json.loads(body.data[: body.header_length])
    assert header["outputs"][0] == {
        "name": "y", "datatype": "FP32", "shape": [2, 3], "parameters": {"binary_data_size": 24},
    }  # fmt: skip
    response = decode_response(body.data, body.header_length)
    np.testing.assert_array_equal(response.outputs["y"], outputs["y"])
    assert response.outputs["n"].tolist() == [b"ab", b"c"]


def test_binary_data_output_false_answers_json() -> None:
    sent = encode_request(
        {"x": np.ones(2, np.float32)}, binary=True, parameters={"binary_data_output": False}
    )
    request = decode_request(sent.data, sent.header_length)
    body = encode_response({"y": np.ones(2, np.float32)}, model_name="m", request=request)
    assert body.header_length is None


def test_requested_outputs_are_honoured_each_as_it_asks() -> None:
    body = json.dumps(
        {
            "inputs": [{"name": "x", "datatype": "FP32", "shape": [1], "data": [1]}],
            "outputs": [{"name": "b", "parameters": {"binary_data": True}}, {"name": "a"}],
        }
    ).encode()
    request = decode_request(body)
    outputs = {"a": np.array([1.0]), "b": np.array([2.0]), "c": np.array([3.0])}
    answer = encode_response(outputs, model_name="m", request=request)
    assert answer.header_length is not None
    response = decode_response(answer.data, answer.header_length)
    assert list(response.outputs) == ["b", "a"]
    header = json.loads(answer.data[: answer.header_length])
    assert "data" not in header["outputs"][0]
    assert header["outputs"][1]["data"] == [1.0]


def test_a_requested_output_the_model_lacks_is_named() -> None:
    request = decode_request(
        b'{"inputs":[{"name":"x","datatype":"FP32","shape":[1],"data":[1]}],"outputs":[{"name":"z"}]}'
    )
    with pytest.raises(OipDecodeError, match="output `z` is not one of the model's outputs"):
        encode_response({"y": np.ones(1)}, model_name="m", request=request)


def test_error_body() -> None:
    assert json.loads(encode_error("no model")) == {"error": "no model"}


def test_request_shape_told_apart_from_maas_jobs() -> None:
    assert is_inference_request(b'{"id":"1","inputs":[{"name":"x"}]}')
    assert not is_inference_request(b'{"job_id":"j","model":"m","inputs":{"x":[[1]]}}')
    assert not is_inference_request(b'{"job_id":"j","model":"m","inputs":[[1]]}')
    assert not is_inference_request(b"\xff garbage")
    assert not is_inference_request(b"[1, 2]")


def _written_whole(
    outputs: dict[str, np.ndarray], model_version: str | None, id: str | None
) -> bytes:
    """A binary InferenceResponse as the document's encoder writes it, field by field."""
    raw = [
        np.ascontiguousarray(a, dtype=DTYPES[_DATATYPE[a.dtype.str]]).tobytes()
        for a in outputs.values()
    ]
    document = InferenceResponse(
        model_name="m",
        model_version=model_version,
        id=id,
        outputs=[
            ResponseOutput(
                name=name,
                datatype=_DATATYPE[array.dtype.str],
                shape=list(array.shape),
                parameters={"binary_data_size": len(data)},
            )
            for (name, array), data in zip(outputs.items(), raw, strict=True)
        ],
    )
    return msgspec.json.encode(document) + b"".join(raw)


_DATATYPE = {"<f4": "FP32", "<f2": "FP16", "<i8": "INT64", "|b1": "BOOL", "|u1": "UINT8"}


@pytest.mark.parametrize("id", [None, "req-1", 'with "quotes" and \\ and é'])
@pytest.mark.parametrize("model_version", [None, "3"])
@pytest.mark.parametrize(
    "outputs",
    [
        {"embedding": np.arange(384, dtype=np.float32).reshape(1, 384)},
        {"a": np.ones((2, 3), np.float16), "b": np.array([[True], [False]]), "c": np.int64(7)},
        {"u": np.arange(6, dtype=np.uint8)[::2]},  # not contiguous
    ],
)
def test_a_binary_answer_written_from_its_template_is_the_documents_bytes(
    outputs: dict[str, np.ndarray], model_version: str | None, id: str | None
) -> None:
    outputs = {name: np.asarray(array) for name, array in outputs.items()}
    request = decode_request(*encode_request({"x": np.zeros(1, np.float32)}, binary=True))
    for _ in range(2):  # the template written, then the template reused
        body = encode_response(
            outputs, model_name="m", model_version=model_version, id=id, request=request
        )
        assert body.data == _written_whole(outputs, model_version, id)
        header = json.loads(body.data[: body.header_length])
        assert header.get("id") == id
        answer = decode_response(body.data, body.header_length)
        for name, array in outputs.items():
            np.testing.assert_array_equal(answer.outputs[name], array)


def test_one_bytes_element_and_several_read_alike() -> None:
    one = serialize_byte_tensor(np.array([b""], dtype=object)).item()
    many = serialize_byte_tensor(np.array([b"ab", b"c"], dtype=object)).item()
    for words, raw in (([b""], one), ([b"ab", b"c"], many)):
        tensor = {"name": "t", "datatype": "BYTES", "shape": [len(words)]}
        tensor["parameters"] = {"binary_data_size": len(raw)}
        request = decode_request(*_binary({"inputs": [tensor]}, raw))
        assert request.inputs["t"].tolist() == words
        assert request.inputs["t"].shape == (len(words),)
