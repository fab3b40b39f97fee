"""The trainer runs only what its operator allowed, answers refusals without leaking file
contents, and its gate compares candidate and production on the same held-out rows."""

from __future__ import annotations

import csv
import json
import sys
from pathlib import Path
from typing import Any

import numpy as np
import pytest
import torch

from producer.contract.messages import Dataset, RetrainJob, RetrainResult
from producer.kafka import KafkaSettings
from registry import Draft, Registry
from registry.artifacts import model_file
from tests.kafka_helpers import publish, read, retrain_job, running, settled
from workers.recipes.data import load_builtin
from workers.recipes.export import probabilities_of
from workers.training.allowed import Allowed
from workers.training.trainer import Trainer, TrainerSettings

pytest_plugins = ["tests.registry_fixtures"]

WEAK = {"epochs": 1, "hidden": 8, "max_rows": 200}
GOOD = {"epochs": 5}


@pytest.fixture(autouse=True)
def _one_thread() -> None:
    torch.set_num_threads(1)


@pytest.fixture
def data_root(tmp_path: Path) -> Path:
    root = tmp_path / "data"
    root.mkdir()
    return root


def make_trainer(registry: Registry, root: Path, **allowed: Any) -> Trainer:
    settings = TrainerSettings(worker_id="t", allowed=Allowed(data_roots=(root,), **allowed))
    return Trainer(KafkaSettings(), registry.models, registry.runs, settings)


def error_of(result: RetrainResult) -> tuple[str, str]:
    assert result.status == "error" and result.error is not None, result
    return str(result.error.code), result.error.message


@pytest.mark.parametrize(
    ("fields", "code", "says"),
    [
        ({"recipe": "os:abort"}, "INVALID_INPUT", "recipe 'os:abort' is not one this trainer runs"),
        ({"recipe": "antigravity:x"}, "INVALID_INPUT", "is not one this trainer runs"),
        ({"dataset": Dataset(uri="file:///etc/passwd.csv")}, "INVALID_INPUT", "data roots"),
        ({"dataset": Dataset(uri="escape.csv")}, "INVALID_INPUT", "data roots"),
        ({"promote": "always", "params": {"label_noise": 1.0}}, "UNAUTHORIZED", "always"),
        ({"params": {"split_seed": 7}}, "INVALID_INPUT", "split_seed choose the held-out rows"),
        ({"params": {"test_size": 0.05}}, "INVALID_INPUT", "test_size choose the held-out rows"),
    ],
)
async def test_a_job_asking_for_what_is_not_allowed_is_refused_with_nothing_done(
    registry: Registry,
    data_root: Path,
    tmp_path: Path,
    fields: dict[str, Any],
    code: str,
    says: str,
) -> None:
    (tmp_path / "secret.csv").write_text("api_token,label\nsk-live-1,0\nsk-live-2,1\n")
    (data_root / "escape.csv").symlink_to(tmp_path / "secret.csv")
    modules = set(sys.modules)
    result = await make_trainer(registry, data_root).execute(
        RetrainJob(job_id="j", model="digits", **fields)
    )
    assert error_of(result)[0] == code and says in error_of(result)[1]
    assert set(sys.modules) == modules  # nothing imported
    assert registry.runs.get_run("j") is None  # nothing recorded
    assert registry.models.list_models() == []


async def test_the_operators_grants_let_the_same_jobs_through(
    registry: Registry, data_root: Path
) -> None:
    trainer = make_trainer(
        registry,
        data_root,
        promote_always=True,
        recipes=("tests.unit.recipes.test_recipes:TinyRecipe",),
    )
    tiny = await trainer.execute(
        RetrainJob(job_id="tiny", model="m", recipe="tests.unit.recipes.test_recipes:TinyRecipe")
    )
    assert error_of(tiny) == ("INVALID_INPUT", "tiny recipes do not train")
    first = await trainer.execute(RetrainJob(job_id="a", model="digits", params=WEAK))
    noisy = {**WEAK, "label_noise": 1.0}
    forced = await trainer.execute(
        RetrainJob(job_id="b", model="digits", params=noisy, promote="always")
    )
    assert (first.version, forced.version, forced.promoted) == (1, 2, True)
    assert forced.reason == "promote=always: promoted without the evaluation gate"


async def test_the_gate_keeps_a_worse_model_out_of_production(
    registry: Registry, data_root: Path
) -> None:
    trainer = make_trainer(registry, data_root)
    await trainer.execute(RetrainJob(job_id="good", model="digits", params=GOOD))
    noisy = await trainer.execute(
        RetrainJob(job_id="noisy", model="digits", params={**GOOD, "label_noise": 1.0})
    )
    assert (noisy.status, noisy.promoted) == ("ok", False)
    assert registry.models.resolve("digits").version == 1


def write_digits(path: Path, rows: np.ndarray) -> Path:
    data = load_builtin("digits")
    with path.open("w", newline="") as handle:
        writer = csv.writer(handle)
        writer.writerow([*(f"p{i}" for i in range(64)), "label"])
        writer.writerows([*map(int, data.x[i]), int(data.y[i])] for i in rows)
    return path


