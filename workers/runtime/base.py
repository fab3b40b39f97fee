"""What every model runtime shares: its settings, the :class:`Runtime` protocol, and
:class:`ModelRuntime`, the base of the ONNX and TorchScript runtimes.

A runtime turns a job's JSON inputs into arrays that match the model's signature
(``prepare``) and runs a batch of them (``infer``, called by the batcher off the
event loop). A text model (``signature.text_input``) is fed strings and carries a
tokenizer (:mod:`workers.runtime.text`): ``infer`` tokenizes the batch, then runs it.
"""

from __future__ import annotations

import abc
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any, ClassVar, Literal, NamedTuple, Protocol

import numpy as np
import structlog

from registry.entities import Signature
from workers import defaults
from workers.errors import RuntimeLoadError
from workers.runtime.text import TextEncoder, TextShapes
from workers.runtime.validation import Tensors, prepare_inputs

__all__ = ["Device", "ModelRuntime", "Opened", "Runtime", "RuntimeSettings", "Tensors"]

Device = Literal["auto", "cpu", "cuda"]

log = structlog.get_logger(__name__)


@dataclass(frozen=True, slots=True)
class RuntimeSettings:
    """Where and how a model runs. Thread counts of 0 leave the library default."""

    device: Device = defaults.DEVICE
    intra_op_threads: int = defaults.INTRA_OP_THREADS
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


class Opened(NamedTuple):
    """What a runtime reports once its model is open."""

    provider: str
    inputs: list[str]  # the model's input names, as :meth:`ModelRuntime._run` feeds them
    gpu: bool
    reason: str  # why this device, for the log


class ModelRuntime(abc.ABC):
    """A :class:`Runtime` for one model file. Subclasses open the model
    (:meth:`_open`), run feeds through it (:meth:`_run`) and release it (``close``);
    validating inputs and the text models' tokenizing are done here, alike for all."""

    format: ClassVar[str]

    def __init__(
        self,
        path: Path,
        signature: Signature,
        settings: RuntimeSettings | None = None,
        *,
        tokenizer: Path | None = None,
    ) -> None:
        """``tokenizer``: the ``tokenizer.json`` a text model needs."""
        self.signature = signature
        opened = self._open(path, settings or RuntimeSettings())
        self.provider: str = opened.provider
        self.text_encoder = _text_encoder(signature, opened.inputs, tokenizer, path, gpu=opened.gpu)
        if self.text_encoder is None:
            _check_signature(signature, opened.inputs, path)
        log.info(
            "runtime_loaded",
            format=self.format,
            artifact=_shown(path),
            provider=self.provider,
            reason=opened.reason,
        )

    @abc.abstractmethod
    def _open(self, path: Path, settings: RuntimeSettings) -> Opened:
        """Load the model; raise :class:`RuntimeLoadError` when it cannot be."""

    @abc.abstractmethod
    def _run(self, feeds: Mapping[str, np.ndarray]) -> Tensors:
        """Run the model on arrays named as its inputs."""

    @abc.abstractmethod
    def close(self) -> None:
        """Release the model (sessions, device memory)."""

    def prepare(self, inputs: Mapping[str, Sequence[Any]]) -> Tensors:
        return prepare_inputs(self.signature, inputs)

    def infer(self, batch: Mapping[str, np.ndarray]) -> Tensors:
        if self.text_encoder is not None:
            return self.text_encoder.infer(batch[self.signature.text_input or "text"], self._run)
        return self._run(batch)


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


def _check_signature(signature: Signature, model_inputs: list[str], path: Path) -> None:
    declared = [spec.name for spec in signature.inputs]
    if sorted(declared) != sorted(model_inputs):
        raise RuntimeLoadError(
            f"the signature's inputs {declared} do not match the model's inputs {model_inputs} "
            f"in {path}"
        )


def _shown(path: Path) -> str:
    """An artifact as logs name it: its folder (the sha256's first 12 hex digits in the
    registry's store) and file, not the whole path."""
    return f"{path.parent.name[:12]}/{path.name}" if path.parent.name else path.name
