"""Capture without a broker: sampling by job_id, what the policy keeps of the inputs,
records over the size limit, and a full buffer that drops (counted) instead of waiting."""

from __future__ import annotations

import json

import numpy as np
import pytest

from producer.contract.messages import PredictJob, Result, decode_capture
from registry.labelled import CapturePolicy
from workers.kafka.publisher import Outgoing
from workers.serving.capture import DROPPED, Capture, CaptureSettings, kept_inputs, sampled


def test_sampling_is_decided_by_the_job_id_alone_and_follows_the_rate() -> None:
    ids = [f"job-{i}" for i in range(20_000)]
    chosen = [i for i in ids if sampled(i, 0.1)]
    assert chosen == [i for i in ids if sampled(i, 0.1)]  # the same every time
    assert 0.09 < len(chosen) / len(ids) < 0.11
    assert not any(sampled(i, 0.0) for i in ids[:100])
    assert all(sampled(i, 1.0) for i in ids[:100])
    assert set(chosen) <= {i for i in ids if sampled(i, 0.5)}  # a higher rate keeps these


def test_inputs_are_kept_dropped_or_hashed_by_field() -> None:
    inputs = {"email": ["a@b.c", "d@e.f"], "age": [31, 40]}
    assert kept_inputs(inputs, CapturePolicy(inputs="full")) == inputs
    assert kept_inputs(inputs, CapturePolicy(inputs="drop")) is None
    hashed = kept_inputs(inputs, CapturePolicy(inputs="hash:email"))
    assert hashed is not None
    assert hashed["age"] == [31, 40]
    assert all(len(h) == 64 and "@" not in h for h in hashed["email"])
    assert hashed["email"][0] != hashed["email"][1]
    assert kept_inputs(inputs, CapturePolicy(inputs="hash:email")) == hashed  # stable


def _answer(job_id: str, rows: int = 1) -> tuple[PredictJob, Result]:
    job = PredictJob(job_id=job_id, model="m", inputs={"x": [[1.0] * 4] * rows})
    result = Result(
        job_id=job_id, status="ok", model="m", version=2, outputs={"label": np.arange(rows)}
    )
    return job, result


def test_a_sampled_answer_becomes_a_capture_record_keyed_by_job_id() -> None:
    capture = Capture("maas.", CaptureSettings())
    capture.set_policies({"m": CapturePolicy(rate=1.0, inputs="drop")})
    job, result = _answer("j1", rows=2)

    message = capture.record("acme", job, result)

    assert message is not None
    assert (message.topic, message.key) == ("maas.acme.capture", b"j1")
    record = decode_capture(message.value)
    assert (record.model, record.version, record.alias, record.tenant) == (
        "m",
        2,
        "production",
        "acme",
    )
    assert record.inputs is None
    assert record.outputs == {"label": [0, 1]}
    assert capture.record(None, *_answer("j2")) is not None
    assert capture.record(None, *_answer("j2")).topic == "maas.capture"  # type: ignore[union-attr]
    capture.set_policies({})
    assert capture.record(None, job, result) is None  # no policy: nothing captured


def test_a_record_over_the_size_limit_goes_without_its_inputs() -> None:
    capture = Capture("maas.", CaptureSettings(max_record_bytes=4096))
    capture.set_policies({"m": CapturePolicy(rate=1.0)})
    message = capture.record(None, *_answer("big", rows=200))
    assert message is not None
    body = json.loads(message.value)
    assert body["inputs"] is None
    assert len(body["outputs"]["label"]) == 200


async def test_a_full_buffer_drops_and_counts_instead_of_waiting() -> None:
    capture = Capture("maas.", CaptureSettings(buffer=2))
    before = DROPPED.labels("buffer_full")._value.get()
    for i in range(5):
        capture.offer(Outgoing("maas.capture", b"{}", str(i).encode()))
    assert DROPPED.labels("buffer_full")._value.get() - before == 3


@pytest.mark.parametrize("inputs", ["full", "drop", "hash:a,b"])
def test_policy_names_the_hashed_fields(inputs: str) -> None:
    expected = ("a", "b") if inputs.startswith("hash:") else ()
    assert CapturePolicy(inputs=inputs).hashed_fields == expected
