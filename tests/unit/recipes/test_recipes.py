"""Training recipes: digits and tabular training, ONNX parity, params, data, lookup."""

from __future__ import annotations

import csv
import hashlib
import json
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import numpy as np
import onnx
import onnxruntime as ort
import pytest
import torch
from sklearn.datasets import load_digits

from registry.entities import Signature, TensorSpec
from workers.recipes import (
    DatasetError,
    DatasetRef,
    DigitsRecipe,
    ParamsError,
    ParityError,
    Recipe,
    RecipeError,
    RecipeNotFoundError,
    TabularRecipe,
    TrainedModel,
    TrainRequest,
    get_recipe,
)
from workers.recipes.export import check_parity, export_onnx
from workers.recipes.network import Classifier
from workers.training.gate import GatePolicy, decide

SMALL = {"epochs": 10}


@pytest.fixture(autouse=True, scope="module")
def one_torch_thread() -> Iterator[None]:
    """Tiny MLPs train faster on one thread than on two contended ones; restored after."""
    before = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(before)


def train(recipe: Recipe, tmp_path: Path, **request: Any) -> TrainedModel:
    return recipe.train(TrainRequest(model="m", **request), tmp_path)


def session(model: TrainedModel) -> ort.InferenceSession:
    return ort.InferenceSession(str(model.artifact), providers=["CPUExecutionProvider"])


@pytest.fixture(scope="module")
def digits(tmp_path_factory: pytest.TempPathFactory) -> TrainedModel:
    return train(DigitsRecipe(), tmp_path_factory.mktemp("digits"), params=SMALL)


# --- digits -------------------------------------------------------------------------


def test_digits_trains_to_090_with_a_small_budget(digits: TrainedModel) -> None:
    assert digits.recipe == "digits"
    assert digits.metrics["accuracy"] >= 0.9
    for name in ("precision_macro", "recall_macro", "f1_macro", "f1", "log_loss"):
        assert digits.metrics[name] >= 0.0
    assert digits.metrics["n_train"] + digits.metrics["n_test"] == 1797
    assert len(digits.dataset_hash) == 64
    assert digits.duration_s > 0


def test_digits_reports_effective_params_with_defaults(digits: TrainedModel) -> None:
    assert digits.params["epochs"] == 10
    assert digits.params["test_size"] == 0.25
    assert digits.params["seed"] == 0
    assert digits.params["max_rows"] is None


def test_digits_onnx_parity_and_signature(digits: TrainedModel) -> None:
    assert digits.parity_max_abs_diff <= 1e-4
    assert digits.signature == Signature(
        inputs=(TensorSpec("x", "float32", (None, 64)),),
        outputs=(
            TensorSpec("probabilities", "float32", (None, 10)),
            TensorSpec("label", "int64", (None,)),
        ),
    )
    props = {p.key: p.value for p in onnx.load(str(digits.artifact)).metadata_props}
    assert props["maas.classes"] == '["0", "1", "2", "3", "4", "5", "6", "7", "8", "9"]'
    assert digits.classes == tuple(str(d) for d in range(10))


def test_a_trained_version_carries_the_reference_profile_of_its_training_split(
    digits: TrainedModel,
) -> None:
    from workers.drift import CategoricalProfile, ReferenceProfile

    assert digits.reference is not None and digits.reference.source == "training split"
    profile = ReferenceProfile.decode(digits.reference.profile)
    assert profile.rows == digits.reference.rows == int(digits.metrics["n_train"])
    assert set(profile.inputs) == {f"x[{i}]" for i in range(64)}
    assert set(profile.outputs) == {"probabilities.class", "probabilities.confidence", "label"}
    assert isinstance(profile.outputs["label"], CategoricalProfile)
    assert abs(sum(profile.outputs["label"].frequencies.values()) - 1.0) < 1e-9


def test_digits_onnx_takes_raw_pixel_rows(digits: TrainedModel) -> None:
    data = load_digits()
    x = data.data.astype(np.float32)  # raw 0..16 pixels, no client-side scaling
    probabilities, label = session(digits).run(None, {"x": x})
    assert probabilities.dtype == np.float32 and probabilities.shape == (1797, 10)
    assert label.dtype == np.int64 and label.shape == (1797,)
    np.testing.assert_allclose(probabilities.sum(axis=1), 1.0, atol=1e-5)
    assert float(np.mean(label == data.target)) >= 0.9
    one_row = session(digits).run(["label"], {"x": x[:1]})[0]
    assert one_row.shape == (1,)


