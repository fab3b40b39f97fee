"""ONNX Runtime int8 quantisation of a version's artifact into a new artifact.

- ``dynamic``: weights int8 (per channel); activations are quantised at run time, per
  batch. Needs no calibration rows.
- ``static``: weights and activations int8 in QDQ format, activation ranges calibrated
  (MinMax) on rows of real inputs. Only the weight-bearing operators (MatMul, Gemm,
  Conv) are quantised, so softmax outputs and the like stay float.

The graph is pre-processed first with ONNX Runtime's ``quant_pre_process`` (shape
inference and graph optimisation); a graph that cannot be pre-processed is quantised
as it is. The other files of a directory artifact
(``tokenizer.json``, ``signature.json``) are copied unchanged: a text model keeps its
tokenizer.
"""

from __future__ import annotations

import shutil
from collections import Counter
from collections.abc import Iterator, Sequence
from pathlib import Path
from typing import Literal, get_args

import numpy as np
import onnx
import structlog
from onnxruntime.quantization import (
    CalibrationDataReader,
    QuantFormat,
    QuantType,
    quantize_dynamic,
    quantize_static,
)
from onnxruntime.quantization.shape_inference import quant_pre_process

from registry.artifacts import model_file
from registry.entities import Signature
from workers.optimize.errors import NothingToQuantize, NotOnnx, OptimizeError
from workers.optimize.rows import Rows
from workers.runtime.text import TextEncoder

log = structlog.get_logger(__name__)

Tensors = dict[str, np.ndarray]
Method = Literal["dynamic", "static"]
METHODS: tuple[str, ...] = get_args(Method)
# What a version records as its ``method``.
METHOD_NAMES: dict[str, str] = {"dynamic": "int8-dynamic", "static": "int8-static-qdq"}
STATIC_OPS = ("Conv", "ConvTranspose", "Gemm", "MatMul")
MODEL_NAME = "model.onnx"


def quantize(
    source: Path,
    workdir: Path,
    method: Method,
    calibration: Sequence[Tensors] = (),
    *,
    reduce_range: bool = False,
) -> Path:
    """Quantise the artifact at ``source`` (an ONNX file, or a directory holding
    ``model.onnx``) under ``workdir``; returns the new artifact, a file or a directory
    as ``source`` is. ``calibration``: the graph's feeds, batch by batch (static only).
    ``reduce_range``: 7-bit weights, for x86 CPUs without VNNI (:mod:`workers.optimize.cpu`)."""
    model = model_file(source)
    require_onnx(model)
    if method == "static" and not calibration:
        raise OptimizeError("static quantisation needs calibration rows; none were given")
    artifact = workdir / "artifact"
    _copy_sidecars(source, artifact)
    target = artifact / MODEL_NAME
    prepared = _pre_process(model, workdir / "prepared.onnx")
    try:
        _run(method, prepared, target, calibration, reduce_range)
    except Exception as exc:  # ONNX Runtime raises many unrelated types
        raise OptimizeError(
            f"ONNX Runtime could not quantise {model.name} ({type(exc).__name__}: "
            f"{_first_line(exc)}); try the other --quantize method"
        ) from exc
    _require_change(prepared, target, method)
    return artifact if source.is_dir() else target


def require_onnx(model: Path) -> None:
    """Raise :class:`NotOnnx` unless ``model`` is an ONNX file."""
    if model.suffix != ".onnx":
        raise NotOnnx(
            f"{model.name} is not an ONNX model; ONNX Runtime quantises ONNX graphs only: "
            "export the model to ONNX (torch.onnx.export), register it, and optimise that version"
        )


def calibration_feeds(
    rows: Rows, signature: Signature, tokenizer: Path | None, batch: int
) -> list[Tensors]:
    """The graph's inputs for ``rows``, ``batch`` rows at a time; text is tokenized."""
    if not signature.text_input:
        return list(rows.chunks(batch))
    if tokenizer is None or not tokenizer.is_file():
        raise OptimizeError("the text model has no tokenizer.json beside its model.onnx")
    encoder = TextEncoder.from_file(tokenizer, [spec.name for spec in signature.inputs])
    texts = rows.inputs[signature.text_input]
    return [
        encoder.feeds(encoder.encode([str(t) for t in texts[i : i + batch]]))
        for i in range(0, len(texts), batch)
    ]


def _copy_sidecars(source: Path, artifact: Path) -> None:
    artifact.mkdir(parents=True)
    if source.is_dir():
        shutil.copytree(source, artifact, dirs_exist_ok=True)
        (artifact / MODEL_NAME).unlink(missing_ok=True)


def _pre_process(model: Path, out: Path) -> Path:
    """ONNX Runtime's pre-processing (ONNX shape inference, graph optimisation); the
    model itself when that fails. Its symbolic shape inference is skipped: where it
    gives up (on MiniLM, say) it saves the model into the working directory."""
    try:
        quant_pre_process(str(model), str(out), skip_symbolic_shape=True)
    except Exception as exc:  # onnx and onnxruntime raise many unrelated types
        log.warning("quant_pre_process_failed", model=str(model), error=_first_line(exc))
        return model
    return out


def _run(
    method: Method,
    model: Path,
    target: Path,
    calibration: Sequence[Tensors],
    reduce_range: bool,
) -> None:
    if method == "dynamic":
        quantize_dynamic(
            str(model),
            str(target),
            weight_type=QuantType.QInt8,
            per_channel=True,
            reduce_range=reduce_range,
        )
        return
    quantize_static(
        str(model),
        str(target),
        _Reader(calibration),
        quant_format=QuantFormat.QDQ,
        op_types_to_quantize=list(STATIC_OPS),
        per_channel=True,
        reduce_range=reduce_range,
        activation_type=QuantType.QUInt8,  # u8 activations, s8 weights: fast on x86
        weight_type=QuantType.QInt8,
    )


class _Reader(CalibrationDataReader):  # type: ignore[misc]
    """ONNX Runtime's calibration reader over feeds already built."""

    def __init__(self, feeds: Sequence[Tensors]) -> None:
        self._feeds: Iterator[Tensors] = iter(feeds)

    def get_next(self) -> Tensors | None:
        return next(self._feeds, None)


def _require_change(before: Path, after: Path, method: Method) -> None:
    ops_before = Counter(node.op_type for node in onnx.load(str(before)).graph.node)
    ops_after = Counter(node.op_type for node in onnx.load(str(after)).graph.node)
    if ops_before == ops_after:
        raise NothingToQuantize(
            f"the model has no operator that {method} quantisation quantises (its operators: "
            f"{', '.join(sorted(ops_before))}): int8 would change nothing; serve the version "
            "as it is"
        )


def _first_line(exc: BaseException) -> str:
    text = str(exc).strip()
    return text.splitlines()[0] if text else "no details"
