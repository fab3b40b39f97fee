"""The Open Inference Protocol on the predict topics: MLServer's Kafka records and
Triton's binary requests, answered by a real worker through the real broker."""

from __future__ import annotations

import json
from collections.abc import Sequence
from pathlib import Path
from typing import TYPE_CHECKING

import numpy as np
import onnxruntime as ort
import pytest
import tritonclient.http as triton
from aiokafka import AIOKafkaProducer
from aiokafka.structs import ConsumerRecord

from maas.cli import main
from producer.aio import AsyncClient
from producer.client import Client
from producer.errors import ServiceError
from producer.kafka import KafkaSettings
from producer.oip import Encoding
from registry.drafts import Draft
from registry.entities import ModelVersion
from registry.registry import Registry
from tests.kafka_helpers import create_topic, read, running
from workers.recipes.demo import digits_samples
from workers.serving.loop import Worker, WorkerSettings

if TYPE_CHECKING:
    from tests.serving_fixtures import ServedDigits

pytestmark = pytest.mark.both_brokers

Headers = Sequence[tuple[str, bytes]]
TOLERANCE = (
    {"rtol": 2e-3, "atol": 2e-4}
    if "CUDAExecutionProvider" in ort.get_available_providers()
    else {"rtol": 1e-5, "atol": 1e-6}
)


def own_outputs(served: ServedDigits, pixels: np.ndarray) -> dict[str, np.ndarray]:
    session = ort.InferenceSession(str(served.artifact))
    names = [output.name for output in session.get_outputs()]
    return dict(zip(names, session.run(None, {"x": pixels}), strict=True))


async def exchange(
    served: ServedDigits, records: list[tuple[bytes, bytes, Headers]], topic: str = ""
) -> dict[bytes, ConsumerRecord[bytes, bytes]]:
    """Publish (key, value, headers) records on the predict topic; the answers by key."""
    kafka = served.kafka
    producer = AIOKafkaProducer(bootstrap_servers=kafka.bootstrap_servers)
    await producer.start()
    try:
        for key, value, headers in records:
            await producer.send_and_wait(
                kafka.topics.predict, value, key=key, headers=list(headers)
            )
    finally:
        await producer.stop()
    keys = {key for key, _, _ in records}
    answers = await read(
        kafka, topic or kafka.topics.results, until=lambda got: keys <= {r.key for r in got}
    )
    return {record.key: record for record in answers if record.key in keys}


def headers_of(record: ConsumerRecord[bytes, bytes]) -> dict[str, bytes]:
    return dict(record.headers)


async def test_an_mlserver_kafka_record_is_answered_as_mlserver_documents(
    served_digits: ServedDigits,
) -> None:
    pixels, _ = digits_samples(2, seed=5)
    pixels = pixels.astype(np.float32)
    request = {  # MLServer's Kafka example: an OIP InferenceRequest as JSON, flat data
        "id": "the-body-id",
        "inputs": [
            {"name": "x", "shape": [2, 64], "datatype": "FP32", "data": pixels.ravel().tolist()}
        ],
    }
    headers = [("mlserver-model", b"digits")]
    answers = await exchange(served_digits, [(b"mls-1", json.dumps(request).encode(), headers)])
    record = answers[b"mls-1"]
    response = json.loads(record.value or b"")
    assert response["model_name"] == "digits"
    assert response["model_version"] == str(served_digits.version)
    assert response["id"] == "mls-1"  # the key overrides the body's id, as in MLServer
    expected = own_outputs(served_digits, pixels)
    by_name = {output["name"]: output for output in response["outputs"]}
    assert set(by_name) == set(expected)
    for name, array in expected.items():
        output = by_name[name]
        assert output["shape"] == list(array.shape)
        assert output["datatype"] == {"float32": "FP32", "int64": "INT64"}[array.dtype.name]
        got = np.asarray(output["data"], dtype=array.dtype).reshape(array.shape)
        np.testing.assert_allclose(got, array, **TOLERANCE)
    ce = headers_of(record)
    assert ce["Ce-Type"] == b"io.seldon.serving.inference.response"
    assert ce["Ce-Id"] == ce["Ce-Requestid"] == b"mls-1"
    assert ce["Ce-Modelid"] == b"digits"
    assert ce["Ce-Specversion"] == b"0.3"
    assert "maas-error-code" not in ce


async def test_requested_outputs_version_and_reply_topic_from_maas_headers(
    served_digits: ServedDigits,
) -> None:
    pixels, _ = digits_samples(1, seed=6)
    request = {
        "inputs": [{"name": "x", "shape": [1, 64], "datatype": "FP64", "data": pixels.tolist()}],
        "outputs": [{"name": "label"}],
    }
    topics = served_digits.kafka.topics
    headers = [
        ("content-type", b"application/vnd.oip.v2+json"),
        ("maas-model", b"digits"),
        ("maas-version", str(served_digits.version).encode()),
        ("maas-reply-to", topics.results.encode()),
        ("traceparent", b"00-abc-def-01"),
    ]
    answers = await exchange(served_digits, [(b"oip-out", json.dumps(request).encode(), headers)])
    record = answers[b"oip-out"]
    response = json.loads(record.value or b"")
    assert [output["name"] for output in response["outputs"]] == ["label"]
    expected = own_outputs(served_digits, pixels.astype(np.float32))["label"]
    assert response["outputs"][0]["data"] == expected.ravel().tolist()
    assert headers_of(record)["traceparent"] == b"00-abc-def-01"