def test_worse_data_gives_clearly_lower_accuracy_and_fails_the_gate(
    digits: TrainedModel, tmp_path: Path
) -> None:
    worse = train(DigitsRecipe(), tmp_path, params={**SMALL, "label_noise": 0.8})
    assert worse.metrics["accuracy"] < digits.metrics["accuracy"] - 0.2
    assert worse.metrics["n_test"] == digits.metrics["n_test"]  # same held-out rows
    decision = decide("gate", worse.metrics, digits.metrics, 1, GatePolicy(), candidate_version=2)
    assert not decision.promote
    assert "does not beat production 1 on accuracy" in decision.reason


def test_max_rows_trains_on_fewer_rows(tmp_path: Path) -> None:
    small = train(DigitsRecipe(), tmp_path, params={**SMALL, "max_rows": 60})
    assert small.metrics["n_train"] == 60
    assert small.metrics["n_test"] == 450


def test_training_is_reproducible_per_seed(digits: TrainedModel, tmp_path: Path) -> None:
    again = train(DigitsRecipe(), tmp_path / "a", params=SMALL, seed=0)
    assert again.metrics == pytest.approx(digits.metrics)
    seeded = train(DigitsRecipe(), tmp_path / "b", params={**SMALL, "seed": 7})
    assert seeded.params["seed"] == 7


def test_progress_is_reported_up_to_done(tmp_path: Path) -> None:
    seen: list[tuple[str, float]] = []
    request = TrainRequest(model="digits", params={"epochs": 2})
    DigitsRecipe().train(request, tmp_path, progress=lambda s, f: seen.append((s, f)))
    fractions = [f for _, f in seen]
    assert fractions == sorted(fractions)
    assert seen[0] == ("load", 0.0) and seen[-1] == ("done", 1.0)
    assert sum(stage == "train" for stage, _ in seen) == 2


def test_digits_accepts_a_pixel_file(tmp_path: Path) -> None:
    data = load_digits()
    path = tmp_path / "digits.csv"
    with path.open("w", newline="") as handle:
        writer = csv.writer(handle)
        writer.writerow([*(f"p{i}" for i in range(64)), "digit"])
        writer.writerows(
            [*map(int, row), int(t)] for row, t in zip(data.data, data.target, strict=True)
        )
    model = train(
        DigitsRecipe(),
        tmp_path / "out",
        dataset=DatasetRef(uri=path.as_uri()),
        params={**SMALL, "label": "digit"},
    )
    assert model.metrics["accuracy"] >= 0.9
    assert model.dataset_hash != ""


def test_digits_refuses_a_file_without_64_pixels(tmp_path: Path) -> None:
    path = tmp_path / "bad.csv"
    path.write_text("a,b,label\n1,2,0\n3,4,1\n")
    with pytest.raises(DatasetError, match="64 pixel columns"):
        train(DigitsRecipe(), tmp_path, dataset=DatasetRef(uri=str(path)))


def test_parity_failure_raises(tmp_path: Path) -> None:
    net = Classifier(np.zeros(4), np.ones(4), 8, 3, torch.Generator().manual_seed(0))
    path = tmp_path / "m.onnx"
    export_onnx(net, 4, path, {})
    x = np.random.default_rng(0).normal(size=(16, 4)).astype(np.float32)
    assert check_parity(net, path, x) <= 1e-4
    with torch.no_grad():
        net.out.bias += torch.tensor([5.0, 0.0, 0.0])  # the torch model drifts from its export
    with pytest.raises(ParityError, match="differs from the torch model"):
        check_parity(net, path, x)


