"""Runtimes on small models built in code: ONNX via onnx.helper, TorchScript via torch.jit."""

from __future__ import annotations

import asyncio
from pathlib import Path
from typing import Any

import numpy as np
import onnx
import pytest
import structlog
import torch
from onnx import TensorProto, helper, numpy_helper

from registry.entities import Signature, TensorSpec
from workers.batching.batcher import BatchConfig, DynamicBatcher
from workers.errors import InvalidInput, RuntimeLoadError
from workers.runtime.loader import (
    OnnxRuntime,
    RuntimeSettings,
    TorchRuntime,
    load_runtime,
    onnx_signature,
)

FEATURES, CLASSES = 64, 10
RNG = np.random.default_rng(7)
WEIGHTS = RNG.normal(size=(FEATURES, CLASSES)).astype(np.float32)
BIAS = RNG.normal(size=CLASSES).astype(np.float32)

# On a GPU the CUDA providers run float32 matrix products in TF32 unless told not to.
CPU_TOLERANCE = {"rtol": 1e-5, "atol": 1e-6}
GPU_TOLERANCE = {"rtol": 1e-2, "atol": 2e-3}


def tolerance(provider: str) -> dict[str, float]:
    return CPU_TOLERANCE if provider in ("CPUExecutionProvider", "torch:cpu") else GPU_TOLERANCE


def ort_has_cuda() -> bool:
    import onnxruntime as ort

    return "CUDAExecutionProvider" in ort.get_available_providers()


DIGITS = Signature(
    inputs=(TensorSpec("x", "float32", (None, FEATURES)),),
    outputs=(
        TensorSpec("probabilities", "float32", (None, CLASSES)),
        TensorSpec("label", "int64", (None,)),
    ),
)


def softmax(logits: np.ndarray) -> np.ndarray:
    shifted = np.exp(logits - logits.max(axis=1, keepdims=True))
    return shifted / shifted.sum(axis=1, keepdims=True)


def build_digits_onnx(path: Path) -> Path:
    """A digits-like classifier: probabilities = softmax(x @ W + b), label = argmax."""
    graph = helper.make_graph(
        [
            helper.make_node("MatMul", ["x", "W"], ["xw"]),
            helper.make_node("Add", ["xw", "b"], ["logits"]),
            helper.make_node("Softmax", ["logits"], ["probabilities"], axis=1),
            helper.make_node("ArgMax", ["logits"], ["label"], axis=1, keepdims=0),
        ],
        "digits",
        [helper.make_tensor_value_info("x", TensorProto.FLOAT, ["N", FEATURES])],
        [
            helper.make_tensor_value_info("probabilities", TensorProto.FLOAT, ["N", CLASSES]),
            helper.make_tensor_value_info("label", TensorProto.INT64, ["N"]),
        ],
        initializer=[numpy_helper.from_array(WEIGHTS, "W"), numpy_helper.from_array(BIAS, "b")],
    )
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", 17)])
    model.ir_version = 8
    onnx.checker.check_model(model)
    onnx.save(model, path)
    return path


def build_mixed_onnx(path: Path) -> Path:
    """Two inputs of different dtypes: y = x * Cast(k)."""
    graph = helper.make_graph(
        [
            helper.make_node("Cast", ["k"], ["kf"], to=TensorProto.FLOAT),
            helper.make_node("Mul", ["x", "kf"], ["y"]),
        ],
        "mixed",
        [
            helper.make_tensor_value_info("x", TensorProto.FLOAT, ["N", 3]),
            helper.make_tensor_value_info("k", TensorProto.INT32, ["N", 1]),
        ],
        [helper.make_tensor_value_info("y", TensorProto.FLOAT, ["N", 3])],
    )
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", 17)])
    model.ir_version = 8
    onnx.save(model, path)
    return path


MIXED = Signature(
    inputs=(TensorSpec("x", "float32", (None, 3)), TensorSpec("k", "int32", (None, 1))),
    outputs=(TensorSpec("y", "float32", (None, 3)),),
)


