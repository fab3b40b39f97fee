"""Model runtimes behind one interface: ONNX Runtime and TorchScript, CPU or CUDA.

A :class:`Runtime` turns a job's JSON inputs into arrays that match the model's
signature (``prepare``, which raises :class:`InvalidInput` saying exactly what is
wrong) and runs a batch of them (``infer``, called by the batcher off the event
loop). Text models (``signature.text_input``) take ``{"text": [...]}`` and carry a
tokenizer; see :mod:`workers.text`. :func:`load_runtime` picks the runtime for a
version's artifact.
"""

from __future__ import annotations

import functools
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Literal, Protocol

import numpy as np
import structlog

from registry.entities import Dim, Signature, TensorSpec
from workers.errors import InferenceError, InvalidInput, RuntimeLoadError
from workers.text import TOKEN_INPUTS, TextEncoder, TextShapes, prepare_text

__all__ = [
    "FORMATS",
    "OnnxRuntime",
    "Runtime",
    "RuntimeSettings",
    "TorchRuntime",
    "describe_inputs",
    "load_runtime",
    "onnx_signature",
    "prepare_inputs",
]

Tensors = dict[str, np.ndarray]
Device = Literal["auto", "cpu", "cuda"]
FORMATS = ("onnx", "torchscript")

log = structlog.get_logger(__name__)


@dataclass(frozen=True, slots=True)
class RuntimeSettings:
    """Where and how a model runs. Thread counts of 0 leave the library default."""

    device: Device = "auto"
    intra_op_threads: int = 0
    inter_op_threads: int = 0
    # ONNX Runtime's pool threads busy-wait for work between runs by default: cores
    # taken from the event loop that decodes, batches and publishes, and from the
    # broker beside it. Off, digits through the broker measured the same within noise
    # (6.3k vs 6.7k rows/s on 2 cores) and an idle worker uses no CPU.
    spin: bool = False

    def __post_init__(self) -> None:
        if self.device not in ("auto", "cpu", "cuda"):
            raise ValueError(
                f"RuntimeSettings.device must be auto, cpu or cuda, not {self.device!r}"
            )
        if self.intra_op_threads < 0 or self.inter_op_threads < 0:
            raise ValueError("RuntimeSettings thread counts must be >= 0 (0 = library default)")


class Runtime(Protocol):
    """A loaded model version: validates job inputs and runs batches."""

    signature: Signature
    provider: str  # "CPUExecutionProvider", "CUDAExecutionProvider", "torch:cpu", ...

    def prepare(self, inputs: Mapping[str, Sequence[Any]]) -> Tensors:
        """Validate one job's JSON inputs and convert them to arrays; raise InvalidInput."""
        ...

    def infer(self, batch: Mapping[str, np.ndarray]) -> Tensors:
        """Run a batch (leading row dimension) and return every output by name."""
        ...

    def close(self) -> None:
        """Release the model (sessions, device memory)."""
        ...


# -- validating a job's inputs -----------------------------------------------------------

# numpy kinds of parsed JSON values a model dtype accepts without losing meaning.
_ACCEPTS = {"f": "fiu", "i": "iuf", "u": "iuf", "b": "b", "U": "U", "O": "U"}
_KIND_WORDS = {"U": "strings", "O": "values that are not numbers", "b": "booleans", "f": "floats"}


def _render_shape(shape: Sequence[Dim]) -> str:
    dims = ["N"] + ["?" if dim is None else str(dim) for dim in shape[1:]]
    return f"({', '.join(dims)})" if len(dims) != 1 else "(N,)"


def describe_inputs(signature: Signature) -> str:
    """``x (float32, [N, 64]), mask (int64, [N, 64])`` for error messages."""
    return ", ".join(
        f"{spec.name} ({spec.dtype}, [{_render_shape(spec.shape)[1:-1].rstrip(',')}])"
        for spec in signature.inputs
    )


