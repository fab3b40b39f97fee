"""A seeded fuzz of the predict topic through a real worker and the real embedded broker.

Over 10,000 records: valid jobs mixed with random bytes, truncated JSON, fields of the
wrong type or with extreme values, the poison triggers (deep nesting, invalid UTF-8,
huge integers), junk header keys and values (some not UTF-8), big and empty inputs,
bad reply topics. The worker stays up; every record with a decodable ``job_id`` gets
exactly one answer, every valid job its correct one; every other record is on the
dead-letter topic exactly once; nothing is lost. ``pytest -rP`` prints the figures.
"""

from __future__ import annotations

import asyncio
import json
import random
import time
from collections import Counter
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

import numpy as np
import onnxruntime as ort
import pytest
from aiokafka.structs import ConsumerRecord

from producer.contract.messages import DecodeError, decode_address, decode_envelope
from tests.kafka_helpers import job, publish, read
from tests.poison_helpers import Raw, send_raw
from workers.kafka.publisher import DEFAULT_MAX_RECORD_BYTES
from workers.recipes.demo import digits_samples

if TYPE_CHECKING:
    from tests.serving_fixtures import ServedDigits

pytest_plugins = ["tests.serving_fixtures"]

SEED = 20261128
RECORDS = 10_400
PARTITIONS = 8
PIXELS, _ = digits_samples(200, seed=SEED % 1000)
ROWS = [row.tolist() for row in PIXELS]
ZERO_ROWS = b",".join([b"[" + b",".join([b"0"] * 64) + b"]"] * 4100)  # over 4,096 rows


@dataclass
class Case:
    """One fuzz record and what it should come to."""

    raw: Raw
    kind: str
    rows: list[int] | None = None  # a valid job's rows (indices into PIXELS)
    code: str | None = None  # the error code it must be answered with, when known


