"""Small models built in code for the optimisation tests, and fast measurement settings."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import onnx
import torch
from onnx import TensorProto, helper, numpy_helper
from tokenizers import Tokenizer, models, pre_tokenizers

from workers.optimize import MeasureSettings, OptimizeSettings

FEATURES = 16
CLASSES = 4
WORDS = ["[PAD]", "[UNK]", "the", "cat", "sat", "on", "a", "mat", "dog", "ran", "far"]

# Timing figures are not what these tests check: measure for milliseconds.
FAST = OptimizeSettings(
    measure=MeasureSettings(batch_sizes=(1, 16), sweep_s=0.01, measure_s=0.02, rounds=1)
)


def _save(graph: onnx.GraphProto, path: Path) -> Path:
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", 17)], ir_version=8)
    onnx.checker.check_model(model)
    path.parent.mkdir(parents=True, exist_ok=True)
    onnx.save(model, str(path))
    return path


def build_classifier(path: Path, seed: int = 0) -> Path:
    """x float32 [N, 16] -> MatMul, Relu, MatMul -> probabilities [N, 4], label int64 [N]."""
    rng = np.random.default_rng(seed)
    w1 = rng.normal(size=(FEATURES, 32)).astype(np.float32)
    w2 = rng.normal(size=(32, CLASSES)).astype(np.float32)
    graph = helper.make_graph(
        [
            helper.make_node("MatMul", ["x", "w1"], ["h"]),
            helper.make_node("Relu", ["h"], ["a"]),
            helper.make_node("MatMul", ["a", "w2"], ["logits"]),
            helper.make_node("Softmax", ["logits"], ["probabilities"], axis=-1),
            helper.make_node("ArgMax", ["logits"], ["label"], axis=1, keepdims=0),
        ],
        "classifier",
        [helper.make_tensor_value_info("x", TensorProto.FLOAT, ["batch", FEATURES])],
        [
            helper.make_tensor_value_info("probabilities", TensorProto.FLOAT, ["batch", CLASSES]),
            helper.make_tensor_value_info("label", TensorProto.INT64, ["batch"]),
        ],
        initializer=[numpy_helper.from_array(w1, "w1"), numpy_helper.from_array(w2, "w2")],
    )
    return _save(graph, path)


def build_weightless(path: Path) -> Path:
    """x -> Relu -> Softmax: nothing for int8 to act on."""
    graph = helper.make_graph(
        [
            helper.make_node("Relu", ["x"], ["a"]),
            helper.make_node("Softmax", ["a"], ["probabilities"], axis=-1),
        ],
        "weightless",
        [helper.make_tensor_value_info("x", TensorProto.FLOAT, ["batch", FEATURES])],
        [helper.make_tensor_value_info("probabilities", TensorProto.FLOAT, ["batch", FEATURES])],
    )
    return _save(graph, path)


def build_text_model(directory: Path, seed: int = 0) -> Path:
    """A text-model directory: tokenizer.json and model.onnx, input_ids and
    attention_mask -> embedding [N, 8] (embedding lookup, MatMul, mean over tokens)."""
    vocab = {word: index for index, word in enumerate(WORDS)}
    tokenizer = Tokenizer(models.WordLevel(vocab, unk_token="[UNK]"))
    tokenizer.pre_tokenizer = pre_tokenizers.Whitespace()
    directory.mkdir(parents=True, exist_ok=True)
    tokenizer.save(str(directory / "tokenizer.json"))
    rng = np.random.default_rng(seed)
    table = rng.normal(size=(len(WORDS), 8)).astype(np.float32)
    weights = rng.normal(size=(8, 8)).astype(np.float32)
    seq = ["batch", "sequence"]
    graph = helper.make_graph(
        [
            helper.make_node("Gather", ["table", "input_ids"], ["vectors"]),
            helper.make_node("MatMul", ["vectors", "w"], ["projected"]),
            helper.make_node("ReduceMean", ["projected"], ["embedding"], axes=[1], keepdims=0),
        ],
        "text",
        [
            helper.make_tensor_value_info("input_ids", TensorProto.INT64, seq),
            helper.make_tensor_value_info("attention_mask", TensorProto.INT64, seq),
        ],
        [helper.make_tensor_value_info("embedding", TensorProto.FLOAT, ["batch", 8])],
        initializer=[
            numpy_helper.from_array(table, "table"),
            numpy_helper.from_array(weights, "w"),
        ],
    )
    _save(graph, directory / "model.onnx")
    return directory


class _Double(torch.nn.Module):
    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return x * 2


def build_torchscript(directory: Path) -> Path:
    directory.mkdir(parents=True, exist_ok=True)
    torch.jit.script(_Double()).save(str(directory / "model.pt"))
    signature = {
        "inputs": [{"name": "x", "dtype": "float32", "shape": [None, FEATURES]}],
        "outputs": [{"name": "y", "dtype": "float32", "shape": [None, FEATURES]}],
    }
    (directory / "signature.json").write_text(json.dumps(signature))
    return directory


def write_rows(path: Path, x: np.ndarray, labels: np.ndarray | None = None) -> Path:
    """CSV of feature columns f0..f15 and, when given, a label column."""
    header = [f"f{i}" for i in range(x.shape[1])] + (["label"] if labels is not None else [])
    lines = [",".join(header)]
    for i, row in enumerate(x):
        cells = [f"{v:.6f}" for v in row] + ([str(int(labels[i]))] if labels is not None else [])
        lines.append(",".join(cells))
    path.write_text("\n".join(lines) + "\n")
    return path


def features(n: int = 200) -> np.ndarray:
    """Seeded random rows for the classifier."""
    return np.random.default_rng(1).normal(size=(n, FEATURES)).astype(np.float32)
