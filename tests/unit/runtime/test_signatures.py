"""A promotion that would break an alias's clients is refused unless forced, and a
retrained model keeps the names of the model it replaces."""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path

import numpy as np
import onnx
import pytest
import torch
from onnx import TensorProto, helper, numpy_helper

from maas.cli import main
from producer.contract.messages import Dataset, RetrainJob
from producer.kafka import KafkaSettings
from registry import IncompatibleSignature, Registry, Signature, TensorSpec
from registry.drafts import Draft
from registry.signatures import differences
from tests.cli_helpers import one_error_line
from workers.recipes import DatasetRef, TabularRecipe, TrainRequest
from workers.training.allowed import Allowed
from workers.training.trainer import Trainer, TrainerSettings

MakeModel = Callable[..., Path]


def spec(name: str, dtype: str = "float32", *shape: int | str | None) -> TensorSpec:
    return TensorSpec(name, dtype, shape or (None, 4))


def sig(inputs: list[TensorSpec], outputs: list[TensorSpec], text: str | None = None) -> Signature:
    return Signature(tuple(inputs), tuple(outputs), text)


SERVING = sig([spec("features")], [spec("logits", "float32", None, 3)])


@pytest.mark.parametrize(
    ("candidate", "problem"),
    [
        (sig([spec("x")], [spec("logits")]), "it has no input 'features'"),
        (sig([spec("features", "float64")], [spec("logits")]), "is float64, not float32"),
        (sig([spec("features", "float32", None, 5)], [spec("logits")]), "shape [?,5], not [?,4]"),
        (sig([spec("features"), spec("mask")], [spec("logits")]), "it needs input 'mask'"),
        (sig([spec("features")], [spec("probabilities")]), "it has no output 'logits'"),
        (sig([spec("text", "object", None)], [spec("logits")], "text"), "not tensors"),
    ],
)
def test_differences_that_break_clients(candidate: Signature, problem: str) -> None:
    assert any(problem in found for found in differences(SERVING, candidate))


@pytest.mark.parametrize(
    "candidate",
    [
        SERVING,
        sig([spec("features", "float32", "batch", 4)], [spec("logits", "float32", None, 5)]),
        sig([spec("features", "float32", None, None)], [spec("logits"), spec("label", "int64")]),
    ],
)
def test_changes_clients_do_not_notice(candidate: Signature) -> None:
    assert differences(SERVING, candidate) == []


def test_text_models_are_compared_by_their_text_input() -> None:
    serving = sig([spec("input_ids", "int64", None, None)], [spec("embedding")], "text")
    other_tokens = sig([spec("ids", "int64", None, None)], [spec("embedding")], "text")
    assert differences(serving, other_tokens) == []


def write_model(
    path: Path, *, input: str = "x", output: str = "probabilities", features: int = 4
) -> Path:
    """``input`` float32 [batch, features] -> ``output`` float32 [batch, 3]."""
    weights = np.random.default_rng(features).normal(size=(features, 3)).astype(np.float32)
    graph = helper.make_graph(
        [helper.make_node("MatMul", [input, "W"], [output])],
        "tiny",
        [helper.make_tensor_value_info(input, TensorProto.FLOAT, ["batch", features])],
        [helper.make_tensor_value_info(output, TensorProto.FLOAT, ["batch", 3])],
        initializer=[numpy_helper.from_array(weights, name="W")],
    )
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", 17)], ir_version=8)
    path.parent.mkdir(parents=True, exist_ok=True)
    onnx.save(model, str(path))
    return path


@pytest.fixture
def make_model(tmp_path: Path) -> MakeModel:
    counter = iter(range(1000))

    def make(*, input: str = "x", output: str = "probabilities", features: int = 4) -> Path:
        path = tmp_path / f"m{next(counter)}" / "model.onnx"
        return write_model(path, input=input, output=output, features=features)

    return make


def test_promotion_rollback_and_register_refuse_a_breaking_signature(
    registry: Registry, make_model: MakeModel
) -> None:
    models = registry.models
    models.register(
        "m", Draft(make_model(input="features", output="logits"), promote=True), actor="a"
    )
    models.register(
        "m", Draft(make_model()), actor="a"
    )  # x -> probabilities: registered, not served
    with pytest.raises(IncompatibleSignature) as refused:
        models.promote("m", 2, actor="a")
    message = str(refused.value)
    assert "version 2 of 'm' would break the clients of production (version 1)" in message
    assert "features: float32[batch,4] -> logits: float32[batch,3]" in message
    assert "x: float32[batch,4] -> probabilities: float32[batch,3]" in message
    assert "maas models promote m 2 --force" in message
    assert models.resolve("m").version == 1

    with pytest.raises(IncompatibleSignature, match="--promote, or with --force"):
        models.register("m", Draft(make_model(features=5), promote=True), actor="a")
    assert [v.version for v in models.versions("m")] == [1, 2]  # nothing registered

    move = models.promote("m", 2, actor="a", force=True)
    assert move.version == 2 and models.audit("m", limit=1)[0].details["forced"] is True
    with pytest.raises(IncompatibleSignature, match="rollback m --to 1 --force"):
        models.rollback("m", actor="a")
    # An automatic rollback undoes a bad promotion: never refused for its signature.
    assert (
        models.roll_back_automatically(
            "m", alias="production", to=1, actor="policy", reason="bad promotion"
        ).version
        == 1
    )