def prepare_inputs(signature: Signature, inputs: Mapping[str, Sequence[Any]]) -> Tensors:
    """Validate a job's inputs against ``signature`` and convert them to arrays."""
    if signature.text_input:
        return prepare_text(inputs, signature.text_input)
    specs = signature.inputs
    if len(inputs) != len(specs) or any(spec.name not in inputs for spec in specs):
        _name_mismatch(signature, inputs)
    arrays = {spec.name: _to_array(spec, inputs[spec.name]) for spec in specs}
    if len(arrays) > 1:
        counts = {name: len(array) for name, array in arrays.items()}
        if len(set(counts.values())) > 1:
            raise InvalidInput(f"inputs must have the same number of rows, got {counts}")
    return arrays


def _name_mismatch(signature: Signature, inputs: Mapping[str, Any]) -> None:
    expected = {spec.name for spec in signature.inputs}
    for name in inputs:
        if name not in expected:
            raise InvalidInput(
                f"unknown input {name!r}; the model's inputs are: {describe_inputs(signature)}"
            )
    for name in expected:
        if name not in inputs:
            raise InvalidInput(
                f"missing input {name!r}; the model's inputs are: {describe_inputs(signature)}"
            )


def _to_array(spec: TensorSpec, rows: Sequence[Any]) -> np.ndarray:
    if not isinstance(rows, list | tuple) or not rows:
        raise InvalidInput(f"input {spec.name!r} must be a non-empty list of rows")
    try:
        parsed = np.asarray(rows)
    except ValueError as exc:
        raise InvalidInput(
            f"input {spec.name!r} is ragged: {_ragged(rows)}; every row must have the shape "
            f"{_render_shape(spec.shape)} without the N"
        ) from exc
    array = _cast(spec, rows, parsed)
    expected = spec.shape
    fixed = [(got, want) for got, want in zip(array.shape[1:], expected[1:], strict=False)]
    if array.ndim != len(expected) or any(
        isinstance(want, int) and got != want for got, want in fixed
    ):
        raise InvalidInput(
            f"input {spec.name!r} has shape {tuple(array.shape)}, "
            f"the model expects {_render_shape(expected)}"
        )
    return array


@functools.cache
def _dtype(name: str) -> np.dtype[Any]:
    return np.dtype(name)


def _cast(spec: TensorSpec, rows: Sequence[Any], parsed: np.ndarray) -> np.ndarray:
    target = _dtype(spec.dtype)
    kind = parsed.dtype.kind
    if kind not in _ACCEPTS.get(target.kind, target.kind):
        example = _first_non_number(rows)
        if example is _NUMBER:
            example = parsed.ravel()[0].item()
        raise InvalidInput(
            f"input {spec.name!r} holds {_KIND_WORDS.get(kind, parsed.dtype.name)} "
            f"(e.g. {example!r}), the model expects {spec.dtype}"
        )
    if target.kind in "iu" and kind == "f" and not _integral(parsed):
        raise InvalidInput(
            f"input {spec.name!r} holds non-integer values (e.g. {_first_fraction(parsed)!r}), "
            f"the model expects {spec.dtype}"
        )
    if target.kind in "iu" and parsed.size:
        info = np.iinfo(target)
        if parsed.min() < info.min or parsed.max() > info.max:
            raise InvalidInput(
                f"input {spec.name!r} holds values outside the range of {spec.dtype} "
                f"({info.min}..{info.max})"
            )
    return parsed.astype(target, copy=False)


def _integral(values: np.ndarray) -> bool:
    return bool(np.all(np.isfinite(values) & (values == np.round(values))))


def _first_non_number(rows: Any) -> Any:
    """The first leaf of nested lists that is not an int or float (for messages)."""
    if isinstance(rows, list | tuple):
        for row in rows:
            found = _first_non_number(row)
            if found is not _NUMBER:
                return found
        return _NUMBER
    if isinstance(rows, bool) or not isinstance(rows, int | float):
        return rows
    return _NUMBER


def _first_fraction(parsed: np.ndarray) -> Any:
    """The first value that is not a whole number (for messages)."""
    flat = parsed.ravel()
    return flat[np.argmax(~(np.isfinite(flat) & (flat == np.round(flat))))].item()


_NUMBER = object()


