"""A seeded fuzz run of the retrain topic: the trainer answers or dead-letters every record.

Hundreds of records through the real broker: random bytes, truncated JSON, each field
of a RetrainJob with a wrong type or an extreme value, refused recipes, datasets and
promote modes, deep nesting, invalid UTF-8, junk headers, mixed with valid jobs. Every
record whose ``job_id`` decodes is answered exactly once, every valid job is trained,
everything else is on the dead-letter topic, nothing is lost and the trainer stays up.

Fuzzed jobs never train: each carries params that fail before any data is read, unless
the fuzzed field is ``params`` itself, whose values are never valid. ``reply_to`` is
fuzzed with the predict topic's run, not here.
"""

from __future__ import annotations

import json
import random
import sys
from collections import Counter
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest
import torch

from producer.contract.messages import DecodeError, decode_envelope
from producer.kafka import KafkaSettings
from registry import Registry
from tests.kafka_helpers import read, running, settled
from workers.training.allowed import Allowed
from workers.training.trainer import Trainer, TrainerSettings

pytest_plugins = ["tests.registry_fixtures"]

SEED = 20251128
RECORDS = 400
VALID = 3
WEAK = {"epochs": 1, "hidden": 8, "max_rows": 200}
NOT_TRAINABLE = {"epochs": "fuzz"}  # a ParamsError before any data is read
DEEP = "[" * 50_000 + "]" * 50_000

ODD_VALUES: list[Any] = [
    None, 0, -1, 2**70, -(2**70), 1e308, True, "", "x" * 300, "\x00", "\u202e", [], {},
    [[[["nested"]]]], {"a": {"b": {"c": {}}}}, "é" * 50,
]  # fmt: skip
FIELD_VALUES: dict[str, list[Any]] = {
    "job_id": ["a\nb", "j" * 201, "\x7f"],
    "model": ["m" * 300, "a b", "digits\n", "-x", "ok.model-1"],
    "schema": ["maas.retrain/v2", "maas.predict/v1"],
    "recipe": ["os:abort", "antigravity:x", "subprocess:call", "x.y:z", "tabular", "a" * 5000],
    "dataset": [
        {"uri": "/etc/passwd"},
        {"uri": "../../outside.csv"},
        {"uri": "s3://bucket/x.csv"},
        {"uri": "file://host/x.csv"},
        {"uri": "a\x00.csv"},
        {"name": "nope"},
        {"name": "iris"},
        {"uri": None, "name": None},
    ],
    "params": [{"epochs": -1}, {"epochs": 2**70}, {"unknown": 1}, {"lr": "nan"}, {"epochs": DEEP}],
    "trigger": ["cron", "MANUAL"],
    "promote": ["always", "sometimes", "ALWAYS"],
}


class Fuzzer:
    """Builds the records of one seeded run."""

    def __init__(self, seed: int) -> None:
        self.random = random.Random(seed)
        self.count = 0

    def job(self, **fields: Any) -> dict[str, Any]:
        self.count += 1
        return {
            "schema": "maas.retrain/v1",
            "job_id": f"fuzz-{self.count}",
            "model": "digits",
            "params": NOT_TRAINABLE,
            **fields,
        }

    def record(self) -> bytes:
        makers: list[Callable[[], bytes]] = [
            self.random_bytes,
            self.truncated,
            self.odd_field,
            self.odd_field,
            self.known_trigger,
            self.invalid_utf8,
            self.deep,
            self.huge_number,
        ]
        return self.random.choice(makers)()

    def random_bytes(self) -> bytes:
        return self.random.randbytes(self.random.randint(0, 200))

    def truncated(self) -> bytes:
        raw = json.dumps(self.job()).encode()
        return raw[: self.random.randint(0, len(raw) - 1)]

    def odd_field(self) -> bytes:
        field = self.random.choice([*FIELD_VALUES])
        value = self.random.choice(ODD_VALUES + FIELD_VALUES[field])
        if field == "params" and value == {}:
            value = {"epochs": 0}  # {} would train with the defaults
        if field == "job_id" and isinstance(value, str) and value:
            value = f"{value}-{self.count}"
        return json.dumps(self.job(**{field: value})).encode()

    def known_trigger(self) -> bytes:
        fields = {name: self.random.choice(values) for name, values in FIELD_VALUES.items()}
        fields.pop("job_id")
        fields.pop("params")
        return json.dumps(self.job(**fields)).encode()

    def invalid_utf8(self) -> bytes:
        raw = json.dumps(self.job(recipe="RECIPE")).encode()
        return raw.replace(b"RECIPE", self.random.choice([b"\xff", b"\xc3(", b"\xed\xa0\x80"]))

    def deep(self) -> bytes:
        return json.dumps(self.job()).encode()[:-1] + b', "extra": ' + DEEP.encode() + b"}"

    def huge_number(self) -> bytes:
        raw = json.dumps(self.job(params={"epochs": 12345})).encode()
        return raw.replace(b"12345", b"1" + b"0" * 400)

    def headers(self) -> list[tuple[str, bytes]]:
        choices = [
            [],
            [("x", self.random.randbytes(8))],
            [("maas.error.code", b"FORGED"), ("", b"")],
            [(f"h{i}", b"\xff" * i) for i in range(20)],
        ]
        return self.random.choice(choices)


