"""Commits are coalesced (at most every ``--commit-interval-s``) and at-least-once holds.

A worker whose interval never comes due (an hour) shows what coalescing may cost and
what it may not: killed after answering and before its next commit, its answered jobs
are read again and answered again, none lost; stopped (SIGTERM), or made to give up
its partitions by a rebalance, it commits what it answered at once, so nothing is
answered twice.
"""

from __future__ import annotations

import signal

import pytest

from producer.kafka import KafkaSettings
from tests.fault_helpers import Answers, Workers, publish_jobs

# The coalescing is the worker's own (workers/serving/delivery.py), the same on either
# broker: these run on the embedded one; test_faults.py covers both brokers' commits.
pytestmark = [
    pytest.mark.filterwarnings("ignore:open_text is deprecated:DeprecationWarning"),
]

NEVER = ("--commit-interval-s", "3600")  # the coalesced commit never comes due
JOBS = 200


@pytest.mark.slow
async def test_a_worker_killed_before_its_coalesced_commit_has_its_jobs_answered_again(
    kafka: KafkaSettings, workers: Workers
) -> None:
    ids = await publish_jobs(kafka, JOBS)
    first = workers.start(*NEVER)
    answers = Answers(kafka)
    await answers.wait(lambda c: ids <= set(c), timeout_s=90)
    first.send_signal(signal.SIGKILL)
    first.wait(10)

    workers.start()
    counts = await answers.wait(lambda c: all(c[i] >= 2 for i in ids), timeout_s=90)
    # Nothing was committed: every answered job was read again and answered again.
    assert all(counts[i] >= 2 for i in ids), sorted(i for i in ids if counts[i] < 2)[:5]


@pytest.mark.slow
async def test_a_stopped_worker_commits_what_it_answered_whatever_its_interval(
    kafka: KafkaSettings, workers: Workers
) -> None:
    ids = await publish_jobs(kafka, JOBS)
    first = workers.start(*NEVER)
    answers = Answers(kafka)
    await answers.wait(lambda c: ids <= set(c), timeout_s=90)
    first.send_signal(signal.SIGTERM)
    assert first.wait(60) == 0

    workers.start()
    later = await publish_jobs(kafka, 8, prefix="later")  # some on every partition
    counts = await answers.wait(lambda c: later <= set(c), timeout_s=90)
    assert [i for i in ids if counts[i] != 1] == []  # none read again


@pytest.mark.slow
async def test_a_rebalance_commits_what_is_answered_before_the_partitions_go(
    kafka: KafkaSettings, workers: Workers
) -> None:
    ids = await publish_jobs(kafka, JOBS)
    workers.start(*NEVER)
    answers = Answers(kafka)
    await answers.wait(lambda c: ids <= set(c), timeout_s=90)

    workers.start(*NEVER)  # joins: the first gives its partitions up, committing them
    await workers.assigned(1, timeout_s=90)
    later = await publish_jobs(kafka, 16, prefix="later")
    counts = await answers.wait(lambda c: later <= set(c), timeout_s=90)
    assert [i for i in ids if counts[i] != 1] == []  # none read again by the newcomer