class Fuzz:
    """The seeded generator: ``case(i)`` is record ``i``'s Case."""

    def __init__(self, seed: int) -> None:
        self.rng = random.Random(seed)

    def case(self, i: int) -> Case:
        kinds = [
            (self.valid, 30),
            (self.random_bytes, 8),
            (self.truncated, 8),
            (self.wrong_type, 14),
            (self.extreme, 12),
            (self.trigger, 6),
            (self.junk_headers, 8),
            (self.bad_reply_to, 5),
            (self.not_served, 5),
            (self.empty, 4),
        ]
        make = self.rng.choices([k for k, _ in kinds], [w for _, w in kinds])[0]
        return make(f"z{i}")

    # ---- the kinds ----------------------------------------------------------------

    def body(self, job_id: str) -> tuple[dict[str, Any], list[int]]:
        rows = [self.rng.randrange(len(ROWS)) for _ in range(self.rng.randint(1, 4))]
        body: dict[str, Any] = {
            "job_id": job_id,
            "model": "digits",
            "inputs": {"x": [ROWS[r] for r in rows]},
        }
        optional = {
            "schema": "maas.predict/v1",
            "version": self.rng.choice([None, 1]),
            "alias": "production",
            "priority": self.rng.randint(-5, 5),
            "deadline_ms": int(time.time() * 1000) + 600_000,
            "metadata": {"n": self.rng.random(), "tag": self.text(8)},
        }
        for name, value in optional.items():
            if self.rng.random() < 0.4:
                body[name] = value
        return body, rows

    def valid(self, job_id: str) -> Case:
        body, rows = self.body(job_id)
        return Case(Raw(_json(body), key=job_id.encode()), "valid", rows=rows)

    def random_bytes(self, job_id: str) -> Case:
        value = self.rng.randbytes(self.rng.randint(0, 300))
        return Case(Raw(value, key=self.rng.choice([None, job_id.encode()])), "random bytes")

    def truncated(self, job_id: str) -> Case:
        value = _json(self.body(job_id)[0])
        return Case(Raw(value[: self.rng.randrange(1, len(value))]), "truncated JSON")

    def wrong_type(self, job_id: str) -> Case:
        body, _ = self.body(job_id)
        field = self.rng.choice(
            [
                "job_id",
                "model",
                "inputs",
                "version",
                "alias",
                "reply_to",
                "deadline_ms",
                "priority",
                "metadata",
                "schema",
            ]
        )
        wrong: list[Any] = [5, -1.5, [1, 2], {"a": 1}, True, None, ""]
        if field != "job_id":  # a string job_id is a job_id: each case keeps its own
            wrong.append("text")
        body[field] = self.rng.choice(wrong)
        return Case(Raw(_json(body)), f"wrong type: {field}")

    def extreme(self, job_id: str) -> Case:
        body, _ = self.body(job_id)
        field, value = self.rng.choice(
            [
                ("version", 0),
                ("version", 2**70),
                ("priority", 2**31),
                ("priority", -(2**70)),
                ("deadline_ms", 2**63),
                ("deadline_ms", -1),
                ("model", "m" * 600),
                ("model", "\u0000💥"),
                ("alias", "a" * 600),
                ("job_id", "j" * 513),
                ("inputs", {"x": [[1e308] * 64]}),
                ("inputs", {"x": [[2**64] * 64]}),
                ("inputs", {"x": [[-(2**70)] * 64]}),
                ("inputs", {"x": [["a"] * 64]}),
                ("inputs", {"x": [[None] * 64]}),
                ("inputs", {"x": [[True] * 64]}),
                ("inputs", {"y": [[0] * 64]}),
                ("inputs", {"x": [[0] * 63]}),
                ("inputs", {"x": [[[0] * 64]]}),
                ("metadata", {"deep": [[[[[[1]]]]]], "big": 10**30}),
            ]
        )
        body[field] = value
        return Case(Raw(_json(body)), f"extreme: {field}")

    def trigger(self, job_id: str) -> Case:
        head = f'{{"job_id": "{job_id}", "model": "digits", '.encode()
        deep = b"[" * 5000 + b"]" * 5000
        value, code = self.rng.choice(
            [
                (head + b'"inputs": {"x": ' + deep + b"}}", "INVALID_INPUT"),
                (
                    head + b'"inputs": {"x": [[0]]}, "metadata": {"a": ' + deep + b"}}",
                    "INVALID_INPUT",
                ),
                (
                    head + b'"inputs": {"x": ' + b"[" * 900 + b"1" + b"]" * 900 + b"}}",
                    "INVALID_INPUT",
                ),
                (
                    head + b'"inputs": {"x": [[0]]}, "deadline_ms": 1' + b"0" * 400 + b"}",
                    "INVALID_INPUT",
                ),
                (head + b'"inputs": {"x": [[0]]}, "metadata": {"a": "\xff\xfe"}}', None),  # DLQ
                (head + b'"inputs": {"x": [[1e400]]}}', "INVALID_INPUT"),
                (head + b'"inputs": {"x": [' + ZERO_ROWS + b"]}}", "TOO_LARGE"),  # rows
            ]
        )
        return Case(Raw(value, key=job_id.encode()), "trigger", code=code)

    def junk_headers(self, job_id: str) -> Case:
        case = self.valid(job_id) if self.rng.random() < 0.5 else self.wrong_type(job_id)
        headers = [
            (self.junk_key(), self.rng.randbytes(self.rng.randint(0, 40)))
            for _ in range(self.rng.randint(1, 5))
        ]
        return Case(
            Raw(case.raw.value, key=case.raw.key, headers=headers),
            f"junk headers, {case.kind}",
            case.rows,
        )

    def junk_key(self) -> bytes:
        return self.rng.choice(
            [
                b"maas.error.code",
                b"maas.source.offset",
                b"",
                "k\u00e9y-\u2603".encode(),
                self.text(12).encode(),
                self.rng.randbytes(6),  # most often not UTF-8: the record cannot be read
            ]
        )

    def bad_reply_to(self, job_id: str) -> Case:
        body, _ = self.body(job_id)
        body["reply_to"] = self.rng.choice(
            ["bad topic!", "..", "t" * 250, f"nowhere.{job_id}", "a/b"]
        )
        return Case(Raw(_json(body)), "bad reply_to", code="INVALID_INPUT")

    def not_served(self, job_id: str) -> Case:
        body, _ = self.body(job_id)
        change, code = self.rng.choice(
            [
                ({"model": "nope"}, "MODEL_NOT_FOUND"),
                ({"version": 99}, "VERSION_NOT_FOUND"),
                ({"deadline_ms": 1}, "EXPIRED"),
            ]
        )
        body.update(change)
        return Case(Raw(_json(body)), "not served", code=code)

    def empty(self, job_id: str) -> Case:
        value, code = self.rng.choice(
            [
                (b"", None),
                (b"{}", None),
                (_json({"job_id": job_id, "model": "digits", "inputs": {}}), "INVALID_INPUT"),
                (
                    _json({"job_id": job_id, "model": "digits", "inputs": {"x": []}}),
                    "INVALID_INPUT",
                ),
                (
                    _json({"job_id": job_id, "model": "digits", "inputs": {"x": [[]]}}),
                    "INVALID_INPUT",
                ),
            ]
        )
        return Case(Raw(value), "empty", code=code)

    def big(self, job_id: str) -> Case:
        body, _ = self.body(job_id)
        body["inputs"] = {"x": [ROWS[0]] * 4000}  # ~1.4 MB, over the worker's byte limit
        return Case(Raw(_json(body), key=job_id.encode()), "big", code="TOO_LARGE")

    def text(self, size: int) -> str:
        return "".join(self.rng.choice("abcxyz-_.é☃") for _ in range(size))


def _json(body: dict[str, Any]) -> bytes:
    return json.dumps(body, ensure_ascii=False).encode()


def route(raw: Raw) -> str | None:
    """The job_id that must be answered, or None: the record must be dead-lettered."""
    if any(not _utf8(key) for key, _ in raw.headers):
        return None  # unreadable as a record
    value = raw.value or b""
    decode = decode_address if len(value) > DEFAULT_MAX_RECORD_BYTES else decode_envelope
    try:
        return decode(value).job_id
    except DecodeError:
        return None