async def test_triton_binary_requests_are_answered_binary(served_digits: ServedDigits) -> None:
    pixels, _ = digits_samples(3, seed=7)
    pixels = pixels.astype(np.float32)
    tensor = triton.InferInput("x", list(pixels.shape), "FP32")
    tensor.set_data_from_numpy(pixels, binary_data=True)
    body, header_length = triton.InferenceServerClient.generate_request_body([tensor])
    headers = [
        ("mlserver-model", b"digits"),
        ("inference-header-content-length", b"%d" % header_length),
    ]
    answers = await exchange(served_digits, [(b"triton-1", body, headers)])
    record = answers[b"triton-1"]
    length = int(headers_of(record)["inference-header-content-length"])
    result = triton.InferResult.from_response_body(record.value, header_length=length)
    for name, array in own_outputs(served_digits, pixels).items():
        np.testing.assert_allclose(result.as_numpy(name), array, **TOLERANCE)
    assert result.get_response()["id"] == "triton-1"


async def test_binary_request_asking_for_json_outputs_gets_json(
    served_digits: ServedDigits,
) -> None:
    pixels, _ = digits_samples(1, seed=8)
    tensor = triton.InferInput("x", [1, 64], "FP32")
    tensor.set_data_from_numpy(pixels.astype(np.float32), binary_data=True)
    wanted = triton.InferRequestedOutput("probabilities", binary_data=False)
    body, length = triton.InferenceServerClient.generate_request_body([tensor], outputs=[wanted])
    headers = [("maas-model", b"digits"), ("inference-header-content-length", b"%d" % length)]
    record = (await exchange(served_digits, [(b"triton-json", body, headers)]))[b"triton-json"]
    assert "inference-header-content-length" not in headers_of(record)
    response = json.loads(record.value or b"")
    assert [output["name"] for output in response["outputs"]] == ["probabilities"]
    assert len(response["outputs"][0]["data"]) == 10


def _error_of(record: ConsumerRecord[bytes, bytes]) -> tuple[str, str]:
    return headers_of(record)["maas-error-code"].decode(), json.loads(record.value or b"")["error"]


async def test_bad_requests_are_answered_with_oip_errors(served_digits: ServedDigits) -> None:
    words = triton.InferInput("x", [2], "BYTES")
    words.set_data_from_numpy(np.array([b"a", b"bc"], dtype=object), binary_data=True)
    text_body, text_length = triton.InferenceServerClient.generate_request_body([words])
    short = json.dumps(
        {"inputs": [{"name": "x", "datatype": "FP32", "shape": [1, 64], "parameters": {"binary_data_size": 256}}]}
    ).encode()  # fmt: skip
    model = [("mlserver-model", b"digits")]
    flat = {"inputs": [{"name": "x", "shape": [1, 64], "datatype": "FP32", "data": [0.0] * 64}]}
    records: list[tuple[bytes, bytes, Headers]] = [
        (b"e-bytes", text_body, [*model, ("inference-header-content-length", b"%d" % text_length)]),
        (b"e-short", short + b"\0" * 128, [*model, ("inference-header-content-length", b"%d" % len(short))]),
        (b"e-no-model", json.dumps(flat).encode(), []),
        (b"e-unknown", json.dumps(flat).encode(), [("mlserver-model", b"nope")]),
        (b"e-shape", json.dumps({"inputs": [{**flat["inputs"][0], "shape": [1, 63], "data": [0.0] * 63}]}).encode(), model),
    ]  # fmt: skip
    answers = await exchange(served_digits, records)
    code, message = _error_of(answers[b"e-bytes"])
    assert code == "INVALID_INPUT" and "'x'" in message
    code, message = _error_of(answers[b"e-short"])
    assert code == "INVALID_INPUT" and "tensor `x`" in message and "truncated" in message
    code, message = _error_of(answers[b"e-no-model"])
    assert code == "INVALID_INPUT" and "maas-model" in message
    assert _error_of(answers[b"e-unknown"])[0] == "MODEL_NOT_FOUND"
    code, message = _error_of(answers[b"e-shape"])
    assert code == "INVALID_INPUT" and "(1, 63)" in message


async def test_an_undecodable_oip_record_is_dead_lettered(served_digits: ServedDigits) -> None:
    headers = [("content-type", b"application/vnd.oip.v2+json"), ("maas-model", b"digits")]
    kafka = served_digits.kafka
    answers = await exchange(served_digits, [(b"dlq-1", b"{not json", headers)], kafka.topics.dlq)
    dead = headers_of(answers[b"dlq-1"])
    assert dead["maas.error.code"] == b"INVALID_INPUT"
    assert b"not an OIP InferenceRequest" in dead["maas.error.message"]


