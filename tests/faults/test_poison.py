"""One bad record costs one answer: records that a hostile or careless client writes,
through a real worker and the real embedded broker. Each is answered alone (or
dead-lettered when it names no job), the records polled with it are answered, and the
worker goes on."""

from __future__ import annotations

import asyncio
import itertools
import json
import time
import uuid
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np
import onnxruntime as ort
import pytest
from aiokafka import AIOKafkaProducer, TopicPartition
from aiokafka.structs import ConsumerRecord

from maas.cli import main
from producer.kafka import KafkaSettings
from tests.kafka_helpers import committed_offset, job, publish, read, read_results, topic_names
from tests.poison_helpers import Raw, send_raw
from workers.kafka.topics import ClusterTopics
from workers.recipes.demo import digits_samples

if TYPE_CHECKING:
    from tests.serving_fixtures import ServedDigits

pytest_plugins = ["tests.serving_fixtures"]

DEEP = "[" * 5000 + "]" * 5000
MiB = 1024 * 1024


def labels(artifact: Path, pixels: np.ndarray) -> list[int]:
    result: list[int] = ort.InferenceSession(str(artifact)).run(None, {"x": pixels})[1].tolist()
    return result


async def dead_letters(kafka: KafkaSettings, keys: set[bytes]) -> dict[bytes, Any]:
    """The dead letters keyed by ``keys`` (the original records' keys)."""

    def arrived(records: list[ConsumerRecord[bytes, bytes]]) -> bool:
        return keys <= {r.key for r in records}

    records = await read(kafka, kafka.topics.dlq, until=arrived)
    return {r.key: r for r in records if r.key in keys}


async def answers(kafka: KafkaSettings, job_ids: set[str], quiet_s: float = 1.0) -> dict[str, int]:
    """How often each of ``job_ids`` was answered on the results topic: read until
    nothing more came for ``quiet_s`` (a duplicate would come in that time)."""
    counts = dict.fromkeys(job_ids, 0)
    last = [time.monotonic(), 0]

    def quiet(records: list[ConsumerRecord[bytes, bytes]]) -> bool:
        if len(records) != last[1]:
            last[:] = [time.monotonic(), len(records)]
        return time.monotonic() - last[0] >= quiet_s

    for record in await read(kafka, kafka.topics.results, until=quiet):
        job_id = json.loads(record.value)["job_id"]
        if job_id in counts:
            counts[job_id] += 1
    return counts


async def test_a_header_key_that_is_not_utf8_is_dead_lettered_and_the_worker_goes_on(
    served_digits: ServedDigits,
) -> None:
    """aiokafka raises inside getmany() on such a record; the worker reads the partition
    raw, answers the records around it, dead-letters it and commits past it."""
    kafka = served_digits.kafka
    pixels, _ = digits_samples(4, seed=5)
    ids = ["h-before", "h-bad", "h-after"]
    records = [
        Raw(job(job_id, {"x": [row.tolist()]}), key=job_id.encode(), headers=headers)
        for job_id, row, headers in zip(
            ids,
            pixels,
            [[], [(b"\xff\xfeid", b"1"), (b"ok", b"2")], [(b"trace", b"t")]],
            strict=False,
        )
    ]
    base, *_ = await send_raw(kafka, kafka.topics.predict, 3, records)  # one batch

    results = await read_results(kafka, {"h-before", "h-after"})
    assert results["h-before"]["status"] == results["h-after"]["status"] == "ok"
    assert results["h-after"]["_headers"]["trace"] == b"t"
    letter = (await dead_letters(kafka, {b"h-bad"}))[b"h-bad"]
    headers = dict(letter.headers)
    assert letter.value == records[1].value
    assert headers["maas.error.code"] == b"INVALID_INPUT"
    assert b"header key is not valid UTF-8" in headers["maas.error.message"]
    assert (headers["\\xff\\xfeid"], headers["ok"]) == (b"1", b"2")  # kept, escaped
    assert headers["maas.source.offset"] == str(base + 1).encode()

    await publish(kafka, kafka.topics.predict, [job("h-later", {"x": [pixels[3].tolist()]})])
    assert (await read_results(kafka, {"h-later"}))["h-later"]["status"] == "ok"
    assert await answers(kafka, set(ids)) == {"h-before": 1, "h-bad": 0, "h-after": 1}
    tp = TopicPartition(kafka.topics.predict, 3)
    assert (await committed_offset(kafka, "maas-workers", tp) or 0) >= base + 3


