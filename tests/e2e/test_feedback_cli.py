"""``maas feedback`` as a user runs it: one label, a CSV file of them, and the one-line
errors of a bad file or a bad command line."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

from producer.kafka import KafkaSettings
from tests.kafka_helpers import read

pytestmark = pytest.mark.both_brokers


def _maas(kafka: KafkaSettings, *args: str) -> subprocess.CompletedProcess[str]:
    env = {
        **os.environ,
        "MAAS_BOOTSTRAP_SERVERS": kafka.bootstrap_servers,
        "MAAS_TOPIC_PREFIX": kafka.topics.prefix,
    }
    return subprocess.run(
        [sys.executable, "-m", "maas.cli", "feedback", *args],
        capture_output=True,
        text=True,
        env=env,
        timeout=120,
        check=False,
    )


async def test_one_label_and_a_file_of_them_reach_the_feedback_topic(
    kafka: KafkaSettings, tmp_path: Path
) -> None:
    labels = tmp_path / "labels.csv"
    labels.write_text("job_id,row,label\na,0,7\na,1,3\nb,0,cat\nc,0,2.5\n")
    one = _maas(kafka, "j-1", "--label", "4")
    many = _maas(kafka, "--file", str(labels))
    assert one.returncode == 0, one.stderr
    assert many.returncode == 0, many.stderr
    records = await read(kafka, kafka.topics.feedback, until=lambda rs: len(rs) >= 5)
    sent = sorted(
        (r.key, json.loads(r.value)["row"], json.loads(r.value)["label"]) for r in records
    )
    assert sent == [(b"a", 0, 7), (b"a", 1, 3), (b"b", 0, "cat"), (b"c", 0, 2.5), (b"j-1", 0, 4)]


@pytest.mark.parametrize(
    ("args", "content", "error"),
    [
        ((), None, "give JOB_ID and --label L"),
        (("j",), None, "give JOB_ID and --label L"),
        (("--file", "FILE"), "id,label\nx,1\n", "the header must name job_id, row and label"),
        (("--file", "FILE"), "job_id,row,label\nx,-1,1\n", "row '-1' is not a row number"),
        (("--file", "FILE"), "job_id,row,label\nx,0,\n", "job_id and label must not be empty"),
        (("--file", "missing.csv"), None, "cannot read missing.csv"),
    ],
)
def test_bad_input_is_one_line(
    kafka: KafkaSettings, tmp_path: Path, args: tuple[str, ...], content: str | None, error: str
) -> None:
    path = tmp_path / "labels.csv"
    if content is not None:
        path.write_text(content)
    args = tuple(str(path) if a == "FILE" else a for a in args)
    done = _maas(kafka, *args)
    assert done.returncode == 1
    assert error in done.stderr
    assert len(done.stderr.strip().splitlines()) == 1, done.stderr