def _ragged(rows: Sequence[Any], path: str = "") -> str:
    """Where nested lists stop having one length, e.g. ``row 1 has 3 values, row 0 has 4``."""
    lengths = [len(row) if isinstance(row, list | tuple) else None for row in rows]
    first = lengths[0]
    for index, length in enumerate(lengths):
        if length != first:
            what = "a scalar" if length is None else f"{length} values"
            then = "a scalar" if first is None else f"{first} values"
            return f"row {path}{index} has {what}, row {path}0 has {then}"
    for index, row in enumerate(rows):
        if isinstance(row, list | tuple) and row:
            found = _ragged(row, f"{path}{index}.")
            if found:
                return found
    return ""


# -- ONNX Runtime ------------------------------------------------------------------------

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


class OnnxRuntime:
    """An ``onnxruntime.InferenceSession`` on CUDA when available and allowed, else CPU."""

    def __init__(
        self,
        path: Path,
        signature: Signature,
        settings: RuntimeSettings | None = None,
        *,
        tokenizer: Path | None = None,
    ) -> None:
        import onnxruntime as ort

        settings = settings or RuntimeSettings()
        providers, reason = _onnx_providers(settings.device)
        options = ort.SessionOptions()
        options.intra_op_num_threads = settings.intra_op_threads
        options.inter_op_num_threads = settings.inter_op_threads
        options.log_severity_level = 3  # errors only; we log what matters ourselves
        if not settings.spin:
            options.add_session_config_entry("session.intra_op.allow_spinning", "0")
            options.add_session_config_entry("session.inter_op.allow_spinning", "0")
        try:
            self._session = ort.InferenceSession(str(path), options, providers=providers)
        except Exception as exc:
            raise RuntimeLoadError(f"cannot load ONNX model {path}: {exc}") from exc
        self.signature = signature
        self.provider: str = self._session.get_providers()[0]
        graph_inputs = self._session.get_inputs()
        self._dtypes = {
            arg.name: np.dtype(_ONNX_DTYPES.get(arg.type, "float32")) for arg in graph_inputs
        }
        self._outputs = [arg.name for arg in self._session.get_outputs()]
        self.text_encoder = _text_encoder(
            signature,
            list(self._dtypes),
            tokenizer,
            path,
            gpu=self.provider != "CPUExecutionProvider",
        )
        if self.text_encoder is None:
            _check_signature(signature, list(self._dtypes), path)
        log.info(
            "runtime_loaded", format="onnx", path=str(path), provider=self.provider, reason=reason
        )

    def prepare(self, inputs: Mapping[str, Sequence[Any]]) -> Tensors:
        return prepare_inputs(self.signature, inputs)

    def infer(self, batch: Mapping[str, np.ndarray]) -> Tensors:
        if self.text_encoder is not None:
            return self.text_encoder.infer(batch[self._text_name], self._run)
        return self._run(batch)

    @property
    def _text_name(self) -> str:
        return self.signature.text_input or "text"

    def _run(self, feeds: Mapping[str, np.ndarray]) -> Tensors:
        inputs = {
            name: np.asarray(feeds[name], dtype=dtype) for name, dtype in self._dtypes.items()
        }
        results = self._session.run(self._outputs, inputs)
        return dict(zip(self._outputs, results, strict=True))

    def close(self) -> None:
        self._session = None


# -- TorchScript -------------------------------------------------------------------------


def _torch_device(device: Device) -> tuple[str, str]:
    import torch

    if device == "cpu":
        return "cpu", "device=cpu"
    if torch.cuda.is_available():
        return "cuda", f"device={device}, CUDA available"
    return "cpu", f"device={device} but torch sees no CUDA device; using CPU"


def _torch_threads(settings: RuntimeSettings) -> None:
    import torch

    if settings.intra_op_threads:
        torch.set_num_threads(settings.intra_op_threads)
    if settings.inter_op_threads:
        try:
            torch.set_num_interop_threads(settings.inter_op_threads)
        except RuntimeError as exc:  # only settable before torch's first parallel work
            log.warning("torch_interop_threads_not_set", reason=str(exc))


