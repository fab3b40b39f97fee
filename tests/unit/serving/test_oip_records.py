"""OIP records at the worker's edge, without a broker: which records are OIP, the job
read from one (key, headers, version) and the record that answers it."""

from __future__ import annotations

import json
from typing import NamedTuple

import numpy as np
import pytest

from producer.contract.messages import ErrorCode, Result, error_result
from producer.contract.oip import decode_response, encode_request
from workers.serving import oip


class Rec(NamedTuple):
    key: bytes | None
    value: bytes
    headers: tuple[tuple[str, bytes], ...]
    topic: str = "maas.predict"
    partition: int = 0
    offset: int = 0


BODY = b'{"id":"body","inputs":[{"name":"x","datatype":"FP32","shape":[1,2],"data":[1,2]}]}'


def test_headers_mark_oip_records() -> None:
    assert oip.marked([("mlserver-model", b"m")])
    assert oip.marked([("Content-Type", b"application/vnd.oip.v2+json")])
    assert oip.marked([("inference-header-content-length", b"10")])
    assert not oip.marked([("content-type", b"application/json"), ("traceparent", b"x")])
    assert not oip.marked(None)


def test_the_key_overrides_the_body_id_and_headers_name_the_target() -> None:
    headers = (("maas-model", b"digits"), ("maas-version", b"3"), ("maas-reply-to", b"r"))
    job = oip.read(Rec(b"k1", BODY, headers), BODY)
    assert (job.job_id, job.model, job.version, job.reply_to) == ("k1", "digits", 3, "r")
    assert isinstance(job.inputs["x"], np.ndarray)
    unkeyed = oip.read(Rec(None, BODY, (("mlserver-model", b"digits"),)), BODY)
    assert unkeyed.job_id == "body" and unkeyed.alias == "production"
    aliased = oip.read(
        Rec(b"k", BODY, (("mlserver-model", b"d"), ("mlserver-version", b"staging"))), BODY
    )
    assert (aliased.version, aliased.alias) == (None, "staging")


@pytest.mark.parametrize(
    ("headers", "value", "words"),
    [
        ((), BODY, "maas-model"),
        ((("maas-model", b"bad name!"),), BODY, "not a model name"),
        ((("maas-model", b"m"), ("maas-version", b"v 1")), BODY, "neither a version"),
        ((("maas-model", b"m"),), b'{"inputs":[{"name":"x","datatype":"FP32","shape":[],"data":[1]}]}', "batch dimension"),
        ((("maas-model", b"m"), ("inference-header-content-length", b"abc")), BODY, "not a number"),
        ((("maas-model", b"m"), ("maas-deadline-ms", b"soon")), BODY, "epoch milliseconds"),
    ],
)  # fmt: skip
def test_requests_that_cannot_be_served_are_refused_with_a_reason(
    headers: tuple[tuple[str, bytes], ...], value: bytes, words: str
) -> None:
    with pytest.raises(oip.OipRefusal, match=words) as refused:
        oip.read(Rec(b"k", value, headers), value)
    assert refused.value.code == ErrorCode.INVALID_INPUT
    assert refused.value.envelope.job_id == "k"


def test_a_deadline_header_is_the_jobs_deadline_and_is_not_echoed() -> None:
    headers = (("maas-model", b"m"), ("maas-deadline-ms", b"1700000000000"), ("trace", b"t"))
    record = Rec(b"k", BODY, headers)
    job = oip.read(record, BODY)
    assert job.deadline_ms == 1_700_000_000_000
    assert oip.read(Rec(b"k", BODY, (("maas-model", b"m"),)), BODY).deadline_ms is None
    result = Result(job_id="k", status="ok", model="m", version=1, outputs={"y": np.ones(1)})
    echoed = dict(oip.answer(record, job, result, "maas.results", "default").headers)
    assert echoed["trace"] == b"t" and "maas-deadline-ms" not in echoed


def test_a_record_that_is_not_json_is_unreadable() -> None:
    with pytest.raises(oip.OipUnreadable):
        oip.read(Rec(b"k", b"{nope", (("maas-model", b"m"),)), b"{nope")


def test_the_answer_is_an_inference_response_with_cloudevents() -> None:
    sent = encode_request({"x": np.ones((1, 2), np.float32)}, binary=True)
    headers = (
        ("maas-model", b"m"),
        ("inference-header-content-length", str(sent.header_length).encode()),
        ("traceparent", b"t"),
    )
    record = Rec(b"k", sent.data, headers)
    job = oip.read(record, sent.data)
    outputs = {"y": np.array([[0.5, 1.5]], np.float32)}
    result = Result(job_id="k", status="ok", model="m", version=2, outputs=outputs)
    answer = oip.answer(record, job, result, "maas.results", "default")
    found = dict(answer.headers)
    assert (answer.topic, answer.key) == ("maas.results", b"k")
    assert found["Ce-Type"] == b"io.seldon.serving.inference.response"
    assert found["Ce-Id"] == found["Ce-Requestid"] == b"k"
    assert found["traceparent"] == b"t" and "maas-model" not in found
    response = decode_response(answer.value, int(found["inference-header-content-length"]))
    assert (response.model_name, response.model_version, response.id) == ("m", "2", "k")
    np.testing.assert_array_equal(response.outputs["y"], outputs["y"])


def test_an_error_is_oips_error_body_with_maas_code() -> None:
    record = Rec(b"k", BODY, (("maas-model", b"m"),))
    envelope = oip.envelope_of(record)
    result = error_result("k", ErrorCode.MODEL_NOT_FOUND, "no model m")
    answer = oip.answer(record, envelope, result, "maas.results", "default")
    assert json.loads(answer.value) == {"error": "no model m"}
    assert dict(answer.headers)["maas-error-code"] == b"MODEL_NOT_FOUND"