@pytest.fixture
def maas_models(
    registry: Registry, capsys: pytest.CaptureFixture[str]
) -> Callable[..., tuple[int, str, str]]:
    database = registry.database.engine.url.render_as_string(hide_password=False)
    artifacts = str(registry.models.artifacts.root)

    def run(*argv: str) -> tuple[int, str, str]:
        options = ["--database-url", database, "--artifact-dir", artifacts]
        capsys.readouterr()  # what came before
        code = main(["models", *argv, *options])
        out, err = capsys.readouterr()
        return code, out, err

    return run


def test_cli_promote_shows_both_signatures_and_force_promotes(
    registry: Registry,
    make_model: MakeModel,
    maas_models: Callable[..., tuple[int, str, str]],
    monkeypatch: pytest.MonkeyPatch,
    kafka: KafkaSettings,
) -> None:
    monkeypatch.setenv("MAAS_BOOTSTRAP_SERVERS", kafka.bootstrap_servers)
    monkeypatch.setenv("MAAS_TOPIC_PREFIX", kafka.topics.prefix)
    monkeypatch.setenv("MAAS_EMBEDDED_BROKER", "1")
    registry.models.register("m", Draft(make_model(input="features"), promote=True), actor="a")
    registry.models.register("m", Draft(make_model()), actor="a")
    code, out, err = maas_models("promote", "m", "2")
    assert (code, out) == (1, "")
    one_error_line(err, "it has no input 'features'", "features: float32", "x: float32", "--force")
    code, out, _ = maas_models("promote", "m", "2", "--force")
    assert code == 0 and "production: 1 -> 2" in out


IRIS_FEATURES = 4


@pytest.fixture
def one_thread() -> None:
    torch.set_num_threads(1)


def test_a_recipe_keeps_the_names_of_the_model_it_retrains(
    tmp_path: Path, one_thread: None
) -> None:
    replaces = sig([spec("features")], [spec("logits", "float32", None, 3)])
    request = TrainRequest(
        model="iris", dataset=DatasetRef(name="iris"), params={"epochs": 2}, replaces=replaces
    )
    trained = TabularRecipe().train(request, tmp_path)
    assert [t.name for t in trained.signature.inputs] == ["features"]
    assert [t.name for t in trained.signature.outputs] == ["logits", "label"]
    assert differences(replaces, trained.signature) == []


async def test_retraining_a_users_model_keeps_its_clients_working(
    registry: Registry, make_model: MakeModel, one_thread: None
) -> None:
    """The issue's case: a user's ``features -> logits`` model retrained by the tabular
    recipe with ``promote=always`` used to go live as ``x -> probabilities, label``."""
    users = make_model(input="features", output="logits", features=IRIS_FEATURES)
    registry.models.register("flowers", Draft(users, promote=True), actor="user")
    # The operator grants promote always here: what is tested is that even a skipped
    # gate cannot put clients' names out of service.
    settings = TrainerSettings(allowed=Allowed(promote_always=True))
    trainer = Trainer(KafkaSettings(), registry.models, registry.runs, settings)

    def retrain(job_id: str, dataset: str) -> RetrainJob:
        return RetrainJob(
            job_id=job_id,
            model="flowers",
            recipe="tabular",
            dataset=Dataset(name=dataset),
            params={"epochs": 2},
            promote="always",
        )

    same = await trainer.execute(retrain("r1", "iris"))
    assert (same.status, same.version, same.promoted) == ("ok", 2, True)
    served = registry.models.resolve("flowers").signature
    assert served.inputs[0].name == "features" and "logits" in [t.name for t in served.outputs]

    wider = await trainer.execute(retrain("r2", "wine"))  # 13 features: clients send 4
    assert (wider.status, wider.version, wider.promoted) == ("ok", 3, False)
    assert "would break the clients of production (version 2)" in wider.reason
    assert "features: float32[?,13]" in wider.reason and "kept, not promoted" in wider.reason
    assert registry.models.resolve("flowers").version == 2