async def test_the_gate_measures_production_on_the_candidates_own_held_out_rows(
    registry: Registry, data_root: Path
) -> None:
    """Rows production already gets right make a candidate look better than production's
    recorded accuracy; measured on those same rows, production is perfect."""
    trainer = make_trainer(registry, data_root)
    await trainer.execute(RetrainJob(job_id="weak", model="digits", params={"epochs": 1}))
    production = registry.models.resolve("digits")
    data = load_builtin("digits")
    probabilities = probabilities_of(
        model_file(production.path), data.x.astype(np.float32), data.classes
    )
    easy = write_digits(data_root / "easy.csv", np.flatnonzero(probabilities.argmax(1) == data.y))
    candidate = await trainer.execute(
        RetrainJob(job_id="easy", model="digits", dataset=Dataset(uri=str(easy)), params=GOOD)
    )
    assert candidate.status == "ok", candidate.error
    assert candidate.metrics["accuracy"] > production.metrics["accuracy"]  # the recorded number
    assert not candidate.promoted
    assert "does not beat production 1 on accuracy" in candidate.reason
    assert "vs 1.0000" in candidate.reason  # production, measured on the same rows
    assert registry.models.resolve("digits").version == 1


async def test_a_production_that_does_not_fit_the_data_is_not_replaced_by_the_gate(
    registry: Registry, data_root: Path
) -> None:
    trainer = make_trainer(registry, data_root)
    small = {"epochs": 5, "hidden": 8}
    iris = RetrainJob(job_id="iris", model="flowers", dataset=Dataset(name="iris"), params=small)
    wine = RetrainJob(job_id="wine", model="flowers", dataset=Dataset(name="wine"), params=small)
    assert (await trainer.execute(iris)).promoted
    other = await trainer.execute(wine)
    assert (other.status, other.version, other.promoted) == ("ok", 2, False)
    assert "production 1 could not be measured on the candidate's held-out rows" in other.reason
    assert "was trained for other classes than this dataset's" in other.reason


SECRETS = ("api_token", "sk-live", "hunter2", "password", "Oslo")


@pytest.mark.parametrize(
    ("name", "text"),
    [
        ("label.csv", "api_token,password\nsk-live-1,hunter2\n"),
        ("one.csv", "a,label\n1,sk-live-1\n2,sk-live-1\n"),
        ("text.csv", "a,password,label\n1,hunter2,x\n2,Oslo,y\n"),
        ("gap.csv", "a,password,label\n1,2,x\n3,,y\n"),
        ("keys.jsonl", '{"a": 1, "label": 0}\n{"api_token": "sk-live-1", "label": 1}\n'),
        ("bad.parquet", "sk-live-1 hunter2"),
        ("binary.csv", b"a,label\n\xffsk-live-1,0\n"),
        ("nested.jsonl", '{"a": ' * 100_000 + "1" + "}" * 100_000 + "\n"),
    ],
)
async def test_error_answers_carry_nothing_read_from_the_file(
    registry: Registry, data_root: Path, name: str, text: str | bytes
) -> None:
    path = data_root / name
    if isinstance(text, bytes):
        path.write_bytes(text)
    else:
        path.write_text(text)
    dataset = Dataset(uri=path.as_uri())
    job = RetrainJob(job_id="j", model="m", recipe="tabular", dataset=dataset, params={"epochs": 1})
    code, message = error_of(await make_trainer(registry, data_root).execute(job))
    assert code == "INVALID_INPUT"
    assert not [secret for secret in SECRETS if secret in message], message


@pytest.mark.parametrize(
    "database", ["sqlite", pytest.param("postgres", marks=pytest.mark.postgres)]
)
async def test_the_trainer_survives_every_malformed_or_refused_record(
    kafka: KafkaSettings,
    request: pytest.FixtureRequest,
    data_root: Path,
    tmp_path: Path,
    database: str,
) -> None:
    registry: Registry = request.getfixturevalue(
        "registry" if database == "sqlite" else "pg_registry"
    )
    (tmp_path / "secret.csv").write_text("api_token,label\nsk-live-1,0\nsk-live-2,1\n")
    (data_root / "escape.csv").symlink_to(tmp_path / "secret.csv")
    refused = {
        "long-model": {"model": "m" * 300},
        "abort": {"recipe": "os:abort"},
        "antigravity": {"recipe": "antigravity:x"},
        "outside": {"dataset": {"uri": str(tmp_path / "secret.csv")}},
        "escape": {"dataset": {"uri": str(data_root / "escape.csv")}},
        "always": {"promote": "always", "params": {"label_noise": 1.0}},
    }
    invalid_utf8 = b'{"job_id": "utf8", "model": "digits", "recipe": "\xff"}'  # job_id decodes
    deep = b"[" * 100_000 + b"]" * 100_000
    too_deep = b'{"job_id": "deep", "params": ' + deep + b"}"  # its job_id is salvaged
    undecodable = [b"\x00\xff not json"]
    records = [
        invalid_utf8,
        too_deep,
        *undecodable,
        *(retrain_job(job_id, **fields) for job_id, fields in refused.items()),
        retrain_job("valid", params=WEAK, promote="never"),
    ]
    assert "antigravity" not in sys.modules
    settings = TrainerSettings(allowed=Allowed(data_roots=(data_root,)))
    trainer = Trainer(kafka, registry.models, registry.runs, settings)
    await publish(kafka, kafka.topics.retrain, records, key=b"digits")
    async with running(trainer.run):
        answers = await read(kafka, kafka.topics.results, until=settled(len(refused) + 3))
        dead = await read(kafka, kafka.topics.dlq, until=settled(len(undecodable)))
    results = {body["job_id"]: body for body in (json.loads(r.value) for r in answers)}
    assert len(answers) == len(results) == len(refused) + 3  # each answered exactly once
    assert results["valid"]["status"] == "ok" and results["valid"]["version"] == 1
    invalid = [*refused, "utf8", "deep"]
    codes = {job_id: results[job_id]["error"]["code"] for job_id in invalid}
    assert codes == {**dict.fromkeys(invalid, "INVALID_INPUT"), "always": "UNAUTHORIZED"}
    assert "sk-live" not in json.dumps(results)
    assert sorted(r.value for r in dead) == sorted(undecodable)
    assert "antigravity" not in sys.modules
    assert [v.version for v in registry.models.versions("digits")] == [1]


