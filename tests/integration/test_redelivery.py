"""Retriable failures through the real broker: the job is not answered, its record is
read again (the partition sought back to it) and answered once; a failure that does
not go away is answered INTERNAL after the bound, never retried for ever."""

from __future__ import annotations

import asyncio
import json
import time
from collections import Counter
from collections.abc import AsyncIterator, Sequence
from typing import Any

import pytest
from aiokafka import TopicPartition

from producer.contract.messages import PredictJob, decode_predict
from producer.kafka import KafkaSettings, ensure_topics
from registry.entities import ModelVersion
from registry.errors import DatabaseError
from registry.models import ModelStore
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
from workers.batching.batcher import DynamicBatcher
from workers.errors import BatcherClosed
from workers.kafka.clients import RetrySettings
from workers.recipes.demo import digits_samples
from workers.serving.handler import Retry
from workers.serving.loop import Worker, WorkerSettings

RETRY = RetrySettings(attempts=2, backoff_s=0.05)


@pytest.fixture
async def worker(
    kafka: KafkaSettings, registry: Registry, digits: ModelVersion
) -> AsyncIterator[Worker]:
    """A worker (not running yet) that tries a job twice more, 50 ms apart at first."""
    worker = Worker(
        kafka,
        registry.models,
        registry.metrics,
        WorkerSettings(metrics_interval_s=0.5, retry=RETRY),
    )
    yield worker
    await worker.models.aclose()


@pytest.fixture
def polls(worker: Worker, monkeypatch: pytest.MonkeyPatch) -> list[list[str]]:
    """The job ids of every ``answer_many`` call the worker makes."""
    calls: list[list[str]] = []
    answer_many = worker.handler.answer_many

    async def counted(jobs: Sequence[PredictJob], received: float, **how: Any) -> list[Any]:
        calls.append([j.job_id for j in jobs])
        return await answer_many(jobs, received, **how)

    monkeypatch.setattr(worker.handler, "answer_many", counted)
    return calls


def failing_resolve(store: ModelStore, monkeypatch: pytest.MonkeyPatch, times: int) -> list[str]:
    """``store.resolve`` raises DatabaseError ``times`` times, then works."""
    calls: list[str] = []
    real = store.resolve

    def resolve(name: str, alias: str = "production") -> ModelVersion:
        calls.append(alias)
        if len(calls) <= times:
            raise DatabaseError("the database is unreachable (test)")
        return real(name, alias)

    monkeypatch.setattr(store, "resolve", resolve)
    return calls


async def serve_one_batch(
    kafka: KafkaSettings, worker: Worker, flaky: str
) -> tuple[list[str], dict[str, dict[str, Any]], Counter[str]]:
    """Five jobs in one record batch on partition 0: ``flaky``, in the middle, asks for
    the production alias, the others for version 1, so that only ``flaky`` looks the
    alias up. Runs the worker until every job is answered and the commit reached the
    end; returns the job ids, their results and how often each was answered."""
    pixels, _ = digits_samples(5, seed=11)
    ids = ["ok-0", "ok-1", flaky, "ok-2", "ok-3"]
    raws = [
        job(job_id, {"x": [row.tolist()]}, **({} if job_id == flaky else {"version": 1}))
        for job_id, row in zip(ids, pixels, strict=True)
    ]
    await ensure_topics(kafka)
    await publish_batch(kafka, kafka.topics.predict, raws, partition=0, key=b"k")
    tp, group = TopicPartition(kafka.topics.predict, 0), worker.settings.group
    async with running(worker.run):
        results = await read_results(kafka, set(ids))
        async with asyncio.timeout(10):  # the commit passes the held records in the end
            while (committed := await committed_offset(kafka, group, tp)) != len(raws):
                assert committed is None or committed <= 2  # never past a held record
                await asyncio.sleep(0.1)
        answers = await read(kafka, kafka.topics.results, until=settled(len(ids)))
    return ids, results, Counter(json.loads(r.value)["job_id"] for r in answers)


async def test_a_job_whose_registry_lookup_fails_is_read_again_and_answered_once(
    kafka: KafkaSettings,
    registry: Registry,
    worker: Worker,
    polls: list[list[str]],
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    lookups = failing_resolve(registry.models, monkeypatch, times=2)

    ids, results, answers = await serve_one_batch(kafka, worker, "flaky")

    assert answers == dict.fromkeys(ids, 1)  # once each: no INTERNAL, no duplicates
    assert all(results[i]["status"] == "ok" for i in ids), results["flaky"]["error"]
    assert lookups == ["production"] * 3  # failed twice, then found
    # Read again from the broker, alone: the records after it were not answered again.
    assert polls == [ids, ["flaky"], ["flaky"]]


async def test_a_closed_batcher_sends_the_job_round_again(
    kafka: KafkaSettings, worker: Worker, polls: list[list[str]], monkeypatch: pytest.MonkeyPatch
) -> None:
    refused: list[int] = []
    submit = DynamicBatcher.submit_nowait

    def closed_once(batcher: DynamicBatcher, *args: Any, **kwargs: Any) -> Any:
        if not refused:
            refused.append(1)
            raise BatcherClosed("batcher closed before the job ran (test)")
        return submit(batcher, *args, **kwargs)

    monkeypatch.setattr(DynamicBatcher, "submit_nowait", closed_once)

    ids, results, answers = await serve_one_batch(kafka, worker, "first-alias")

    assert refused and answers == dict.fromkeys(ids, 1)
    assert all(results[i]["status"] == "ok" for i in ids)
    assert len(polls) == 2 and set(polls[1]) < set(ids)  # only the refused jobs again


async def test_a_failure_that_stays_is_answered_internal_after_the_bound(
    kafka: KafkaSettings,
    registry: Registry,
    worker: Worker,
    polls: list[list[str]],
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    lookups = failing_resolve(registry.models, monkeypatch, times=1_000)

    ids, results, answers = await serve_one_batch(kafka, worker, "doomed")

    assert answers == dict.fromkeys(ids, 1)
    doomed = results["doomed"]
    assert (doomed["status"], doomed["error"]["code"]) == ("error", "INTERNAL")
    assert "DatabaseError" in doomed["error"]["message"]
    assert "failed 3 times" in doomed["error"]["message"]
    assert len(lookups) == RETRY.attempts + 1
    assert polls[1:] == [["doomed"]] * RETRY.attempts
    assert all(results[i]["status"] == "ok" for i in ids if i != "doomed")


async def test_the_handler_returns_a_retry_for_a_retriable_failure_not_a_result(
    registry: Registry, worker: Worker, monkeypatch: pytest.MonkeyPatch
) -> None:
    failing_resolve(registry.models, monkeypatch, times=1)
    pixels, _ = digits_samples(1)
    predict = decode_predict(job("j", {"x": pixels.tolist()}))
    [retry] = await worker.handler.answer_many([predict], time.time())
    assert isinstance(retry, Retry) and isinstance(retry.error, DatabaseError)
    assert retry.job is predict and retry.version is None
    answered = worker.handler.give_up(retry, time.time(), attempts=3)
    assert (answered.job_id, answered.status) == ("j", "error")
    assert answered.error is not None and answered.error.code == "INTERNAL"
    [again] = await worker.handler.answer_many([predict], time.time())  # resolves now
    assert not isinstance(again, Retry) and again.status == "ok"