POISON: dict[str, tuple[bytes, str]] = {  # job_id: (record, the code it is answered with)
    "p-deep-inputs": (
        b'{"job_id": "p-deep-inputs", "model": "digits", "inputs": {"x": ' + DEEP.encode() + b"}}",
        "INVALID_INPUT",
    ),
    "p-deep-metadata": (
        b'{"job_id": "p-deep-metadata", "model": "digits", "inputs": {"x": [[0.0]]}, '
        b'"metadata": {"a": ' + DEEP.encode() + b"}}",
        "INVALID_INPUT",
    ),
    "p-deadline": (
        b'{"job_id": "p-deadline", "model": "digits", "inputs": {"x": [[0.0]]}, '
        b'"deadline_ms": 1' + b"0" * 400 + b"}",
        "INVALID_INPUT",
    ),
    "p-bigint": (job("p-bigint", {"x": [[2**64] + [0] * 63]}), "INVALID_INPUT"),
    "p-nested-900": (  # decodes, but no array is that deep
        b'{"job_id": "p-nested-900", "model": "digits", "inputs": {"x": '
        + b"[" * 900
        + b"1"
        + b"]" * 900
        + b"}}",
        "INVALID_INPUT",
    ),
    "p-huge-float": (
        b'{"job_id": "p-huge-float", "model": "digits", "inputs": {"x": [[1e400]]}}',
        "INVALID_INPUT",
    ),
}


async def test_each_poison_record_is_answered_alone_and_its_neighbours_are_served(
    served_digits: ServedDigits,
) -> None:
    """The triggers that used to fail a whole poll, in one record batch with 40 good jobs."""
    kafka = served_digits.kafka
    pixels, _ = digits_samples(40, seed=7)
    good = [Raw(job(f"g-{i}", {"x": [row.tolist()]})) for i, row in enumerate(pixels)]
    poison = [Raw(raw, key=job_id.encode()) for job_id, (raw, _) in POISON.items()]
    utf8 = b'{"job_id": "p-utf8", "model": "digits", "inputs": {"x": [[0.0]]}, "metadata": {"a": "\xff"}}'
    batch = good[:20] + poison + [Raw(utf8, key=b"p-utf8")] + good[20:]
    await send_raw(kafka, kafka.topics.predict, 5, batch)

    results = await read_results(kafka, {f"g-{i}" for i in range(40)} | set(POISON))
    assert [results[f"g-{i}"]["status"] for i in range(40)] == ["ok"] * 40
    served = [results[f"g-{i}"]["outputs"]["label"][0] for i in range(40)]
    assert served == labels(served_digits.artifact, pixels)
    for job_id, (_, code) in POISON.items():
        assert (results[job_id]["status"], results[job_id]["error"]["code"]) == ("error", code)
    assert "nested" in results["p-deep-inputs"]["error"]["message"]
    assert "deadline_ms" in results["p-deadline"]["error"]["message"]
    assert "too large" in results["p-bigint"]["error"]["message"]
    letter = (await dead_letters(kafka, {b"p-utf8"}))[b"p-utf8"]
    assert b"UTF-8" in dict(letter.headers)["maas.error.message"]


async def test_a_bad_reply_to_is_answered_on_the_results_topic_and_creates_nothing(
    served_digits: ServedDigits,
) -> None:
    kafka = served_digits.kafka
    pixels, _ = digits_samples(1, seed=9)
    x = {"x": pixels.tolist()}
    nowhere = [f"{kafka.topics.prefix}nowhere.{uuid.uuid4().hex}" for _ in range(50)]
    jobs = [
        job("r-illegal", x, reply_to="bad topic!"),
        job("r-long", x, reply_to="t" * 250),
        job("r-dot", x, reply_to=".."),
        *(job(f"r-missing-{i}", x, reply_to=topic) for i, topic in enumerate(nowhere)),
    ]
    started = time.monotonic()
    await publish(kafka, kafka.topics.predict, [*jobs, job("r-fine", x)], partition=1)
    fine = await read_results(kafka, {"r-fine"})
    took = time.monotonic() - started

    assert fine["r-fine"]["status"] == "ok"
    assert took < 10  # 8 minutes when each bad reply_to waited for metadata, twice, 6 times
    ids = {"r-illegal", "r-long", "r-dot"} | {f"r-missing-{i}" for i in range(50)}
    results = await read_results(kafka, ids)
    for job_id in ("r-illegal", "r-long", "r-dot"):
        assert results[job_id]["error"]["code"] == "INVALID_INPUT"
        assert "not a legal Kafka topic name" in results[job_id]["error"]["message"]
    for i in range(50):
        error = results[f"r-missing-{i}"]["error"]
        assert error["code"] == "INVALID_INPUT" and "does not exist" in error["message"]
    assert not set(nowhere) & await topic_names(kafka)


