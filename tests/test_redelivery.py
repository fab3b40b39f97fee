"""Retriable failures through the real broker: the job is not answered, its record is
read again (the partition sought back to it) and answered once; a failure that does
not go away is answered INTERNAL after the bound, never retried for ever."""

from __future__ import annotations

import asyncio
import json
import time
from collections import Counter
from collections.abc import Sequence
from typing import Any

import pytest
from aiokafka import TopicPartition

from producer.kafka import KafkaSettings, ensure_topics
from producer.messages import PredictJob, decode_predict
from registry.entities import ModelVersion
from registry.errors import DatabaseError
from registry.store import Store
from tests.kafka_helpers import (
    committed_offset,
    job,
    publish_batch,
    read,
    read_results,
    running,
    settled,
)
from workers.batching import DynamicBatcher
from workers.consumer import RetrySettings
from workers.demo import digits_samples
from workers.errors import BatcherClosed
from workers.loop import Worker, WorkerSettings
from workers.serving import Retry

pytest_plugins = ["tests.registry_fixtures", "tests.serving_fixtures"]

RETRY = RetrySettings(attempts=2, backoff_s=0.05)


def jobs_on_one_partition(flaky: str) -> tuple[list[str], list[bytes]]:
    """Five jobs; ``flaky`` (in the middle) asks for the production alias, the others
    for version 1 explicitly, so that only the flaky one looks the alias up."""
    pixels, _ = digits_samples(5, seed=11)
    ids = ["ok-0", "ok-1", flaky, "ok-2", "ok-3"]
    raws = [
        job(job_id, {"x": [row.tolist()]}, **({} if job_id == flaky else {"version": 1}))
        for job_id, row in zip(ids, pixels, strict=True)
    ]
    return ids, raws


def count_polls(worker: Worker, monkeypatch: pytest.MonkeyPatch) -> list[list[str]]:
    """The job ids of every ``answer_many`` call the worker makes."""
    calls: list[list[str]] = []
    answer_many = worker.handler.answer_many

    async def counted(jobs: Sequence[PredictJob], received: float) -> list[Any]:
        calls.append([j.job_id for j in jobs])
        return await answer_many(jobs, received)

    monkeypatch.setattr(worker.handler, "answer_many", counted)
    return calls


def failing_resolve(store: Store, monkeypatch: pytest.MonkeyPatch, times: int) -> list[str]:
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
    kafka: KafkaSettings, worker: Worker, raws: list[bytes], job_ids: set[str]
) -> tuple[dict[str, dict[str, Any]], Counter[str]]:
    """Publish ``raws`` as one batch on partition 0, run the worker until every job is
    answered and the commit reached the end; the results and how often each came."""
    await ensure_topics(kafka)
    await publish_batch(kafka, kafka.topics.predict, raws, partition=0, key=b"k")
    tp, group, end = TopicPartition(kafka.topics.predict, 0), worker.settings.group, len(raws)
    async with running(worker.run):
        results = await read_results(kafka, job_ids)
        async with asyncio.timeout(10):  # the commit passes the held records in the end
            while (committed := await committed_offset(kafka, group, tp)) != end:
                assert committed is None or committed <= 2  # never past a held record
                await asyncio.sleep(0.1)
        answers = await read(kafka, kafka.topics.results, until=settled(len(job_ids)))
    return results, Counter(json.loads(r.value)["job_id"] for r in answers)


async def test_a_job_whose_registry_lookup_fails_is_read_again_and_answered_once(
    kafka: KafkaSettings, store: Store, digits: ModelVersion, monkeypatch: pytest.MonkeyPatch
) -> None:
    worker = Worker(kafka, store, WorkerSettings(metrics_interval_s=0.5, retry=RETRY))
    polls = count_polls(worker, monkeypatch)
    lookups = failing_resolve(store, monkeypatch, times=2)
    ids, raws = jobs_on_one_partition("flaky")

    results, answers = await serve_one_batch(kafka, worker, raws, set(ids))

    assert answers == dict.fromkeys(ids, 1)  # once each: no INTERNAL, no duplicates
    assert all(results[i]["status"] == "ok" for i in ids), results["flaky"]["error"]
    assert lookups == ["production"] * 3  # failed twice, then found
    # Read again from the broker, alone: the records after it were not answered again.
    assert polls[0] == ids
    assert polls[1:] == [["flaky"], ["flaky"]]


async def test_a_closed_batcher_sends_the_job_round_again(
    kafka: KafkaSettings, store: Store, digits: ModelVersion, monkeypatch: pytest.MonkeyPatch
) -> None:
    worker = Worker(kafka, store, WorkerSettings(metrics_interval_s=0.5, retry=RETRY))
    polls = count_polls(worker, monkeypatch)
    refused: list[int] = []
    submit = DynamicBatcher.submit_nowait

    def closed_once(batcher: DynamicBatcher, *args: Any, **kwargs: Any) -> Any:
        if not refused:
            refused.append(1)
            raise BatcherClosed("batcher closed before the job ran (test)")
        return submit(batcher, *args, **kwargs)

    monkeypatch.setattr(DynamicBatcher, "submit_nowait", closed_once)
    ids, raws = jobs_on_one_partition("first-alias")

    results, answers = await serve_one_batch(kafka, worker, raws, set(ids))

    assert refused and answers == dict.fromkeys(ids, 1)
    assert all(results[i]["status"] == "ok" for i in ids)
    assert len(polls) == 2 and set(polls[1]) < set(ids)  # only the refused jobs again


async def test_a_failure_that_stays_is_answered_internal_after_the_bound(
    kafka: KafkaSettings, store: Store, digits: ModelVersion, monkeypatch: pytest.MonkeyPatch
) -> None:
    worker = Worker(kafka, store, WorkerSettings(metrics_interval_s=0.5, retry=RETRY))
    polls = count_polls(worker, monkeypatch)
    lookups = failing_resolve(store, monkeypatch, times=1_000)
    ids, raws = jobs_on_one_partition("doomed")

    results, answers = await serve_one_batch(kafka, worker, raws, set(ids))

    assert answers == dict.fromkeys(ids, 1)
    doomed = results["doomed"]
    assert (doomed["status"], doomed["error"]["code"]) == ("error", "INTERNAL")
    assert "DatabaseError" in doomed["error"]["message"]
    assert "failed 3 times" in doomed["error"]["message"]
    assert len(lookups) == RETRY.attempts + 1
    assert polls[1:] == [["doomed"]] * RETRY.attempts
    assert all(results[i]["status"] == "ok" for i in ids if i != "doomed")


async def test_the_handler_returns_a_retry_for_a_retriable_failure_not_a_result(
    store: Store, digits: ModelVersion, monkeypatch: pytest.MonkeyPatch
) -> None:
    worker = Worker(KafkaSettings(), store, WorkerSettings(worker_id="w"))
    failing_resolve(store, monkeypatch, times=1)
    pixels, _ = digits_samples(1)
    predict = decode_predict(job("j", {"x": pixels.tolist()}))
    try:
        [retry] = await worker.handler.answer_many([predict], time.time())
        assert isinstance(retry, Retry) and isinstance(retry.error, DatabaseError)
        assert retry.job is predict and retry.version is None
        answered = worker.handler.give_up(retry, time.time(), attempts=3)
        assert (answered.job_id, answered.status) == ("j", "error")
        assert answered.error is not None and answered.error.code == "INTERNAL"
        [again] = await worker.handler.answer_many([predict], time.time())  # resolves now
        assert not isinstance(again, Retry) and again.status == "ok"
    finally:
        await worker.models.aclose()
