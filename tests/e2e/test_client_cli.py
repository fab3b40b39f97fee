"""``maas submit``, ``maas score`` and ``maas retrain`` as a user runs them, against a real
worker (``maas retrain`` with a trainer: ``tests/integration/test_scheduler.py``)."""

from __future__ import annotations

import asyncio
import csv
import json
import uuid
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np
import numpy.typing as npt
import onnxruntime as ort
import pytest

from maas.cli import main
from producer.client import Client
from producer.contract.messages import Dataset, decode_retrain
from producer.kafka import KafkaSettings
from producer.score import Scorer, ScoreSettings
from tests.kafka_helpers import group_member, read
from workers.recipes.demo import digits_samples

if TYPE_CHECKING:
    from tests.kafka_helpers import Broker
    from tests.serving_fixtures import ServedDigits

pytestmark = pytest.mark.both_brokers


def kafka_args(prefix: str, bootstrap: str) -> list[str]:
    return ["--bootstrap-servers", bootstrap, "--topic-prefix", prefix]


@pytest.fixture
def served_args(served_digits: ServedDigits) -> list[str]:
    kafka = served_digits.kafka
    return kafka_args(kafka.topics.prefix, kafka.bootstrap_servers)


def direct(artifact: Path, pixels: npt.NDArray[np.float32]) -> list[Any]:
    session = ort.InferenceSession(str(artifact))
    return list(session.run(None, {"x": pixels}))


def read_out(path: Path) -> list[dict[str, Any]]:
    return [json.loads(line) for line in path.read_text().splitlines()]


def write_jsonl(path: Path, pixels: npt.NDArray[np.float32]) -> None:
    with path.open("w") as out:
        for i, row in enumerate(pixels):
            out.write(json.dumps({"id": f"r{i}", "x": row.tolist()}) + "\n")


# ---- maas submit ----------------------------------------------------------------------


def test_submit_prints_the_result(
    served_digits: ServedDigits, served_args: list[str], capsys: pytest.CaptureFixture[str]
) -> None:
    pixels, _ = digits_samples(2)
    inputs = json.dumps({"x": pixels.tolist()})
    code = main(["submit", "--model", "digits", "--inputs", inputs, *served_args])
    result = json.loads(capsys.readouterr().out)
    assert code == 0
    assert (result["status"], result["version"]) == ("ok", served_digits.version)
    assert result["outputs"]["label"] == direct(served_digits.artifact, pixels)[1].tolist()