class TinyNet(torch.nn.Module):
    def __init__(self) -> None:
        super().__init__()
        self.linear = torch.nn.Linear(FEATURES, CLASSES)
        with torch.no_grad():
            self.linear.weight.copy_(torch.from_numpy(WEIGHTS.T.copy()))
            self.linear.bias.copy_(torch.from_numpy(BIAS))

    def forward(self, x: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        logits = self.linear(x)
        return torch.softmax(logits, dim=1), torch.argmax(logits, dim=1)


@pytest.fixture(scope="module")
def digits_dir(tmp_path_factory: pytest.TempPathFactory) -> Path:
    directory = tmp_path_factory.mktemp("digits")
    build_digits_onnx(directory / "model.onnx")
    return directory


@pytest.fixture(scope="module")
def digits(digits_dir: Path) -> Any:
    runtime = load_runtime(digits_dir, "onnx", DIGITS, RuntimeSettings(device="auto"))
    yield runtime
    runtime.close()


@pytest.fixture(scope="module")
def torchscript_file(tmp_path_factory: pytest.TempPathFactory) -> Path:
    path = tmp_path_factory.mktemp("ts") / "model.pt"
    torch.jit.script(TinyNet()).save(str(path))
    return path


def test_onnx_outputs_match_numpy(digits: Any) -> None:
    x = RNG.normal(size=(5, FEATURES)).astype(np.float32)
    batch = digits.prepare({"x": x.tolist()})
    outputs = digits.infer(batch)
    assert set(outputs) == {"probabilities", "label"}
    expected = softmax(x @ WEIGHTS + BIAS)
    np.testing.assert_allclose(outputs["probabilities"], expected, **tolerance(digits.provider))
    np.testing.assert_array_equal(outputs["label"], expected.argmax(axis=1))


def test_onnx_chooses_its_provider_and_says_why(digits_dir: Path) -> None:
    """CUDA where onnxruntime-gpu sees a GPU, else CPU with the reason in the log."""
    with structlog.testing.capture_logs() as logs:
        runtime = OnnxRuntime(digits_dir / "model.onnx", DIGITS, RuntimeSettings(device="cuda"))
    (line,) = [entry for entry in logs if entry["event"] == "runtime_loaded"]
    assert line["artifact"] == f"{digits_dir.name[:12]}/model.onnx"  # not the whole path
    assert str(digits_dir.parent) not in str(line)
    if ort_has_cuda():
        assert runtime.provider == line["provider"] == "CUDAExecutionProvider"
        assert "CUDA available" in line["reason"]
    else:
        assert runtime.provider == line["provider"] == "CPUExecutionProvider"
        assert "using CPU" in line["reason"]
    runtime.close()


def test_device_cpu_keeps_onnx_on_the_cpu(digits_dir: Path) -> None:
    runtime = OnnxRuntime(digits_dir / "model.onnx", DIGITS, RuntimeSettings(device="cpu"))
    assert runtime.provider == "CPUExecutionProvider"
    runtime.close()


def test_thread_settings_are_accepted(digits_dir: Path) -> None:
    settings = RuntimeSettings(device="cpu", intra_op_threads=1, inter_op_threads=1)
    runtime = load_runtime(digits_dir / "model.onnx", "onnx", DIGITS, settings)
    assert runtime.infer(runtime.prepare({"x": [[0.0] * FEATURES]}))["label"].shape == (1,)


def test_onnx_signature_reads_the_graph(digits_dir: Path) -> None:
    signature = onnx_signature(digits_dir)
    assert signature.inputs == (TensorSpec("x", "float32", ("N", FEATURES)),)
    assert [spec.name for spec in signature.outputs] == ["probabilities", "label"]
    assert signature.outputs[1].dtype == "int64"


def test_torchscript_outputs_match_numpy(torchscript_file: Path) -> None:
    runtime = load_runtime(torchscript_file.parent, "torchscript", DIGITS, RuntimeSettings())
    assert runtime.provider == ("torch:cuda" if torch.cuda.is_available() else "torch:cpu")
    x = RNG.normal(size=(4, FEATURES)).astype(np.float32)
    outputs = runtime.infer(runtime.prepare({"x": x.tolist()}))
    expected = softmax(x @ WEIGHTS + BIAS)
    np.testing.assert_allclose(outputs["probabilities"], expected, **tolerance(runtime.provider))
    np.testing.assert_array_equal(outputs["label"], expected.argmax(axis=1))
    runtime.close()


def test_torchscript_accepts_read_only_arrays(torchscript_file: Path) -> None:
    runtime = TorchRuntime(torchscript_file, DIGITS, RuntimeSettings(device="cpu"))
    x = np.zeros((2, FEATURES), dtype=np.float32)
    x.flags.writeable = False
    assert runtime.infer({"x": x})["probabilities"].shape == (2, CLASSES)


def test_mixed_dtypes(tmp_path: Path) -> None:
    runtime = load_runtime(build_mixed_onnx(tmp_path / "m.onnx"), "onnx", MIXED)
    batch = runtime.prepare({"x": [[1, 2, 3], [1.5, 0, 1]], "k": [[2], [3]]})
    assert batch["x"].dtype == np.float32 and batch["k"].dtype == np.int32
    np.testing.assert_allclose(runtime.infer(batch)["y"], [[2, 4, 6], [4.5, 0, 3]])


ROW = [0.0] * FEATURES


@pytest.mark.parametrize(
    ("inputs", "message"),
    [
        (
            {"x": [ROW], "y": [ROW]},
            "unknown input 'y'; the model's inputs are: x (float32, [N, 64])",
        ),
        ({"z": [ROW]}, "unknown input 'z'"),
        ({"x": [ROW[:-1], ROW[:-1]]}, "input 'x' has shape (2, 63), the model expects (N, 64)"),
        ({"x": ROW}, "input 'x' has shape (64,), the model expects (N, 64)"),
        ({"x": [ROW, ROW[:-1]]}, "input 'x' is ragged: row 1 has 63 values, row 0 has 64"),
        (
            {"x": [["a"] * FEATURES]},
            "input 'x' holds strings (e.g. 'a'), the model expects float32",
        ),
        ({"x": [[*ROW[:-1], None]]}, "input 'x' holds values that are not numbers (e.g. None)"),
        ({"x": [[True] * FEATURES]}, "input 'x' holds booleans"),
        ({"x": []}, "input 'x' must be a non-empty list of rows"),
    ],
)
def test_invalid_inputs_say_what_is_wrong(
    digits: Any, inputs: dict[str, Any], message: str
) -> None:
    with pytest.raises(InvalidInput) as info:
        digits.prepare(inputs)
    assert message in str(info.value)
    assert info.value.code == "INVALID_INPUT"


@pytest.mark.parametrize(
    ("inputs", "message"),
    [
        ({"x": [[1, 2, 3]]}, "missing input 'k'; the model's inputs are: x (float32, [N, 3]), k"),
        ({"x": [[1, 2, 3]], "k": [[1.5]]}, "input 'k' holds non-integer values (e.g. 1.5)"),
        ({"x": [[1, 2, 3]], "k": [[2**40]]}, "outside the range of int32"),
        ({"x": [[1, "2", 3]], "k": [[1]]}, "input 'x' holds strings (e.g. '2')"),
        ({"x": [[1, 2, 3]], "k": [[1], [2]]}, "inputs must have the same number of rows"),
    ],
)
def test_invalid_mixed_inputs(tmp_path: Path, inputs: dict[str, Any], message: str) -> None:
    runtime = load_runtime(build_mixed_onnx(tmp_path / "m.onnx"), "onnx", MIXED)
    with pytest.raises(InvalidInput) as info:
        runtime.prepare(inputs)
    assert message in str(info.value)


def test_unknown_format(digits_dir: Path) -> None:
    with pytest.raises(RuntimeLoadError, match="unknown model format 'pickle'; expected one of"):
        load_runtime(digits_dir, "pickle", DIGITS)


def test_missing_artifact(tmp_path: Path) -> None:
    with pytest.raises(RuntimeLoadError, match=r"no model file .* model\.onnx"):
        load_runtime(tmp_path, "onnx", DIGITS)


def test_corrupt_artifact(tmp_path: Path) -> None:
    (tmp_path / "model.onnx").write_bytes(b"not a model")
    with pytest.raises(RuntimeLoadError, match="cannot load ONNX model"):
        load_runtime(tmp_path, "onnx", DIGITS)


def test_signature_must_match_the_graph(digits_dir: Path) -> None:
    with pytest.raises(RuntimeLoadError, match=r"signature's inputs \['x', 'k'\]"):
        load_runtime(digits_dir, "onnx", MIXED)


def test_settings_validation() -> None:
    with pytest.raises(ValueError, match="device must be auto, cpu or cuda"):
        RuntimeSettings(device="tpu")  # type: ignore[arg-type]
    with pytest.raises(ValueError, match="thread counts"):
        RuntimeSettings(intra_op_threads=-1)


async def test_runtime_behind_the_batcher(digits: Any) -> None:
    """Jobs prepared by the runtime, batched together, each get their own rows back."""
    batcher = DynamicBatcher(digits.infer, BatchConfig(max_batch_size=32, max_delay_ms=20))
    jobs = [RNG.normal(size=(n, FEATURES)).astype(np.float32) for n in (1, 4, 2, 7)]
    try:
        answers = await asyncio.gather(
            *(batcher.submit(digits.prepare({"x": x.tolist()})) for x in jobs)
        )
    finally:
        await batcher.aclose()
    assert {answer.batch_size for answer in answers} == {14}
    for answer, x in zip(answers, jobs, strict=True):
        expected = softmax(x @ WEIGHTS + BIAS)
        np.testing.assert_allclose(
            answer.outputs["probabilities"], expected, **tolerance(digits.provider)
        )
