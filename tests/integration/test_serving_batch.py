"""A poll's worth of jobs answered together: ``JobHandler.answer_many`` on the real
digits model and SQLite registry, and the worker loop through the real broker."""

from __future__ import annotations

import asyncio
import json
import time
from collections import Counter
from collections.abc import AsyncIterator, Sequence
from pathlib import Path
from typing import Any

import numpy as np
import onnxruntime as ort
import pytest
from aiokafka import TopicPartition

from producer.contract.messages import PredictJob, Result, decode_predict
from producer.kafka import KafkaSettings, ensure_topics
from registry.entities import ModelVersion
from registry.registry import Registry
from tests.kafka_helpers import (
    committed_offset,
    job,
    publish_batch,
    read,
    read_results,
    running,
    settled,
)
from workers.batching.batcher import BatchConfig
from workers.recipes.demo import digits_samples
from workers.runtime.loader import RuntimeSettings
from workers.serving.handler import JobHandler
from workers.serving.loop import Worker, WorkerSettings
from workers.serving.metrics import MetricsRecorder
from workers.serving.models import ModelCache

pytestmark = pytest.mark.both_brokers

MAX_JOB_ROWS = 4
# The worker serves on CUDA where onnxruntime has it, whose float32 products run in TF32.
TOLERANCE = (
    {"rtol": 2e-3, "atol": 2e-4}
    if "CUDAExecutionProvider" in ort.get_available_providers()
    else {"rtol": 1e-5, "atol": 1e-6}
)


@pytest.fixture
async def models(registry: Registry, digits: ModelVersion) -> AsyncIterator[ModelCache]:
    # alias_ttl_s=0: no alias cache, so every lookup the handler asks for reaches the store.
    cache = ModelCache(
        registry.models,
        runtime=RuntimeSettings(),
        batch=BatchConfig(max_job_rows=MAX_JOB_ROWS, max_delay_ms=5),
        alias_ttl_s=0.0,
    )
    yield cache
    await cache.aclose()


@pytest.fixture
def metrics() -> MetricsRecorder:
    return MetricsRecorder(lambda windows: None, worker="test")


@pytest.fixture
def handler(models: ModelCache, metrics: MetricsRecorder) -> JobHandler:
    return JobHandler(models, metrics, worker="test")


def predict(job_id: str, pixels: np.ndarray | list[list[float]], **fields: Any) -> PredictJob:
    rows = pixels.tolist() if isinstance(pixels, np.ndarray) else pixels
    return decode_predict(job(job_id, {"x": rows}, **fields))


def run_directly(artifact: Path, pixels: np.ndarray) -> dict[str, np.ndarray]:
    session = ort.InferenceSession(str(artifact))
    names = [output.name for output in session.get_outputs()]
    return dict(zip(names, session.run(None, {"x": pixels}), strict=True))


