"""The records the gateway writes, without a broker: the binary layout with the
caller's bytes, every output asked binary, and the headers the worker reads."""

from __future__ import annotations

from typing import NamedTuple

import numpy as np

from producer.contract.oip import HEADER_LENGTH, decode_request
from producer.contract.oip.tensors import to_buffer
from workers.gateway.records import SHAPE_HEADER, Job, body_of, headers_of, shape_in
from workers.serving import oip


class Rec(NamedTuple):
    """A record as the worker's edge reads it."""

    key: bytes | None
    value: bytes
    headers: tuple[tuple[str, bytes], ...]
    topic: str = "maas.acme.predict"
    partition: int = 0
    offset: int = 0


def test_a_body_is_the_binary_layout_of_the_callers_bytes_asking_binary_outputs() -> None:
    pixels = np.arange(6, dtype=np.float32).reshape(2, 3)
    texts = np.array([b"hi", "caf\u00e9".encode()], dtype=object)
    body = body_of({"x": pixels, "text": texts}, ["label"])
    assert body.header_length is not None
    tail = body.data[body.header_length :]
    assert tail == pixels.tobytes() + to_buffer(texts, "BYTES")
    decoded = decode_request(body.data, body.header_length)
    np.testing.assert_array_equal(decoded.inputs["x"], pixels)
    assert list(decoded.inputs["text"]) == [b"hi", "caf\u00e9".encode()]
    assert [(o.name, o.binary) for o in decoded.outputs] == [("label", True)]
    assert decode_request(*body_of({"x": pixels})).binary  # no outputs named: all, binary


def test_the_worker_reads_the_headers_as_the_jobs_target_reply_topic_and_deadline() -> None:
    body = body_of({"x": np.zeros((1, 3), np.float32)})
    shape = {"oip": {"id": "req-9", "outputs": [["label", False]], "binary": False}}
    job = Job("j1", "digits", 3, body, timeout_s=20.0, shape=shape)
    headers = headers_of(job, "maas.acme.results.gateway-g1", now_s=1000.0)
    found = dict(headers)
    assert found[HEADER_LENGTH] == str(body.header_length).encode()
    read = oip.read(Rec(b"j1", body.data, headers), body.data)
    assert (read.job_id, read.model, read.version) == ("j1", "digits", 3)
    assert (read.reply_to, read.deadline_ms) == ("maas.acme.results.gateway-g1", 1_020_000)
    assert shape_in(headers) == shape and SHAPE_HEADER in found
    aliased = headers_of(Job("j2", "digits", "staging", body, 1.0), "r")
    assert oip.read(Rec(b"j2", body.data, aliased), body.data).alias == "staging"
    assert shape_in(aliased) == {} and shape_in([(SHAPE_HEADER, b"[1]")]) == {}