# --- params -------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("params", "message"),
    [
        (
            {"epoch": 3},
            r"unknown param\(s\) for recipe 'digits': epoch; allowed: batch_size, epochs",
        ),
        ({"epochs": "5"}, r"param 'epochs' must be an integer, got '5' \(str\)"),
        ({"epochs": 2.5}, r"param 'epochs' must be an integer"),
        ({"epochs": True}, r"param 'epochs' must be an integer"),
        ({"epochs": 0}, r"param 'epochs' must be between 1 and 10000, got 0"),
        ({"lr": None}, r"param 'lr' must not be null"),
        ({"lr": float("nan")}, r"param 'lr' must be a number"),
        ({"test_size": 1.5}, r"param 'test_size' must be between 0.05 and 0.9"),
        ({"label": 3}, r"param 'label' must be a string"),
    ],
)
def test_bad_params_are_refused_with_what_to_fix(
    params: dict[str, Any], message: str, tmp_path: Path
) -> None:
    with pytest.raises(ParamsError, match=message):
        train(DigitsRecipe(), tmp_path, params=params)


def test_params_errors_are_recipe_errors_and_not_retriable() -> None:
    error = ParamsError("x")
    assert isinstance(error, RecipeError) and not error.retriable


def test_integral_float_is_accepted_for_an_int_param(tmp_path: Path) -> None:
    model = train(DigitsRecipe(), tmp_path, params={"epochs": 1.0, "max_rows": 40})
    assert model.params["epochs"] == 1 and isinstance(model.params["epochs"], int)


def test_dataset_ref_needs_exactly_one_of_uri_or_name() -> None:
    with pytest.raises(DatasetError, match="exactly one"):
        DatasetRef()
    with pytest.raises(DatasetError, match="exactly one"):
        DatasetRef(uri="a.csv", name="digits")


# --- lookup -------------------------------------------------------------------------


class TinyRecipe:
    """A user recipe: anything with name, metric and train() will do."""

    name = "tiny"
    metric = "accuracy"

    def train(self, request: TrainRequest, workdir: Path, progress: Any = None) -> TrainedModel:
        raise RecipeError("tiny recipes do not train")


TINY = TinyRecipe()


def make_tiny() -> TinyRecipe:
    return TinyRecipe()


def test_builtin_recipes_are_found_by_name() -> None:
    assert isinstance(get_recipe("digits"), DigitsRecipe)
    tabular = get_recipe("tabular")
    assert tabular.name == "tabular" and tabular.metric == "accuracy"
    assert isinstance(tabular, Recipe)


@pytest.mark.parametrize(
    "path",
    [
        "tests.unit.recipes.test_recipes:TinyRecipe",
        "tests.unit.recipes.test_recipes:TINY",
        "tests.unit.recipes.test_recipes:make_tiny",
    ],
)
def test_user_recipe_by_import_path(path: str) -> None:
    recipe = get_recipe(path)
    assert isinstance(recipe, TinyRecipe) and recipe.name == "tiny"