def test_submit_reads_inputs_from_a_file_and_exits_1_on_an_error(
    served_args: list[str], tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    (tmp_path / "in.json").write_text(json.dumps({"x": [[0.0] * 64]}))
    args = ["submit", "--model", "nope", "--inputs", f"@{tmp_path / 'in.json'}", *served_args]
    assert main(args) == 1
    result = json.loads(capsys.readouterr().out)
    assert result["error"]["code"] == "MODEL_NOT_FOUND"


def test_submit_without_a_worker_exits_2_and_says_what_to_check(
    broker: Broker, capsys: pytest.CaptureFixture[str]
) -> None:
    args = kafka_args(f"n{uuid.uuid4().hex[:8]}.", broker.bootstrap_servers)
    inputs = json.dumps({"x": [[0.0] * 64]})
    code = main(["submit", "--model", "digits", "--inputs", inputs, "--timeout", "0.5", *args])
    captured = capsys.readouterr()
    assert code == 2
    assert captured.out == ""
    assert "maas worker" in captured.err and "maas models list" in captured.err


# ---- maas score -----------------------------------------------------------------------


def check_rows(rows: list[dict[str, Any]], expected: list[Any], version: int) -> None:
    assert [r["row"] for r in rows] == list(range(len(expected[1])))
    assert all(r["status"] == "ok" and r["version"] == version for r in rows)
    assert [r["outputs"]["label"] for r in rows] == expected[1].tolist()
    probabilities = np.array([r["outputs"]["probabilities"] for r in rows])
    np.testing.assert_allclose(probabilities, expected[0], rtol=1e-4, atol=1e-5)


def test_score_jsonl_matches_direct_inference_row_for_row_and_resumes(
    served_digits: ServedDigits, served_args: list[str], tmp_path: Path
) -> None:
    pixels, _ = digits_samples(2000)
    source, out = tmp_path / "in.jsonl", tmp_path / "out.jsonl"
    write_jsonl(source, pixels)
    args = ["score", str(source), "--model", "digits", "--out", str(out), *served_args]
    assert main(args) == 0
    rows = read_out(out)
    expected = direct(served_digits.artifact, pixels)
    check_rows(rows, expected, served_digits.version)
    assert [r["id"] for r in rows] == [f"r{i}" for i in range(2000)]

    # An interrupted run: 1,000 whole lines and half of the next one.
    lines = out.read_text().splitlines(keepends=True)
    out.write_text("".join(lines[:1000]) + lines[1000][:40])
    with Client(served_digits.kafka) as client:
        stats = Scorer(client, ScoreSettings(model="digits")).run(source, out)
    assert (stats.skipped, stats.sent, stats.jobs) == (1000, 1000, 1000 // 32 + 1)
    check_rows(read_out(out), expected, served_digits.version)


def test_score_csv_and_parquet(
    served_digits: ServedDigits, served_args: list[str], tmp_path: Path
) -> None:
    import pyarrow as pa
    import pyarrow.parquet as pq

    pixels, _ = digits_samples(100, seed=3)
    columns = [f"p{j}" for j in range(64)]
    with (tmp_path / "in.csv").open("w", newline="") as text:
        writer = csv.writer(text)
        writer.writerow(["id", *columns])
        writer.writerows([i, *row.tolist()] for i, row in enumerate(pixels))
    table = {"id": list(range(100)), **{c: pixels[:, j] for j, c in enumerate(columns)}}
    pq.write_table(pa.table(table), tmp_path / "in.parquet")
    pq.write_table(pa.table({"x": pixels.tolist()}), tmp_path / "list.parquet")
    expected = direct(served_digits.artifact, pixels)
    for name in ("in.csv", "in.parquet", "list.parquet"):
        out = tmp_path / f"{name}.out.jsonl"
        args = ["score", str(tmp_path / name), "--model", "digits", "--out", str(out)]
        assert main([*args, "--rows-per-job", "7", *served_args]) == 0, name
        rows = read_out(out)
        check_rows(rows, expected, served_digits.version)
        if name != "list.parquet":
            assert [str(r["id"]) for r in rows] == [str(i) for i in range(100)]


def test_a_bad_row_is_written_with_its_error_and_the_exit_code_is_1(
    served_digits: ServedDigits, served_args: list[str], tmp_path: Path
) -> None:
    pixels, _ = digits_samples(40)
    source, out = tmp_path / "in.jsonl", tmp_path / "out.jsonl"
    write_jsonl(source, pixels)
    lines = source.read_text().splitlines()
    lines[5] = json.dumps({"id": "short", "x": [0.0] * 63})
    lines[6] = "{not json"
    source.write_text("\n".join(lines) + "\n")
    args = ["score", str(source), "--model", "digits", "--out", str(out), *served_args]
    assert main(args) == 1
    rows = read_out(out)
    assert len(rows) == 40
    failed = {r["row"]: r for r in rows if r["status"] != "ok"}
    assert set(failed) == {5, 6}
    assert failed[5]["error"]["code"] == "INVALID_INPUT" and failed[5]["id"] == "short"
    assert "64" in failed[5]["error"]["message"]
    assert failed[6]["error"]["code"] == "INVALID_INPUT" and failed[6]["outputs"] is None
    keep = [i for i in range(40) if i not in (5, 6)]
    assert [rows[i]["outputs"]["label"] for i in keep] == [
        direct(served_digits.artifact, pixels)[1][i] for i in keep
    ]


# ---- maas retrain ---------------------------------------------------------------------


async def test_retrain_publishes_the_job_its_flags_describe_and_exits_1_without_a_trainer(
    kafka: KafkaSettings, capsys: pytest.CaptureFixture[str]
) -> None:
    args = kafka_args(kafka.topics.prefix, kafka.bootstrap_servers)
    flags = ["--dataset", "digits", "--params", '{"epochs": 3}', "--promote", "never"]
    retrain = ["retrain", "digits", *flags, "--recipe", "mlp", "--job-id", "r-1", "--timeout", "1"]
    group = f"trainers-{uuid.uuid4().hex[:6]}"  # a member that never answers
    async with group_member(kafka, kafka.topics.retrain, group):
        code = await asyncio.to_thread(main, [*retrain, "--trainer-group", group, *args])
    assert code == 1
    captured = capsys.readouterr()
    assert captured.out == ""
    assert "error: no result for job 'r-1' within 1s" in captured.err
    records = await read(kafka, kafka.topics.retrain, until=lambda rs: len(rs) >= 1)
    job = decode_retrain(records[0].value or b"")
    assert (job.job_id, job.model, job.recipe, job.promote) == ("r-1", "digits", "mlp", "never")
    assert (job.dataset, job.params) == (Dataset(name="digits"), {"epochs": 3})
    assert (job.trigger, job.reply_to) == ("manual", kafka.topics.results)
    assert job.deadline_ms is not None  # the caller waits 1 s: a later trainer answers EXPIRED
    assert records[0].key == b"digits"
