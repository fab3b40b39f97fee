"""The wire contract: strict decoding that names the offending field."""

from __future__ import annotations

import json

import numpy as np
import pytest

from producer.contract.messages import (
    DecodeError,
    ErrorCode,
    JobEnvelope,
    Result,
    decode_address,
    decode_any_reply,
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
            b'{"job_id": "j", "model": "m", "inputs": {"x": [1]}, "version": 1180591620717411303424}',
            "version",
            "<= 2147483647",
        ),
        (
            b'{"job_id": "j", "model": "m", "inputs": {"x": [1]}, "deadline_ms": 1'
            + b"0" * 400
            + b"}",
            "deadline_ms",
            "Expected `int`",
        ),
        (
            b'{"job_id": "j", "model": "m", "inputs": {"x": [1]}, "priority": -99999999999}',
            "priority",
            ">= -2147483647",
        ),
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


DEEP = b"[" * 5000 + b"]" * 5000


@pytest.mark.parametrize(
    "raw",
    [
        b"",
        b"{",
        b"\xff\xfe",
        b"[1, 2]",
        b"null",
        b'{"job_id": "j\xff", "model": "m", "inputs": {"x": [[1]]}}',  # invalid UTF-8 in a string
        b'{"job_id": "j", "model": "m", "inputs": {"x": ' + DEEP + b"}}",  # nested too deep
        b'{"job_id": "j", "model": "m", "inputs": {"x": [[1]]}, "metadata": {"a": ' + DEEP + b"}}",
    ],
)
def test_undecodable_records_raise(raw: bytes) -> None:
    """The edge keeps its promise: a validated message or DecodeError, nothing else."""
    for decode in (decode_predict, decode_envelope, decode_retrain, decode_any_reply):
        if decode is decode_envelope and raw.startswith(b'{"job_id": "j", "model": "m"'):
            continue  # well-formed objects with a job_id: the envelope is salvaged (below)
        with pytest.raises(DecodeError):
            decode(raw)


def test_envelope_survives_a_broken_body() -> None:
    envelope = decode_envelope(
        b'{"job_id": "j9", "reply_to": "r", "inputs": 5, "metadata": {"a": 1}}'
    )
    assert (envelope.job_id, envelope.reply_to, envelope.metadata) == ("j9", "r", {"a": 1})


@pytest.mark.parametrize(
    ("raw", "expected"),
    [
        (  # nested too deeply for the decoder, beside the envelope's fields
            b'{"job_id": "j", "model": "m", "inputs": {"x": ' + DEEP + b'}, "reply_to": "r"}',
            JobEnvelope("j", "m", "r", {}),
        ),
        (  # the metadata itself too deep: answered without it
            b'{"job_id": "j", "model": "m", "metadata": {"a": ' + DEEP + b"}}",
            JobEnvelope("j", "m", None, {}),
        ),
        (  # fields of the wrong type are left out, brackets inside strings are text
            b'{"job_id": "j", "model": 5, "reply_to": [], "metadata": {"k": "}]"}}',
            JobEnvelope("j", "", None, {"k": "}]"}),
        ),
    ],
)
def test_envelope_salvages_the_job_id_of_a_well_formed_object(
    raw: bytes, expected: JobEnvelope
) -> None:
    assert decode_envelope(raw) == expected


@pytest.mark.parametrize(
    "raw",
    [
        b'{"job_id": 5, "inputs": ' + DEEP + b"}",  # no job_id to answer
        b'{"job_id": "j", "inputs": ' + DEEP[:-1] + b"}",  # brackets do not balance
        b'{"job_id": "j", "inputs": [1]} trailing',
        b'{"job_id": "' + b"j" * 513 + b'", "inputs": ' + DEEP + b"}",  # job_id too long
    ],
)
def test_envelope_salvage_needs_a_balanced_object_with_a_valid_job_id(raw: bytes) -> None:
    with pytest.raises(DecodeError):
        decode_envelope(raw)


def test_decode_address_leaves_the_metadata_out() -> None:
    raw = b'{"job_id": "big", "model": "m", "reply_to": "r", "metadata": {"a": 1}}'
    assert decode_address(raw) == JobEnvelope("big", "m", "r", {})


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


def _outputs_on_the_wire(outputs: dict[str, object]) -> dict[str, object]:
    result = Result(job_id="j", status="ok", model="m", outputs=outputs)
    decoded = json.loads(encode(result))["outputs"]
    assert isinstance(decoded, dict)
    return decoded


def test_float32_outputs_are_written_short_and_read_back_exactly() -> None:
    embedding = np.random.default_rng(0).standard_normal((3, 384)).astype(np.float32)
    wire = encode(Result(job_id="j", status="ok", model="m", outputs={"e": embedding}))
    as_lists = encode(Result(job_id="j", status="ok", model="m", outputs={"e": embedding.tolist()}))
    assert len(wire) < 0.7 * len(as_lists)  # shortest float32 form, not float64's
    back = np.array(decode_result(wire).outputs["e"], dtype=np.float32)  # type: ignore[index]
    np.testing.assert_array_equal(back, embedding)
    assert b"[0.1," in encode(
        Result(job_id="j", status="ok", model="m", outputs={"p": np.array([0.1, 0.9], np.float32)})
    )


def test_every_kind_of_array_is_encoded_as_plain_json() -> None:
    square = np.arange(4, dtype=np.int64).reshape(2, 2)
    outputs = {
        "transposed": square.T,  # not C-contiguous
        "scalar_array": np.array(1.5),
        "numpy_scalar": np.float32(2.5),
        "labels": np.array([3, 7], dtype=np.int64),
        "flags": np.array([True, False]),
        "names": np.array(["cat", "dog"]),
        "missing": np.array([np.nan, np.inf], dtype=np.float32),
        "half": np.array([0.5], dtype=np.float16),
        "empty": np.zeros((1, 0), dtype=np.float32),
    }
    assert _outputs_on_the_wire(outputs) == {
        "transposed": [[0, 2], [1, 3]],
        "scalar_array": 1.5,
        "numpy_scalar": 2.5,
        "labels": [3, 7],
        "flags": [True, False],
        "names": ["cat", "dog"],
        "missing": [None, None],
        "half": [0.5],
        "empty": [[]],
    }


def test_an_output_json_cannot_hold_is_refused_by_name() -> None:
    with pytest.raises(TypeError, match="cannot encode object"):
        encode(Result(job_id="j", status="ok", model="m", outputs={"o": object()}))