async def test_sizes_are_checked_before_decoding_and_every_answer_fits(
    served_digits: ServedDigits,
) -> None:
    kafka = served_digits.kafka
    pixels, _ = digits_samples(2, seed=3)
    row = pixels[0].tolist()
    records = [
        Raw(job("s-big-job", {"x": [row] * 4000}), key=b"s-big-job"),  # ~1.4 MB
        Raw(job("s-big-metadata", {"x": [row]}, metadata={"blob": "m" * 200_000})),
        Raw(job("s-big-headers", {"x": [row]}), headers=[(b"blob", b"h" * (MiB + 1000))]),
        Raw(b"\x00" * (MiB + MiB // 2), key=b"s-garbage"),
        Raw(job("s-fine", {"x": [pixels[1].tolist()]})),
    ]
    assert len(records[0].value or b"") > MiB
    for record in records:  # one record per batch: each of them is big
        await send_raw(kafka, kafka.topics.predict, 6, [record])

    ids = {"s-big-job", "s-big-metadata", "s-big-headers", "s-fine"}
    results = await read_results(kafka, ids)
    assert results["s-fine"]["status"] == "ok"
    big_job = results["s-big-job"]["error"]
    assert big_job["code"] == "TOO_LARGE"
    assert str(MiB) in big_job["message"] and "--max-job-bytes" in big_job["message"]
    assert results["s-big-metadata"]["error"]["code"] == "TOO_LARGE"
    assert results["s-big-metadata"]["metadata"] == {}  # not echoed
    headers = results["s-big-headers"]
    assert (
        headers["error"]["code"] == "TOO_LARGE" and "Result would be" in headers["error"]["message"]
    )
    assert "blob" not in headers["_headers"]  # dropped to make the answer fit

    letter = (await dead_letters(kafka, {b"s-garbage"}))[b"s-garbage"]
    letter_headers = dict(letter.headers)
    assert letter_headers["maas.error.code"] == b"TOO_LARGE"
    assert letter_headers["maas.error.truncated"] == f"value={MiB + MiB // 2}".encode()
    assert 0 < len(letter.value) < MiB and set(letter.value) == {0}
    assert await answers(kafka, ids) == dict.fromkeys(ids, 1)


async def test_client_set_maas_headers_are_never_passed_on(served_digits: ServedDigits) -> None:
    """A dead letter's reason and origin cannot be forged, nor put on a Result."""
    kafka = served_digits.kafka
    forged = [
        ("maas.error.code", b"FORGED"),
        ("maas.source.topic", b"elsewhere"),
        ("keep", b"1"),
    ]
    pixels, _ = digits_samples(1, seed=4)
    await publish(
        kafka, kafka.topics.predict, [job("f-job", {"x": pixels.tolist()})], headers=forged
    )
    await publish(kafka, kafka.topics.predict, [b"not json"], key=b"f-garbage", headers=forged)

    result = (await read_results(kafka, {"f-job"}))["f-job"]
    assert result["_headers"] == {"keep": b"1"}
    letter = (await dead_letters(kafka, {b"f-garbage"}))[b"f-garbage"]
    names = [name for name, _ in letter.headers]
    assert names.count("maas.error.code") == names.count("maas.source.topic") == 1
    headers = dict(letter.headers)
    assert headers["maas.error.code"] == b"INVALID_INPUT"
    assert headers["maas.source.topic"] == kafka.topics.predict.encode()
    assert headers["keep"] == b"1"


def test_submit_of_a_job_over_the_producers_limit_says_what_to_do(
    served_digits: ServedDigits, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    kafka = served_digits.kafka
    (tmp_path / "in.json").write_text(json.dumps({"x": [[0.125] * 64] * 3000}))
    args = [
        *("--bootstrap-servers", kafka.bootstrap_servers, "--topic-prefix", kafka.topics.prefix),
        "--embedded-broker",
    ]
    code = main(["submit", "--model", "digits", "--inputs", f"@{tmp_path / 'in.json'}", *args])
    captured = capsys.readouterr()
    assert code == 1
    assert "more than the producer sends in one record" in captured.err
    assert "--rows-per-job" in captured.err and "Traceback" not in captured.err


async def test_reads_of_the_topic_list_are_shared_rate_limited_and_never_spin(
    served_digits: ServedDigits,
) -> None:
    """Jobs that need a fresh topic list share one read; they never busy-wait on one
    that finished (a read done, and another job asking in the same loop iteration)."""
    kafka = served_digits.kafka
    producer = AIOKafkaProducer(bootstrap_servers=kafka.bootstrap_servers)
    await producer.start()
    try:
        reads = []
        fetch = producer.client.fetch_all_metadata

        async def counted() -> Any:
            reads.append(time.monotonic())
            return await fetch()

        producer.client.fetch_all_metadata = counted
        topics = ClusterTopics(producer.client, min_refresh_s=0.01)

        async def asks(delay: float) -> None:
            await asyncio.sleep(delay)
            await topics.refresh(time.monotonic())

        started = time.monotonic()
        async with asyncio.timeout(20):
            await asyncio.gather(*(asks(i * 0.0002) for i in range(3000)))
    finally:
        await producer.stop()
    assert kafka.topics.predict in topics.known and "nowhere" not in topics.known
    assert len(reads) <= (time.monotonic() - started) / 0.01 + 2  # one per interval at most
    # Spaced by the interval: each read waits for it from the moment the one before was
    # asked, which this wrapper sees a little later (less than the interval's half even
    # on a loaded machine); a spin would show gaps of microseconds.
    assert all(b - a >= 0.005 for a, b in itertools.pairwise(reads))