class TorchRuntime:
    """A TorchScript module (``torch.jit.load``, never pickle) run in inference mode.

    Inputs are passed positionally in signature order (for text models: the token
    tensors the signature lists, default ``input_ids, attention_mask``). The module
    returns a tensor, a tuple of tensors (named by ``signature.outputs``) or a dict.
    """

    def __init__(
        self,
        path: Path,
        signature: Signature,
        settings: RuntimeSettings | None = None,
        *,
        tokenizer: Path | None = None,
    ) -> None:
        import torch

        settings = settings or RuntimeSettings()
        device, reason = _torch_device(settings.device)
        _torch_threads(settings)
        try:
            self._module = torch.jit.load(  # type: ignore[no-untyped-call]
                str(path), map_location=device
            ).eval()
        except Exception as exc:
            raise RuntimeLoadError(f"cannot load TorchScript model {path}: {exc}") from exc
        self._device = torch.device(device)
        self.signature = signature
        self.provider: str = f"torch:{device}"
        names = [spec.name for spec in signature.inputs]
        if signature.text_input:
            names = [name for name in names if name in TOKEN_INPUTS] or list(TOKEN_INPUTS[:2])
        self._inputs = names
        self.text_encoder = _text_encoder(signature, names, tokenizer, path, gpu=device == "cuda")
        log.info(
            "runtime_loaded",
            format="torchscript",
            path=str(path),
            provider=self.provider,
            reason=reason,
        )

    def prepare(self, inputs: Mapping[str, Sequence[Any]]) -> Tensors:
        return prepare_inputs(self.signature, inputs)

    def infer(self, batch: Mapping[str, np.ndarray]) -> Tensors:
        if self.text_encoder is not None:
            return self.text_encoder.infer(batch[self.signature.text_input or "text"], self._run)
        return self._run(batch)

    def _run(self, feeds: Mapping[str, np.ndarray]) -> Tensors:
        import torch

        arrays = [feeds[name] for name in self._inputs]
        tensors = [
            torch.from_numpy(a if a.flags.writeable else a.copy()).to(self._device) for a in arrays
        ]
        with torch.inference_mode():
            result = self._module(*tensors)
        return self._name_outputs(result)

    def _name_outputs(self, result: Any) -> Tensors:
        import torch

        if isinstance(result, torch.Tensor):
            result = (result,)
        if isinstance(result, dict):
            pairs = list(result.items())
        else:
            names = [spec.name for spec in self.signature.outputs] or ["output"]
            if len(names) != len(result):
                raise InferenceError(
                    f"the module returned {len(result)} outputs, the signature names {len(names)}: {names}"
                )
            pairs = list(zip(names, result, strict=True))
        return {str(name): tensor.detach().cpu().numpy() for name, tensor in pairs}

    def close(self) -> None:
        import torch

        self._module = None
        if self._device.type == "cuda":
            torch.cuda.empty_cache()


# -- loading -----------------------------------------------------------------------------


def _text_encoder(
    signature: Signature,
    model_inputs: list[str],
    tokenizer: Path | None,
    path: Path,
    *,
    gpu: bool,
) -> TextEncoder | None:
    if not signature.text_input:
        return None
    if tokenizer is None or not tokenizer.is_file():
        raise RuntimeLoadError(
            f"model {path} is a text model (text_input={signature.text_input!r}) but has no "
            "tokenizer.json next to it"
        )
    return TextEncoder.from_file(tokenizer, model_inputs, shapes=TextShapes.for_device(gpu))


def _check_signature(signature: Signature, graph_inputs: list[str], path: Path) -> None:
    declared = [spec.name for spec in signature.inputs]
    if sorted(declared) != sorted(graph_inputs):
        raise RuntimeLoadError(
            f"the signature's inputs {declared} do not match the model's inputs {graph_inputs} "
            f"in {path}"
        )


def _onnx_file(path: Path) -> Path:
    return path / "model.onnx" if path.is_dir() else path


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
    path = Path(path)
    settings = settings or RuntimeSettings()
    if format == "onnx":
        model = _artifact(path, ["model.onnx"])
        return OnnxRuntime(model, signature, settings, tokenizer=model.parent / "tokenizer.json")
    if format == "torchscript":
        model = _artifact(path, ["model.pt", "model.ts", "model.torchscript"])
        return TorchRuntime(model, signature, settings, tokenizer=model.parent / "tokenizer.json")
    raise RuntimeLoadError(
        f"unknown model format {format!r}; expected one of: {', '.join(FORMATS)}"
    )