def test_user_recipe_from_a_module_on_the_path(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    package = tmp_path / "myrecipes"
    package.mkdir()
    (package / "__init__.py").write_text("")
    (package / "churn.py").write_text(
        "class Churn:\n"
        "    name = 'churn'\n"
        "    metric = 'f1_macro'\n"
        "    def train(self, request, workdir, progress=None):\n"
        "        raise NotImplementedError\n"
    )
    monkeypatch.syspath_prepend(str(tmp_path))
    recipe = get_recipe("myrecipes.churn:Churn")
    assert recipe.name == "churn" and recipe.metric == "f1_macro"
    (package / "broken.py").write_text("raise RuntimeError('no config')\n")
    with pytest.raises(RecipeNotFoundError, match=r"importing module 'myrecipes\.broken' failed"):
        get_recipe("myrecipes.broken:Recipe")


@pytest.mark.parametrize(
    ("name", "message"),
    [
        (
            "nope",
            r"no recipe 'nope': built-in recipes are digits, tabular; .*'package.module:attr'",
        ),
        ("no_such_module_x:R", r"cannot import module 'no_such_module_x'"),
        (
            "tests.unit.recipes.test_recipes:Missing",
            r"'tests.unit.recipes.test_recipes' has no attribute 'Missing'",
        ),
        (
            "tests.unit.recipes.test_recipes:SMALL",
            r"is not a recipe: it needs string attributes `name`",
        ),
        ("tests.unit.recipes.test_recipes:train", r"calling it with no arguments failed"),
        (":Recipe", r"must look like 'package.module:attr'"),
    ],
)
def test_unknown_recipes_say_what_was_tried(name: str, message: str) -> None:
    with pytest.raises(RecipeNotFoundError, match=message):
        get_recipe(name)


# --- tabular ------------------------------------------------------------------------

CLASS_NAMES = np.array(["bronze", "gold", "silver"])


def make_table(rows: int = 300) -> dict[str, list[Any]]:
    from sklearn.datasets import make_classification

    x, y = make_classification(
        n_samples=rows, n_features=5, n_informative=3, n_classes=3, random_state=0
    )
    table: dict[str, list[Any]] = {f"f{i}": (x[:, i] * 10 + 50).tolist() for i in range(5)}
    table["tier"] = CLASS_NAMES[y].tolist()
    return table


def write_csv(path: Path, table: dict[str, list[Any]]) -> Path:
    with path.open("w", newline="") as handle:
        writer = csv.writer(handle)
        writer.writerow(table)
        writer.writerows(zip(*table.values(), strict=True))
    return path


def write_jsonl(path: Path, table: dict[str, list[Any]]) -> Path:
    rows = [dict(zip(table, values, strict=True)) for values in zip(*table.values(), strict=True)]
    path.write_text("".join(json.dumps(row) + "\n" for row in rows))
    return path


def write_parquet(path: Path, table: dict[str, list[Any]]) -> Path:
    import pyarrow as pa
    import pyarrow.parquet as pq

    pq.write_table(pa.table(table), path)
    return path


WRITERS: dict[str, Callable[[Path, dict[str, list[Any]]], Path]] = {
    "csv": write_csv,
    "jsonl": write_jsonl,
    "parquet": write_parquet,
}


def train_tabular(tmp_path: Path, uri: str, **params: Any) -> TrainedModel:
    request = TrainRequest(
        model="tiers", dataset=DatasetRef(uri=uri), params={"epochs": 20, "label": "tier", **params}
    )
    return TabularRecipe().train(request, tmp_path / "out")


@pytest.mark.parametrize("fmt", ["csv", "jsonl", "parquet"])
def test_tabular_trains_from_each_format_with_string_labels(fmt: str, tmp_path: Path) -> None:
    path = WRITERS[fmt](tmp_path / f"tiers.{fmt}", make_table())
    model = train_tabular(tmp_path, path.as_uri() if fmt == "csv" else str(path))
    assert model.recipe == "tabular"
    assert model.classes == ("bronze", "gold", "silver")
    assert model.metrics["accuracy"] >= 0.7
    assert model.parity_max_abs_diff <= 1e-4
    assert [t.name for t in model.signature.inputs] == ["x"]
    assert model.signature.inputs[0].shape == (None, 5)
    probabilities, label = session(model).run(None, {"x": np.full((2, 5), 50.0, np.float32)})
    assert probabilities.shape == (2, 3) and label.dtype == np.int64
    assert set(label.tolist()) <= {0, 1, 2}


def test_tabular_formats_hash_their_own_bytes(tmp_path: Path) -> None:
    table = make_table(60)
    a = write_csv(tmp_path / "a.csv", table)
    b = write_csv(tmp_path / "b.csv", {**table, "f0": [v + 1 for v in table["f0"]]})
    hash_a = train_tabular(tmp_path / "a", str(a), epochs=1).dataset_hash
    hash_b = train_tabular(tmp_path / "b", str(b), epochs=1).dataset_hash
    assert hash_a == hashlib.sha256(a.read_bytes()).hexdigest() != hash_b


def test_tabular_standardises_inside_the_graph(tmp_path: Path) -> None:
    table = make_table()
    table["f0"] = [v * 1000 for v in table["f0"]]  # wildly different feature scales
    model = train_tabular(tmp_path, str(write_csv(tmp_path / "t.csv", table)))
    assert model.metrics["accuracy"] >= 0.7


def test_integer_labels_keep_numeric_order(tmp_path: Path) -> None:
    table = make_table()
    table["tier"] = [{"bronze": 10, "gold": 2, "silver": 7}[t] for t in table["tier"]]
    model = train_tabular(tmp_path, str(write_jsonl(tmp_path / "t.jsonl", table)), epochs=2)
    assert model.classes == ("2", "7", "10")


def test_tabular_on_a_builtin_dataset(tmp_path: Path) -> None:
    request = TrainRequest(model="iris", dataset=DatasetRef(name="iris"), params={"epochs": 30})
    model = TabularRecipe().train(request, tmp_path)
    assert model.classes == ("setosa", "versicolor", "virginica")
    assert model.metrics["accuracy"] >= 0.8


def bad_file(name: str, text: str) -> Callable[[Path], str]:
    def make(tmp_path: Path) -> str:
        path = tmp_path / name
        path.write_text(text)
        return str(path)

    return make


@pytest.mark.parametrize(
    ("make", "message"),
    [
        (lambda p: str(p / "missing.csv"), r"missing.csv' does not exist"),
        (bad_file("empty.csv", ""), r"empty.csv' is empty"),
        (bad_file("blank.jsonl", "\n  \n"), r"blank.jsonl' is empty"),
        (bad_file("header.csv", "a,b,tier\n"), r"has a header but no rows"),
        (
            bad_file("nolabel.csv", "a,b,y\n1,2,x\n"),
            r"no label column 'tier'; its columns are a, b, y",
        ),
        (bad_file("one.csv", "a,tier\n1,x\n2,x\n"), r"label column 'tier' has a single class 'x'"),
        (
            bad_file("text.csv", "a,city,tier\n1,Oslo,x\n2,Rome,y\n"),
            r"feature column\(s\) city are not numeric",
        ),
        (
            bad_file("gap.csv", "a,b,tier\n1,2,x\n3,,y\n"),
            r"column 'b' has a missing or non-finite value \(first at data row 2\)",
        ),
        (bad_file("nolab.csv", "a,tier\n1,x\n2,\n"), r"label column 'tier' has missing values"),
        (
            bad_file("ragged.csv", "a,b,tier\n1,2,x\n3,y\n"),
            r"ragged.csv line 3 has 2 fields, the header has 3",
        ),
        (bad_file("only.csv", "tier\nx\ny\n"), r"no feature columns besides the label 'tier'"),
        (
            bad_file("bad.jsonl", '{"a": 1, "tier": "x"}\n{"a": 2,\n'),
            r"bad.jsonl line 2 is not valid JSON",
        ),
        (bad_file("list.jsonl", "[1, 2]\n"), r"list.jsonl line 1 must be a JSON object, got list"),
        (
            bad_file("keys.jsonl", '{"a": 1, "tier": "x"}\n{"b": 2, "tier": "y"}\n'),
            r"keys.jsonl record 2 has keys \['b', 'tier'\]",
        ),
        (bad_file("bad.parquet", "not parquet"), r"cannot read Parquet file bad.parquet"),
        (bad_file("data.xlsx", "x"), r"cannot tell the format of .*data.xlsx.*use one of .csv"),
        (lambda p: "s3://bucket/data.csv", r"scheme 's3' is not supported"),
        (lambda p: "file://host/data.csv", r"names host 'host'; use file:///path"),
        (
            bad_file("few.csv", "a,tier\n1,x\n2,y\n3,y\n"),
            r"cannot make a stratified held-out split of 3 rows",
        ),
    ],
)
def test_bad_datasets_give_clear_errors(
    make: Callable[[Path], str], message: str, tmp_path: Path
) -> None:
    with pytest.raises(DatasetError, match=message):
        train_tabular(tmp_path, make(tmp_path))


def test_tabular_needs_a_dataset(tmp_path: Path) -> None:
    with pytest.raises(DatasetError, match="recipe 'tabular' needs a dataset"):
        TabularRecipe().train(TrainRequest(model="m"), tmp_path)


def test_unknown_builtin_dataset(tmp_path: Path) -> None:
    request = TrainRequest(model="m", dataset=DatasetRef(name="mnist"))
    with pytest.raises(
        DatasetError, match="no built-in dataset 'mnist'; built-ins are breast_cancer"
    ):
        TabularRecipe().train(request, tmp_path)