@pytest.mark.parametrize("encoding", ["oip", "binary"])
def test_the_sdk_sends_oip_requests_and_reads_their_answers_as_results(
    served_digits: ServedDigits, encoding: Encoding
) -> None:
    pixels, _ = digits_samples(4, seed=9)
    pixels = pixels.astype(np.float32)
    with Client(served_digits.kafka) as client:
        result = client.predict("digits", {"x": pixels}, encoding=encoding)
        with pytest.raises(ServiceError) as caught:
            client.predict("digits", {"x": pixels[:, :3]}, encoding=encoding)
    assert (result.ok, result.model, result.version) == (True, "digits", served_digits.version)
    for name, array in own_outputs(served_digits, pixels).items():
        assert isinstance(result.outputs, dict)
        np.testing.assert_allclose(result.outputs[name], array, **TOLERANCE)
    assert caught.value.code == "INVALID_INPUT"


async def test_the_async_sdk_sends_binary_requests(served_digits: ServedDigits) -> None:
    pixels, _ = digits_samples(2, seed=10)
    async with AsyncClient(served_digits.kafka) as client:
        result = await client.predict("digits", {"x": pixels.astype(np.float32)}, encoding="binary")
    assert result.outputs is not None
    assert (
        result.outputs["label"].tolist()
        == own_outputs(served_digits, pixels.astype(np.float32))["label"].tolist()
    )


def test_the_sdk_refuses_maas_only_options_with_oip() -> None:
    from producer.core import BaseClient
    from producer.kafka import KafkaSettings

    client = BaseClient(KafkaSettings(bootstrap_servers="localhost:1"))
    with pytest.raises(TypeError, match=r"metadata travel only in maas\.predict/v1 jobs"):
        client._predict_job("m", {"x": [[1.0]]}, None, {"encoding": "oip", "metadata": {"a": 1}})


def test_maas_score_binary_matches_json(served_digits: ServedDigits, tmp_path: Path) -> None:
    pixels, _ = digits_samples(40, seed=11)
    source = tmp_path / "in.jsonl"
    source.write_text(
        "".join(
            json.dumps({"id": f"r{i}", "x": row.tolist()}) + "\n" for i, row in enumerate(pixels)
        )
    )
    kafka = served_digits.kafka
    common = [
        "--model",
        "digits",
        "--bootstrap-servers",
        kafka.bootstrap_servers,
        "--topic-prefix",
        kafka.topics.prefix,
    ]
    assert main(["score", str(source), "--out", str(tmp_path / "json.jsonl"), *common]) == 0
    assert (
        main(["score", str(source), "--out", str(tmp_path / "bin.jsonl"), "--binary", *common]) == 0
    )
    as_json = [json.loads(line) for line in (tmp_path / "json.jsonl").read_text().splitlines()]
    as_binary = [json.loads(line) for line in (tmp_path / "bin.jsonl").read_text().splitlines()]
    assert [r["outputs"]["label"] for r in as_binary] == [r["outputs"]["label"] for r in as_json]
    assert all(r["status"] == "ok" and r["version"] == served_digits.version for r in as_binary)
    np.testing.assert_allclose(
        [r["outputs"]["probabilities"] for r in as_binary],
        [r["outputs"]["probabilities"] for r in as_json],
        rtol=1e-6,
    )


async def test_a_tenants_oip_requests_get_its_grants_and_stay_in_its_namespace(
    kafka: KafkaSettings, registry: Registry, digits: ModelVersion, digits_artifact: Path
) -> None:
    registry.models.register("other", Draft(digits_artifact, promote=True), actor="test")
    registry.tenants.add("a", models=("digits",), retrain=False, actor="test")
    a = kafka.topics.namespace("a")
    for topic in (a.predict, a.results):
        await create_topic(kafka, topic)
    flat = {"inputs": [{"name": "x", "shape": [1, 64], "datatype": "FP32", "data": [0.0] * 64}]}
    value = json.dumps(flat).encode()
    records = [
        (b"t-ok", [("mlserver-model", b"digits")]),
        (b"t-other", [("mlserver-model", b"other")]),
        (b"t-out", [("mlserver-model", b"digits"), ("maas-reply-to", kafka.topics.results.encode())]),
    ]  # fmt: skip
    producer = AIOKafkaProducer(bootstrap_servers=kafka.bootstrap_servers)
    await producer.start()
    try:
        for key, headers in records:
            await producer.send_and_wait(a.predict, value, key=key, headers=headers)
    finally:
        await producer.stop()
    worker = Worker(
        kafka, registry.models, registry.metrics, WorkerSettings(), tenants=registry.tenants
    )
    async with running(worker.run):
        keys = {key for key, _ in records}
        got = await read(kafka, a.results, until=lambda rs: keys <= {r.key for r in rs})
    answers = {r.key: r for r in got}
    assert json.loads(answers[b"t-ok"].value or b"")["model_name"] == "digits"
    assert headers_of(answers[b"t-ok"])["Ce-Namespace"] == b"a"
    for key in (b"t-other", b"t-out"):
        assert _error_of(answers[key])[0] == "UNAUTHORIZED"
