"""Model runtimes behind one interface: ONNX Runtime and TorchScript, CPU or CUDA.

A :class:`Runtime` turns a job's JSON inputs into arrays that match the model's
signature (``prepare``, which raises :class:`InvalidInput` saying exactly what is
wrong) and runs a batch of them (``infer``, called by the batcher off the event
loop). Text models (``signature.text_input``) take ``{"text": [...]}`` and carry a
tokenizer; see :mod:`workers.runtime.text`. :func:`load_runtime` picks the runtime for a
version's artifact.

The pieces live apart: :mod:`workers.runtime.validation` (inputs), :mod:`workers.runtime.base`
(settings, protocol, what runtimes share), :mod:`workers.runtime.onnxrt` and
:mod:`workers.runtime.torchscript`; their public names are re-exported here.
"""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path

from registry.entities import Signature
from workers.errors import RuntimeLoadError
from workers.runtime.base import Device, ModelRuntime, Runtime, RuntimeSettings
from workers.runtime.onnxrt import OnnxRuntime, onnx_signature
from workers.runtime.torchscript import TorchRuntime
from workers.runtime.validation import describe_inputs, prepare_inputs

__all__ = [
    "FORMATS",
    "Device",
    "ModelRuntime",
    "OnnxRuntime",
    "Runtime",
    "RuntimeSettings",
    "TorchRuntime",
    "describe_inputs",
    "load_runtime",
    "onnx_signature",
    "prepare_inputs",
]

# Each format, the runtime that loads it and the file names it looks for in a directory.
_RUNTIMES: dict[str, tuple[type[ModelRuntime], tuple[str, ...]]] = {
    "onnx": (OnnxRuntime, ("model.onnx",)),
    "torchscript": (TorchRuntime, ("model.pt", "model.ts", "model.torchscript")),
}
FORMATS = tuple(_RUNTIMES)


def _artifact(path: Path, names: Sequence[str]) -> Path:
    """The model file: ``path`` itself, or the first of ``names`` inside it."""
    if path.is_file():
        return path
    for name in names:
        if (path / name).is_file():
            return path / name
    raise RuntimeLoadError(f"no model file at {path} (looked for {', '.join(names)})")


def load_runtime(
    path: Path, format: str, signature: Signature, settings: RuntimeSettings | None = None
) -> Runtime:
    """Load a model version's artifact.

    ``format`` is ``onnx`` (``path`` is the .onnx file or a directory holding
    ``model.onnx``) or ``torchscript`` (the file or a directory holding ``model.pt``).
    A text model's ``tokenizer.json`` lies next to the model file.
    """
    if format not in _RUNTIMES:
        raise RuntimeLoadError(
            f"unknown model format {format!r}; expected one of: {', '.join(FORMATS)}"
        )
    runtime, names = _RUNTIMES[format]
    model = _artifact(Path(path), names)
    return runtime(model, signature, settings, tokenizer=model.parent / "tokenizer.json")
