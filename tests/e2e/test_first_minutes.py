"""The client verbs as a new user meets them (issue 27): ``maas retrain`` without a
trainer says so at once, Ctrl-C while it waits is one line and exit 130; an unknown
tenant is named at once."""

from __future__ import annotations

import asyncio
import os
import signal
import subprocess
import sys
import uuid
from pathlib import Path

import pytest

from maas.errors import EXIT_INTERRUPTED
from producer.contract.messages import decode_retrain
from producer.kafka import KafkaSettings
from tests.cli_helpers import ROOT, maas_process, no_noise, one_error_line
from tests.kafka_helpers import group_member, read, topic_names


def kafka_args(kafka: KafkaSettings) -> list[str]:
    return ["--bootstrap-servers", kafka.bootstrap_servers, "--topic-prefix", kafka.topics.prefix]


async def test_without_a_trainer_it_says_so_and_sends_nothing(kafka: KafkaSettings) -> None:
    group = f"trainers-{uuid.uuid4().hex[:6]}"  # no member has ever joined it
    argv = ["retrain", "digits", "--trainer-group", group, *kafka_args(kafka)]

    done = await asyncio.to_thread(maas_process, *argv)

    assert done.returncode == 1
    one_error_line(done.stderr, f"no trainer is consuming {kafka.topics.retrain}", group)
    assert "maas trainer" in done.stderr and "maas up" in done.stderr
    assert kafka.topics.retrain in await topic_names(kafka)  # the topics exist; no job in them
    records = await read(kafka, kafka.topics.retrain, until=lambda rs: True, timeout_s=5)
    assert records == []


async def test_ctrl_c_while_waiting_is_one_line_and_exit_130(kafka: KafkaSettings) -> None:
    group = f"trainers-{uuid.uuid4().hex[:6]}"
    argv = ["retrain", "digits", "--job-id", "wait-1", "--trainer-group", group]
    async with group_member(kafka, kafka.topics.retrain, group):
        process = await asyncio.to_thread(
            subprocess.Popen,
            [sys.executable, "-m", "maas.cli", *argv, *kafka_args(kafka)],
            env={**os.environ, "PYTHONPATH": str(ROOT)},
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            text=True,
        )
        try:  # it waits once its job is on the topic
            await read(kafka, kafka.topics.retrain, until=lambda rs: len(rs) >= 1, timeout_s=60)
            process.send_signal(signal.SIGINT)
            out, err = await asyncio.to_thread(process.communicate, timeout=60)
        finally:
            process.kill()
    assert process.returncode == EXIT_INTERRUPTED, err
    no_noise(err)
    assert "Task exception was never retrieved" not in err
    lines = [line for line in err.splitlines() if line.strip()]
    assert lines[-1] == (
        "interrupted: stopped waiting for retrain job wait-1; a trainer that takes it "
        "after its deadline answers EXPIRED"
    ), err
    assert not [line for line in lines if "error" in line.lower()], err
    assert out == ""


async def test_the_job_carries_the_deadline_the_caller_waits_for(kafka: KafkaSettings) -> None:
    group = f"trainers-{uuid.uuid4().hex[:6]}"
    argv = ["retrain", "digits", "--job-id", "d-1", "--timeout", "1", "--trainer-group", group]
    async with group_member(kafka, kafka.topics.retrain, group):
        done = await asyncio.to_thread(maas_process, *argv, *kafka_args(kafka))
    assert done.returncode == 1
    (record,) = await read(kafka, kafka.topics.retrain, until=lambda rs: len(rs) >= 1)
    job = decode_retrain(record.value or b"")
    assert job.deadline_ms is not None


@pytest.mark.parametrize("verb", ["submit", "retrain"])
async def test_an_unknown_tenant_is_said_at_once_with_how_to_add_it(
    kafka: KafkaSettings, verb: str
) -> None:
    argv = {
        "submit": ["submit", "--model", "digits", "--inputs", '{"x": [[1]]}'],
        "retrain": ["retrain", "digits"],
    }[verb]

    done = await asyncio.to_thread(maas_process, *argv, "--tenant", "nobody", *kafka_args(kafka))

    assert done.returncode in (1, 2)
    one_error_line(done.stderr, "there is no tenant 'nobody'", "maas tenants add nobody")
    no_noise(done.stderr)
    assert f"{kafka.topics.prefix}nobody.results" not in await topic_names(kafka)


async def test_a_worker_pinned_to_an_unknown_model_says_so_at_start(
    kafka: KafkaSettings, tmp_path: Path
) -> None:
    """Issue 27 item 11: `maas worker --model nosuch` said only "worker started"."""
    argv = ["worker", "--model", "nosuch", *kafka_args(kafka)]
    argv += ["--database-url", f"sqlite:///{tmp_path / 'r.db'}"]
    argv += ["--artifact-dir", str(tmp_path / "artifacts")]
    process = await asyncio.to_thread(
        subprocess.Popen,
        [sys.executable, "-m", "maas.cli", *argv],
        env={**os.environ, "PYTHONPATH": str(ROOT)},
        stdout=subprocess.DEVNULL,
        stderr=subprocess.PIPE,
        text=True,
    )
    try:
        said = await asyncio.to_thread(lines_until, process, "worker started")
    finally:
        process.terminate()
        await asyncio.to_thread(process.communicate, timeout=60)  # and closes its stderr
    (warning,) = [line for line in said if "pinned model cannot be served yet" in line]
    assert '"model": "nosuch"' in warning and "no model named 'nosuch'" in warning
    assert str(tmp_path / "r.db") in warning  # which registry was asked


def lines_until(process: subprocess.Popen[str], fragment: str) -> list[str]:
    """The stderr lines of ``process`` up to the one holding ``fragment``."""
    assert process.stderr is not None
    lines = []
    for line in process.stderr:
        lines.append(line)
        if fragment in line:
            return lines
    raise AssertionError(f"{fragment!r} never said: {''.join(lines)}")