def _utf8(key: bytes) -> bool:
    try:
        key.decode()
    except UnicodeDecodeError:
        return False
    return True


async def read_all(
    served: ServedDigits, topic: str, done: Any, timeout_s: float = 60
) -> list[ConsumerRecord[bytes, bytes]]:
    return await read(served.kafka, topic, until=done, timeout_s=timeout_s)


@pytest.mark.slow  # about 20 s of fuzzing, on two busy cores
async def test_ten_thousand_fuzzed_records_cost_one_answer_each(
    served_digits: ServedDigits,
) -> None:
    kafka = served_digits.kafka
    fuzz = Fuzz(SEED)
    cases = [fuzz.case(i) for i in range(RECORDS)] + [fuzz.big(f"z{RECORDS + i}") for i in range(3)]
    by_partition: dict[int, list[int]] = {}
    for i in range(len(cases)):
        by_partition.setdefault(i % PARTITIONS, []).append(i)
    started = time.monotonic()
    where: dict[tuple[int, int], int] = {}  # (partition, offset) -> case
    sent = await asyncio.gather(
        *(
            send_raw(kafka, kafka.topics.predict, p, [cases[i].raw for i in idx])
            for p, idx in by_partition.items()
        )
    )
    for (partition, indices), offsets in zip(by_partition.items(), sent, strict=True):
        where.update({(partition, offset): i for i, offset in zip(indices, offsets, strict=True)})

    routes = [route(case.raw) for case in cases]
    answerable = {job_id: i for i, job_id in enumerate(routes) if job_id is not None}
    dead = len(cases) - len(answerable)

    def results_in(records: list[ConsumerRecord[bytes, bytes]]) -> bool:
        return len(records) >= len(answerable)

    def letters_in(records: list[ConsumerRecord[bytes, bytes]]) -> bool:
        return len(records) >= dead

    results = await read_all(served_digits, kafka.topics.results, results_in)
    letters = await read_all(served_digits, kafka.topics.dlq, letters_in)
    took = time.monotonic() - started
    await asyncio.sleep(1.0)  # anything answered twice would come now
    results = await read_all(served_digits, kafka.topics.results, results_in)
    letters = await read_all(served_digits, kafka.topics.dlq, letters_in)

    answers = Counter(json.loads(r.value)["job_id"] for r in results)
    dead_letters = Counter(
        (int(dict(r.headers)["maas.source.partition"]), int(dict(r.headers)["maas.source.offset"]))
        for r in letters
    )
    dead_cases = {where[k] for k in dead_letters}
    lost = [
        i
        for i, job_id in enumerate(routes)
        if ((i not in dead_cases) if job_id is None else not answers[job_id])
    ]
    print(
        f"\nfuzz (seed {SEED}): {len(cases)} records, {sum(answers.values())} answered, "
        f"{sum(dead_letters.values())} dead-lettered, {len(lost)} lost, in {took:.1f} s; kinds: "
        + ", ".join(
            f"{k} {n}" for k, n in sorted(Counter(c.kind.split(":")[0] for c in cases).items())
        )
    )

    assert not lost, [cases[i].kind for i in lost[:10]]
    assert set(answers) == set(answerable) and set(answers.values()) == {1}  # once each
    assert set(dead_letters.values()) == {1}
    assert dead_cases == {i for i, job_id in enumerate(routes) if job_id is None}
    assert {dict(r.headers)["maas.error.code"] for r in letters} <= {b"INVALID_INPUT", b"TOO_LARGE"}
    answered = {json.loads(r.value)["job_id"]: r for r in results}
    check_answers(cases, answerable, answered, ort.InferenceSession(str(served_digits.artifact)))

    # And the worker is still up.
    await publish(kafka, kafka.topics.predict, [job("alive", {"x": [ROWS[0]]})])
    alive = await read_all(
        served_digits, kafka.topics.results, lambda rs: any(r.key == b"alive" for r in rs)
    )
    assert json.loads(next(r for r in alive if r.key == b"alive").value)["status"] == "ok"


def check_answers(
    cases: list[Case], answerable: dict[str, int], results: dict[str, Any], session: Any
) -> None:
    """Valid jobs got the model's answer, with their headers less maas's own; the cases
    whose failure is known got its code (the others: answered once, as checked above)."""
    for job_id, i in answerable.items():
        case, record = cases[i], results[job_id]
        body = json.loads(record.value)
        if case.rows is not None:
            assert body["status"] == "ok", (case.kind, body["error"])
            probabilities, labels = session.run(None, {"x": PIXELS[case.rows]})
            assert body["outputs"]["label"] == labels.tolist()
            np.testing.assert_allclose(
                body["outputs"]["probabilities"], probabilities, rtol=1e-4, atol=1e-5
            )
            sent = [(k.decode(), v) for k, v in case.raw.headers if not k.startswith(b"maas.")]
            assert list(record.headers) == sent
        elif case.code is not None:
            assert (body["status"], body["error"]["code"]) == ("error", case.code), case.kind