async def test_answer_many_answers_every_job_in_order_whatever_the_mix(
    handler: JobHandler,
    metrics: MetricsRecorder,
    registry: Registry,
    digits_artifact: Path,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    lookups: list[tuple[str, str, object]] = []
    real_resolve, real_get_version = registry.models.resolve, registry.models.get_version

    def resolve(name: str, alias: str = "production") -> ModelVersion:
        lookups.append(("alias", name, alias))
        return real_resolve(name, alias)

    def get_version(name: str, version: int) -> ModelVersion:
        lookups.append(("version", name, version))
        return real_get_version(name, version)

    monkeypatch.setattr(registry.models, "resolve", resolve)
    monkeypatch.setattr(registry.models, "get_version", get_version)

    pixels, _ = digits_samples(8, seed=3)
    now_ms = int(time.time() * 1000)
    ok_rows = {"ok-a": pixels[0:3], "ok-b": pixels[3:4], "ok-c": pixels[4:6], "ok-v1": pixels[6:8]}
    jobs = [
        predict("ok-a", ok_rows["ok-a"], metadata={"n": 1}),
        predict("expired", pixels[:1], deadline_ms=now_ms - 1000),
        predict("no-model", pixels[:1], model="nope"),
        predict("ok-b", ok_rows["ok-b"], deadline_ms=now_ms + 60_000),
        predict("no-version", pixels[:1], version=99),
        decode_predict(job("wrong-name", {"pixels": pixels[:1].tolist()})),
        predict("no-alias", pixels[:1], alias="staging"),
        predict("wrong-shape", [[0.0] * 63]),
        predict("too-many-rows", np.zeros((MAX_JOB_ROWS + 1, 64))),
        predict("ok-c", ok_rows["ok-c"]),
        predict("ok-v1", ok_rows["ok-v1"], version=1),
    ]
    expected: dict[str, tuple[str, str]] = {  # job_id: error code, words in the message
        "expired": ("EXPIRED", "deadline"),
        "no-model": ("MODEL_NOT_FOUND", "nope"),
        "no-version": ("VERSION_NOT_FOUND", "99"),
        "wrong-name": ("INVALID_INPUT", "pixels"),
        "no-alias": ("VERSION_NOT_FOUND", "staging"),
        "wrong-shape": ("INVALID_INPUT", "64"),
        "too-many-rows": ("TOO_LARGE", f"{MAX_JOB_ROWS + 1} rows"),
    }

    results = await handler.answer_many(jobs, time.time())

    assert [r.job_id for r in results] == [j.job_id for j in jobs]
    for result in results:
        if result.job_id in expected:
            code, words = expected[result.job_id]
            assert (result.status, result.outputs) == ("error", None), result
            assert result.error is not None and result.error.code == code, result
            assert words in result.error.message
            continue
        assert result.status == "ok", result.error
        assert (result.model, result.version, result.worker) == ("digits", 1, "test")
        assert result.outputs is not None
        direct = run_directly(digits_artifact, ok_rows[result.job_id])
        assert result.outputs.keys() == direct.keys()
        for name, want in direct.items():
            np.testing.assert_allclose(result.outputs[name], want, **TOLERANCE)
        assert result.timing.total_ms >= result.timing.infer_ms >= 0
    by_id = {r.job_id: r for r in results}
    assert by_id["ok-a"].metadata == {"n": 1}
    # Queued together: the jobs that share a version and input shapes share a batch.
    alias_rows = sum(len(ok_rows[j]) for j in ("ok-a", "ok-b", "ok-c"))
    assert all(by_id[j].batch_size >= alias_rows for j in ("ok-a", "ok-b", "ok-c"))

    # One registry lookup per (model, version, alias), not one per job; none for a
    # model the registry's names do not hold (workers/serving/unknown.py).
    assert all(count == 1 for count in Counter(lookups).values()), lookups
    assert {key for key in lookups if key[0] == "alias"} == {
        ("alias", "digits", "production"),
        ("alias", "digits", "staging"),
    }
    assert ("version", "digits", 99) in lookups

    # Metrics: every job that reached a version is recorded, errors by code.
    [window] = metrics.close_windows()
    assert (window.model, window.version) == ("digits", 1)
    assert window.jobs == 4 + 3
    assert window.errors == {}  # a client's mistakes are not the model's errors
    assert window.client_errors == {"INVALID_INPUT": 2, "TOO_LARGE": 1}


async def test_alike_jobs_are_converted_as_one_and_split_back_row_for_row(
    handler: JobHandler,
    models: ModelCache,
    digits_artifact: Path,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    pixels, _ = digits_samples(40, seed=5)
    jobs = [predict(f"r{i}", pixels[i : i + 1]) for i in range(30)]
    jobs.append(predict("urgent", pixels[30:32], priority=5))  # another priority: apart
    loaded = await models.get(await models.resolve("digits", None, "production"))
    converted: list[int] = []
    real_prepare = loaded.runtime.prepare

    def prepare(inputs: dict[str, list[Any]]) -> dict[str, np.ndarray]:
        converted.append(len(inputs["x"]))
        return real_prepare(inputs)

    monkeypatch.setattr(loaded.runtime, "prepare", prepare)

    results = await handler.answer_many(jobs, time.time())

    # The 30 alike jobs in groups of max_job_rows (4 here), then the urgent one alone.
    assert converted == [4] * 7 + [2] + [2]
    direct = run_directly(digits_artifact, pixels[:32])
    for i, result in enumerate(results[:30]):
        assert result.job_id == f"r{i}" and result.outputs is not None
        np.testing.assert_allclose(
            result.outputs["probabilities"], direct["probabilities"][i : i + 1], **TOLERANCE
        )
        assert result.batch_size >= 30
    urgent = results[30]
    assert urgent.outputs is not None
    assert urgent.outputs["label"].tolist() == direct["label"][30:32].tolist()


async def test_answer_many_with_nothing_to_answer(handler: JobHandler) -> None:
    assert await handler.answer_many([], time.time()) == []


async def test_answer_is_answer_many_of_one(handler: JobHandler, digits_artifact: Path) -> None:
    pixels, _ = digits_samples(2)
    result: Result = await handler.answer(predict("one", pixels), time.time())
    assert (result.job_id, result.status, result.batch_size) == ("one", "ok", 2)
    assert result.outputs is not None
    direct = run_directly(digits_artifact, pixels)
    np.testing.assert_allclose(
        result.outputs["probabilities"], direct["probabilities"], **TOLERANCE
    )


# -- the loop: one poll, one partition, every kind of record ------------------------------


async def test_one_poll_of_mixed_records_is_answered_once_each_and_committed(
    kafka: KafkaSettings,
    registry: Registry,
    digits: ModelVersion,
    digits_artifact: Path,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    pixels, _ = digits_samples(8, seed=5)
    good = {f"g-{i}": pixels[i : i + 1 + i % 2] for i in range(6)}  # 1 or 2 rows each
    ok = [job(job_id, {"x": rows.tolist()}) for job_id, rows in good.items()]
    raws = [
        ok[0],
        b"\x00not json at all",  # no job_id: dead-lettered
        job("bad-field", {"x": [[0.0] * 64]}, priority="high"),  # a job_id: answered
        ok[1],
        job("no-model", {"x": [[0.0] * 64]}, model="nope"),
        job("wrong-shape", {"x": [[0.0] * 63]}),
        *ok[2:],
    ]
    errors = {
        "bad-field": "INVALID_INPUT",
        "no-model": "MODEL_NOT_FOUND",
        "wrong-shape": "INVALID_INPUT",
    }
    await ensure_topics(kafka)  # predict's 8 partitions exist before the records land on 0
    # One record batch, published before the worker starts: the worker gets it in one poll.
    await publish_batch(kafka, kafka.topics.predict, raws, partition=0, key=b"k")

    serving = Worker(
        kafka, registry.models, registry.metrics, WorkerSettings(metrics_interval_s=0.5)
    )
    polls: list[int] = []
    answer_many = serving.handler.answer_many

    async def counted(jobs: Sequence[PredictJob], received: float, **how: Any) -> list[Result]:
        polls.append(len(jobs))
        return await answer_many(jobs, received, **how)

    monkeypatch.setattr(serving.handler, "answer_many", counted)
    tp = TopicPartition(kafka.topics.predict, 0)
    group = WorkerSettings().group
    async with running(serving.run):
        await asyncio.wait_for(serving.ready.wait(), 30)
        results = await read_results(kafka, {*good, *errors})
        [dead] = await read(kafka, kafka.topics.dlq, until=lambda r: len(r) >= 1)
        async with asyncio.timeout(10):  # the commit loop reaches the end of the partition
            while (committed := await committed_offset(kafka, group, tp)) != len(raws):
                assert committed is None or committed < len(raws)
                await asyncio.sleep(0.1)

    assert polls == [len(good) + 2]  # the whole poll in one call: good jobs, no-model, shape
    for job_id, rows in good.items():
        result = results[job_id]
        assert result["status"] == "ok", result["error"]
        assert result["_key"] == job_id.encode()
        direct = run_directly(digits_artifact, rows)
        np.testing.assert_allclose(
            result["outputs"]["probabilities"], direct["probabilities"], **TOLERANCE
        )
        assert result["outputs"]["label"] == direct["label"].tolist()
    for job_id, code in errors.items():
        assert (results[job_id]["status"], results[job_id]["error"]["code"]) == ("error", code)
    headers = dict(dead.headers)
    assert (dead.key, dead.value) == (b"k", b"\x00not json at all")
    assert headers["maas.error.code"] == b"INVALID_INPUT"
    assert (headers["maas.source.partition"], headers["maas.source.offset"]) == (b"0", b"1")
    # Exactly once: one answer per job, one dead letter, nothing else.
    answers = await read(kafka, kafka.topics.results, until=settled(len(results)))
    assert Counter(json.loads(r.value)["job_id"] for r in answers) == dict.fromkeys(results, 1)
    assert len(await read(kafka, kafka.topics.dlq, until=settled(1))) == 1
    assert await committed_offset(kafka, group, tp) == len(raws)
