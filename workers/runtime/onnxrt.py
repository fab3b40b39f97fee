"""ONNX Runtime: an ``InferenceSession`` on CUDA when available and allowed, else CPU."""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

import numpy as np
import structlog

from registry.entities import Signature, TensorSpec
from workers.errors import RuntimeLoadError
from workers.runtime.base import Device, ModelRuntime, Opened, RuntimeSettings, Tensors

__all__ = ["OnnxRuntime", "onnx_signature"]

log = structlog.get_logger(__name__)

_ONNX_DTYPES = {
    "tensor(float)": "float32",
    "tensor(double)": "float64",
    "tensor(float16)": "float16",
    "tensor(int64)": "int64",
    "tensor(int32)": "int32",
    "tensor(int16)": "int16",
    "tensor(int8)": "int8",
    "tensor(uint8)": "uint8",
    "tensor(bool)": "bool",
    "tensor(string)": "object",
}


def _onnx_providers(device: Device) -> tuple[list[str], str]:
    """The execution providers to ask for, and why."""
    import onnxruntime as ort

    available = ort.get_available_providers()
    if device == "cpu":
        return ["CPUExecutionProvider"], "device=cpu"
    if "CUDAExecutionProvider" in available:
        _preload_cuda_libraries(ort)
        return ["CUDAExecutionProvider", "CPUExecutionProvider"], f"device={device}, CUDA available"
    return ["CPUExecutionProvider"], (
        f"device={device} but onnxruntime offers only {available} "
        "(CUDA needs onnxruntime-gpu and a GPU); using CPU"
    )


def _preload_cuda_libraries(ort: Any) -> None:
    """Load CUDA and cuDNN from the ``nvidia-*`` wheels (``onnxruntime-gpu[cuda,cudnn]``)
    so the CUDA provider finds them without LD_LIBRARY_PATH; a system CUDA still works."""
    preload = getattr(ort, "preload_dlls", None)  # onnxruntime >= 1.21
    if preload is None:
        return
    try:
        preload()
    except Exception as exc:  # the provider may still find a system installation
        log.warning("cuda_preload_failed", error=str(exc))


def _session_options(settings: RuntimeSettings) -> Any:
    import onnxruntime as ort

    options = ort.SessionOptions()
    options.intra_op_num_threads = settings.intra_op_threads
    options.inter_op_num_threads = settings.inter_op_threads
    options.log_severity_level = 3  # errors only; we log what matters ourselves
    if not settings.spin:
        options.add_session_config_entry("session.intra_op.allow_spinning", "0")
        options.add_session_config_entry("session.inter_op.allow_spinning", "0")
    return options


def _onnx_file(path: Path) -> Path:
    return path / "model.onnx" if path.is_dir() else path


def onnx_signature(path: Path, text_input: str | None = None) -> Signature:
    """Read a Signature from an ONNX graph (inputs and outputs with dtypes and shapes)."""
    import onnxruntime as ort

    session = ort.InferenceSession(str(_onnx_file(path)), providers=["CPUExecutionProvider"])

    def specs(args: Sequence[Any]) -> tuple[TensorSpec, ...]:
        return tuple(
            TensorSpec(arg.name, _ONNX_DTYPES.get(arg.type, arg.type), tuple(arg.shape))
            for arg in args
        )

    return Signature(specs(session.get_inputs()), specs(session.get_outputs()), text_input)


class OnnxRuntime(ModelRuntime):
    """An ``onnxruntime.InferenceSession`` on CUDA when available and allowed, else CPU.

    Feeds are cast to the graph's input dtypes; every output is returned by name.
    """

    format = "onnx"

    def _open(self, path: Path, settings: RuntimeSettings) -> Opened:
        import onnxruntime as ort

        providers, reason = _onnx_providers(settings.device)
        try:
            self._session = ort.InferenceSession(
                str(path), _session_options(settings), providers=providers
            )
        except Exception as exc:
            raise RuntimeLoadError(f"cannot load ONNX model {path}: {exc}") from exc
        self._dtypes = {
            arg.name: np.dtype(_ONNX_DTYPES.get(arg.type, "float32"))
            for arg in self._session.get_inputs()
        }
        self._outputs = [arg.name for arg in self._session.get_outputs()]
        provider: str = self._session.get_providers()[0]
        return Opened(provider, list(self._dtypes), provider != "CPUExecutionProvider", reason)

    def _run(self, feeds: Mapping[str, np.ndarray]) -> Tensors:
        inputs = {
            name: np.asarray(feeds[name], dtype=dtype) for name, dtype in self._dtypes.items()
        }
        results = self._session.run(self._outputs, inputs)
        return dict(zip(self._outputs, results, strict=True))

    def close(self) -> None:
        self._session = None
