"""TorchScript: a ``torch.jit`` module (never pickle) run in inference mode, CPU or CUDA."""

from __future__ import annotations

from collections.abc import Mapping
from pathlib import Path
from typing import Any

import numpy as np
import structlog

from workers.errors import InferenceError, RuntimeLoadError
from workers.runtime.base import Device, ModelRuntime, Opened, RuntimeSettings, Tensors
from workers.runtime.text import TOKEN_INPUTS

__all__ = ["TorchRuntime"]

log = structlog.get_logger(__name__)


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


class TorchRuntime(ModelRuntime):
    """A TorchScript module (``torch.jit.load``, never pickle) run in inference mode.

    Inputs are passed positionally in signature order (for text models: the token
    tensors the signature lists, default ``input_ids, attention_mask``). The module
    returns a tensor, a tuple of tensors (named by ``signature.outputs``) or a dict.
    """

    format = "torchscript"

    def _open(self, path: Path, settings: RuntimeSettings) -> Opened:
        try:
            import torch
        except ModuleNotFoundError as exc:  # a worker without the train extra
            raise RuntimeLoadError(
                f"{path.name} is a TorchScript model and torch is not installed here: "
                "pip install 'maas[train]' on the workers that serve it"
            ) from exc

        device, reason = _torch_device(settings.device)
        _torch_threads(settings)
        try:
            self._module = torch.jit.load(  # type: ignore[no-untyped-call]
                str(path), map_location=device
            ).eval()
        except Exception as exc:
            raise RuntimeLoadError(f"cannot load TorchScript model {path}: {exc}") from exc
        self._device = torch.device(device)
        names = [spec.name for spec in self.signature.inputs]
        if self.signature.text_input:
            names = [name for name in names if name in TOKEN_INPUTS] or list(TOKEN_INPUTS[:2])
        self._inputs = names
        return Opened(f"torch:{device}", names, device == "cuda", reason)

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