async def test_a_job_that_fails_unexpectedly_is_answered_and_the_trainer_goes_on(
    kafka: KafkaSettings, registry: Registry, monkeypatch: pytest.MonkeyPatch
) -> None:
    start_run = registry.runs.start_run

    def buggy(job_id: str, *args: Any, **kwargs: Any) -> Any:
        if job_id == "bug":
            raise RuntimeError("a bug in the trainer")
        return start_run(job_id, *args, **kwargs)

    monkeypatch.setattr(registry.runs, "start_run", buggy)
    trainer = Trainer(kafka, registry.models, registry.runs, TrainerSettings())
    await publish(
        kafka, kafka.topics.retrain, [retrain_job("bug"), retrain_job("next", params=WEAK)]
    )
    async with running(trainer.run):
        answers = await read(kafka, kafka.topics.results, until=settled(2))
    results = {body["job_id"]: body for body in (json.loads(r.value) for r in answers)}
    assert results["bug"]["error"]["code"] == "INTERNAL"
    assert "a bug" not in results["bug"]["error"]["message"]  # the log has it, not the sender
    assert (results["next"]["status"], results["next"]["version"]) == ("ok", 1)


def test_a_bare_file_name_is_read_in_the_first_data_root(tmp_path: Path) -> None:
    """``maas retrain --dataset digits.csv`` sends ``{"uri": "digits.csv"}``: the file
    in the first root, as docs/retraining.md says."""
    first, second = tmp_path / "first", tmp_path / "second"
    first.mkdir()
    second.mkdir()
    (first / "digits.csv").write_text("a,label\n1,0\n")
    allowed = Allowed(data_roots=(first, second))

    ref = allowed.dataset(Dataset(uri="digits.csv"))

    assert ref is not None and ref.path == (first / "digits.csv").resolve()


async def test_a_job_whose_deadline_passed_is_answered_expired_and_not_trained(
    registry: Registry, data_root: Path
) -> None:
    """A caller that gave up (``maas retrain`` sets the deadline to its --timeout) does
    not get a version trained hours later by the next trainer."""
    past = RetrainJob(job_id="late", model="digits", deadline_ms=1_000)

    result = await make_trainer(registry, data_root).execute(past)

    assert error_of(result)[0] == "EXPIRED" and "deadline" in error_of(result)[1]
    assert registry.runs.get_run("late") is None
    assert registry.models.list_models() == []


async def test_a_model_without_class_metadata_is_named_as_such_by_the_gate(
    registry: Registry, data_root: Path, tmp_path: Path
) -> None:
    """Issue 27 item 7: a bring-your-own model never promoted, and the reason did not
    say that it lacks ``maas.classes`` nor how to set it."""
    import onnx

    trainer = make_trainer(registry, data_root)
    small = {"epochs": 5, "hidden": 8}
    first = RetrainJob(job_id="own-1", model="flowers", dataset=Dataset(name="iris"), params=small)
    assert (await trainer.execute(first)).promoted
    own = onnx.load(model_file(registry.models.resolve("flowers").path))
    del own.metadata_props[:]  # as a plain torch.onnx.export writes it
    onnx.save(own, tmp_path / "model.onnx")
    registry.models.register("flowers", Draft(tmp_path / "model.onnx", promote=True), actor="ann")

    again = RetrainJob(job_id="own-2", model="flowers", dataset=Dataset(name="iris"), params=small)
    result = await trainer.execute(again)

    assert (result.status, result.promoted) == ("ok", False)
    assert "model.onnx has no maas.classes metadata" in result.reason
    assert "onnx.helper.set_model_props" in result.reason and "docs/models.md" in result.reason