def valid_job(index: int) -> bytes:
    body = {"job_id": f"valid-{index}", "model": "digits", "params": WEAK, "promote": "never"}
    return json.dumps(body).encode()


def envelope_id(raw: bytes) -> str | None:
    try:
        return decode_envelope(raw).job_id
    except DecodeError:
        return None


async def send(kafka: KafkaSettings, records: list[tuple[bytes, list[tuple[str, bytes]]]]) -> None:
    from aiokafka import AIOKafkaProducer

    producer = AIOKafkaProducer(bootstrap_servers=kafka.bootstrap_servers)
    await producer.start()
    try:
        for value, headers in records:
            await producer.send(kafka.topics.retrain, value, key=b"digits", headers=headers)
        await producer.flush()
    finally:
        await producer.stop()


@pytest.mark.slow
async def test_every_fuzzed_retrain_record_is_answered_or_dead_lettered(
    kafka: KafkaSettings, registry: Registry, tmp_path: Path
) -> None:
    torch.set_num_threads(1)
    fuzzer = Fuzzer(SEED)
    records = [(fuzzer.record(), fuzzer.headers()) for _ in range(RECORDS)]
    step = RECORDS // (VALID + 1)
    for index in range(VALID):  # spread among the fuzz, the last one last
        at = RECORDS if index == VALID - 1 else step * (index + 1)
        records.insert(at, (valid_job(index), []))
    ids = [envelope_id(value) for value, _ in records]
    expected = Counter(job_id for job_id in ids if job_id is not None)
    undecodable = sum(job_id is None for job_id in ids)
    assert sum(expected.values()) > RECORDS // 4 and undecodable > RECORDS // 4  # a real mix

    modules = set(sys.modules)
    settings = TrainerSettings(allowed=Allowed(data_roots=(tmp_path / "data",)))
    trainer = Trainer(kafka, registry.models, registry.runs, settings)
    await send(kafka, records)
    async with running(trainer.run) as stop:
        answers = await read(
            kafka, kafka.topics.results, until=settled(sum(expected.values()), 2.0), timeout_s=240
        )
        dead = await read(kafka, kafka.topics.dlq, until=settled(undecodable, 2.0), timeout_s=60)
        assert not stop.is_set()

    bodies = [json.loads(record.value) for record in answers]
    answered = Counter(body["job_id"] for body in bodies)
    assert answered == expected  # every decodable job_id answered, exactly once per record
    assert len(dead) == undecodable  # every other record dead-lettered
    assert len(answers) + len(dead) == len(records)  # nothing lost
    valid = {b["job_id"]: b for b in bodies if b["job_id"].startswith("valid-")}
    assert sorted((b["status"], b["version"]) for b in valid.values()) == [
        ("ok", v) for v in range(1, VALID + 1)
    ]
    fuzzed = [b for b in bodies if not b["job_id"].startswith("valid-")]
    assert all(b["status"] == "error" for b in fuzzed)
    assert {b["error"]["code"] for b in fuzzed} <= {"INVALID_INPUT", "UNAUTHORIZED"}
    assert not {"antigravity", "subprocess"} & (set(sys.modules) - modules)
    print(
        f"retrain fuzz: {len(records)} records, {len(answers)} answered, "
        f"{len(dead)} dead-lettered, {len(records) - len(answers) - len(dead)} lost"
    )
