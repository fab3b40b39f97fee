"""The demo digits model and its held-out sample rows."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import numpy as np
import onnxruntime as ort
import pytest

from workers.recipes import TrainedModel
from workers.recipes.demo import build_digits_model, demo_held_out_rows, digits_samples


@pytest.fixture(scope="module")
def demo(tmp_path_factory: pytest.TempPathFactory) -> TrainedModel:
    return build_digits_model(tmp_path_factory.mktemp("demo"))


def test_demo_model_reaches_095_held_out_accuracy(demo: TrainedModel) -> None:
    assert demo.metrics["accuracy"] >= 0.95
    assert demo.metrics["n_test"] == len(demo_held_out_rows()) == 450
    assert demo.artifact.name == "model.onnx" and demo.artifact.is_file()


def test_demo_onnx_scores_held_out_samples_honestly(demo: TrainedModel) -> None:
    x, y = digits_samples(450)
    session = ort.InferenceSession(str(demo.artifact), providers=["CPUExecutionProvider"])
    probabilities, label = session.run(None, {"x": x})
    assert probabilities.shape == (450, 10)
    assert float(np.mean(label == y)) == pytest.approx(demo.metrics["accuracy"])


def test_samples_are_raw_held_out_pixels() -> None:
    from sklearn.datasets import load_digits

    x, y = digits_samples(20, seed=3)
    assert x.dtype == np.float32 and x.shape == (20, 64)
    assert y.dtype == np.int64 and y.shape == (20,)
    assert x.min() >= 0.0 and x.max() <= 16.0
    digits = load_digits()
    held_out = digits.data[demo_held_out_rows()].astype(np.float32)
    for row, target in zip(x, y, strict=True):
        matches = np.flatnonzero((held_out == row).all(axis=1))
        assert matches.size >= 1
        assert target in digits.target[demo_held_out_rows()[matches]]


def test_samples_are_seeded_and_repeat_past_the_held_out_set() -> None:
    a, _ = digits_samples(10, seed=1)
    b, _ = digits_samples(10, seed=1)
    c, _ = digits_samples(10, seed=2)
    assert np.array_equal(a, b) and not np.array_equal(a, c)
    many, labels = digits_samples(1000)
    assert many.shape == (1000, 64) and labels.shape == (1000,)
    assert digits_samples(0)[0].shape == (0, 64)
    with pytest.raises(ValueError, match="n must be"):
        digits_samples(-1)


def test_build_is_reproducible_per_seed(demo: TrainedModel, tmp_path: Path) -> None:
    again = build_digits_model(tmp_path, seed=0)
    assert again.metrics == pytest.approx(demo.metrics)
    assert again.dataset_hash == demo.dataset_hash


def test_demo_is_built_without_torch(tmp_path: Path) -> None:
    """`maas up` needs only the worker extra: the demo model trains and exports with numpy
    and onnx, and importing torch would fail here, as it does without the train extra."""
    code = (
        "import sys, importlib.abc\n"
        "class NoTorch(importlib.abc.MetaPathFinder):\n"
        "    def find_spec(self, name, path, target=None):\n"
        "        if name.partition('.')[0] == 'torch':\n"
        "            raise ModuleNotFoundError(name, name=name)\n"
        "sys.meta_path.insert(0, NoTorch())\n"
        "from pathlib import Path\n"
        "from workers.recipes.demo import build_digits_model\n"
        f"model = build_digits_model(Path({str(tmp_path)!r}), epochs=2)\n"
        "print(model.recipe, model.signature.inputs[0].name)\n"
    )
    done = subprocess.run(
        [sys.executable, "-c", code], capture_output=True, text=True, timeout=60, check=False
    )
    assert done.returncode == 0, done.stderr
    assert done.stdout.split() == ["digits", "x"]


def test_demo_model_has_the_digits_recipes_metadata(demo: TrainedModel) -> None:
    """So the trainer's digits recipe can measure and retrain it."""
    meta = ort.InferenceSession(str(demo.artifact)).get_modelmeta().custom_metadata_map
    assert meta["maas.recipe"] == "digits"
    assert meta["maas.classes"] == '["0", "1", "2", "3", "4", "5", "6", "7", "8", "9"]'
    assert [o.name for o in demo.signature.outputs] == ["probabilities", "label"]


def test_a_recipe_without_torch_says_which_extra(tmp_path: Path) -> None:
    """A trainer without the train extra answers the job in one line, not a traceback."""
    code = (
        "import sys, importlib.abc\n"
        "class NoTorch(importlib.abc.MetaPathFinder):\n"
        "    def find_spec(self, name, path, target=None):\n"
        "        if name.partition('.')[0] == 'torch':\n"
        "            raise ModuleNotFoundError(name, name=name)\n"
        "sys.meta_path.insert(0, NoTorch())\n"
        "from pathlib import Path\n"
        "from workers.recipes import DatasetRef, DigitsRecipe, RecipeError, TrainRequest\n"
        "request = TrainRequest(model='digits', dataset=DatasetRef(name='digits'))\n"
        "try:\n"
        f"    DigitsRecipe().train(request, Path({str(tmp_path)!r}))\n"
        "except RecipeError as exc:\n"
        "    print(exc)\n"
    )
    done = subprocess.run(
        [sys.executable, "-c", code], capture_output=True, text=True, timeout=60, check=False
    )
    assert done.returncode == 0, done.stderr
    assert done.stdout.strip().endswith("pip install 'maas[train]' where the trainer runs")
