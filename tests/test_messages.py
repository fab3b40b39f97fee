"""The wire contract: strict decoding that names the offending field."""

from __future__ import annotations

import pytest

from producer.messages import (
    DecodeError,
    ErrorCode,
    decode_envelope,
    decode_predict,
    decode_result,
    decode_retrain,
    encode,
    error_result,
)

VALID = b'{"job_id": "j1", "model": "digits", "inputs": {"x": [[0.0, 1.0], [2.0, 3.0]]}}'


def test_valid_job_gets_contract_defaults() -> None:
    job = decode_predict(VALID)
    assert job.job_id == "j1"
    assert job.alias == "production"
    assert job.version is None
    assert job.priority == 0
    assert job.reply_to is None
    assert job.rows == 2


@pytest.mark.parametrize(
    ("raw", "field", "words"),
    [
        (
            b'{"job_id": "j", "model": "m", "inputs": {"x": [[1]]}, "priority": "hi"}',
            "priority",
            "Expected `int`",
        ),
        (b'{"model": "m", "inputs": {"x": [[1]]}}', "job_id", "missing"),
        (b'{"job_id": "", "model": "m", "inputs": {"x": [[1]]}}', "job_id", "length"),
        (b'{"job_id": "j", "model": "m", "inputs": {}}', "inputs", "at least one"),
        (b'{"job_id": "j", "model": "m", "inputs": {"x": []}}', "inputs.x", "no rows"),
        (b'{"job_id": "j", "model": "m", "inputs": {"a": [1], "b": [1, 2]}}', "inputs", "same"),
        (b'{"job_id": "j", "model": "m", "inputs": {"x": [1]}, "version": 0}', "version", ">= 1"),
        (
            b'{"job_id": "j", "model": "m", "inputs": {"x": [1]}, "schema": "maas.predict/v9"}',
            "schema",
            "maas.predict/v1",
        ),
    ],
)
def test_invalid_job_names_the_field(raw: bytes, field: str, words: str) -> None:
    with pytest.raises(DecodeError) as info:
        decode_predict(raw)
    assert info.value.field == field
    assert words in str(info.value)


@pytest.mark.parametrize("raw", [b"", b"{", b"\xff\xfe", b"[1, 2]", b"null"])
def test_undecodable_records_raise(raw: bytes) -> None:
    with pytest.raises(DecodeError):
        decode_predict(raw)
    with pytest.raises(DecodeError):
        decode_envelope(raw)


def test_envelope_survives_a_broken_body() -> None:
    envelope = decode_envelope(
        b'{"job_id": "j9", "reply_to": "r", "inputs": 5, "metadata": {"a": 1}}'
    )
    assert (envelope.job_id, envelope.reply_to, envelope.metadata) == ("j9", "r", {"a": 1})


def test_result_round_trips() -> None:
    result = error_result("j1", ErrorCode.EXPIRED, "deadline passed", model="digits", version=3)
    back = decode_result(encode(result))
    assert back == result
    assert back.error is not None and back.error.code is ErrorCode.EXPIRED


def test_retrain_job_defaults_and_dataset_check() -> None:
    job = decode_retrain(b'{"job_id": "r1", "model": "digits"}')
    assert (job.trigger, job.promote, job.params) == ("manual", "gate", {})
    with pytest.raises(DecodeError) as info:
        decode_retrain(b'{"job_id": "r1", "model": "digits", "dataset": {}}')
    assert info.value.field == "dataset"
