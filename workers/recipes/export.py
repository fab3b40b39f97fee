"""ONNX export of a trained classifier and the parity check that guards it.

The exported model takes ``x`` and returns ``probabilities`` and ``label``, unless it
retrains a version with names of its own (:meth:`Names.like`), whose names it keeps.

The TorchScript-based exporter (``torch.onnx.export(..., dynamo=False)``) is used: the
torch.export-based one needs the ``onnxscript`` package, which maas does not depend on.
Torch marks the TorchScript exporter deprecated; its DeprecationWarning is silenced
around the call only.
"""

from __future__ import annotations

import json
import warnings
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING

import numpy as np
import numpy.typing as npt
import onnx
import onnxruntime as ort

from registry.entities import Signature, TensorSpec
from workers.recipes.base import DatasetError, ParityError

if TYPE_CHECKING:  # torch is the `train` extra's: imported by the functions that use it
    from workers.recipes.network import Classifier

OPSET = 17
PARITY_ATOL = 1e-4
_ORT_TYPES = {"tensor(float)": "float32", "tensor(int64)": "int64"}


@dataclass(frozen=True, slots=True)
class Names:
    """The exported model's names: its input (float32 [N, F]), its class probabilities
    (float32 [N, C]) and its class index (int64 [N])."""

    input: str = "x"
    probabilities: str = "probabilities"
    label: str = "label"

    @property
    def outputs(self) -> list[str]:
        return [self.probabilities, self.label]

    @classmethod
    def like(cls, signature: Signature | None) -> Names:
        """The names of ``signature`` (the version being retrained) by role, where it has
        one tensor input, one float output of rank 2 (class scores: it gets the
        probabilities) and one int64 output of rank 1; the default names otherwise."""
        default = cls()
        if signature is None or signature.text_input or len(signature.inputs) != 1:
            return default
        scores = [t.name for t in signature.outputs if _is_float(t) and len(t.shape) == 2]
        labels = [t.name for t in signature.outputs if t.dtype == "int64" and len(t.shape) == 1]
        names = cls(
            input=signature.inputs[0].name,
            probabilities=scores[0] if len(scores) == 1 else default.probabilities,
            label=labels[0] if len(labels) == 1 else default.label,
        )
        distinct = len({names.input, names.probabilities, names.label}) == 3
        return names if distinct else default


def _is_float(spec: TensorSpec) -> bool:
    return spec.dtype.startswith("float")


def export_onnx(
    net: Classifier,
    n_features: int,
    path: Path,
    metadata: Mapping[str, str],
    names: Names | None = None,
) -> None:
    """Write ``net`` to ``path``: input [batch, F], outputs probabilities and label,
    under ``names`` (default: ``x``, ``probabilities``, ``label``)."""
    import torch

    names = names or Names()
    net.eval()
    example = (torch.zeros(2, n_features, dtype=torch.float32),)
    batch = {0: "batch"}
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", DeprecationWarning)
        torch.onnx.export(
            net,
            example,
            str(path),
            input_names=[names.input],
            output_names=names.outputs,
            dynamic_axes={name: batch for name in (names.input, *names.outputs)},
            opset_version=OPSET,
            dynamo=False,
        )
    model = onnx.load(str(path))
    onnx.helper.set_model_props(model, dict(metadata))
    onnx.checker.check_model(model)
    onnx.save(model, str(path))


def json_list(items: tuple[str, ...]) -> str:
    return json.dumps(list(items))


def session(path: Path) -> ort.InferenceSession:
    return ort.InferenceSession(str(path), providers=["CPUExecutionProvider"])


def check_parity(
    net: Classifier,
    path: Path,
    x: npt.NDArray[np.float32],
    atol: float = PARITY_ATOL,
    *,
    names: Names | None = None,
) -> float:
    """Run ``x`` through torch and onnxruntime; return the max abs diff of probabilities.

    Raises :class:`ParityError` when it exceeds ``atol`` or any predicted label differs.
    """
    import torch

    with torch.inference_mode():
        expected, expected_label = (t.numpy() for t in net(torch.as_tensor(x)))
    names = names or Names()
    got, got_label = session(path).run(names.outputs, {names.input: x})
    diff = float(np.max(np.abs(np.asarray(got) - expected))) if len(x) else 0.0
    if not diff <= atol:
        raise ParityError(
            f"ONNX export of {path.name} differs from the torch model: max abs diff of "
            f"probabilities {diff:.3g} > {atol:g}; the model was not registered"
        )
    mismatched = int(np.sum(np.asarray(got_label) != expected_label))
    if mismatched:
        raise ParityError(
            f"ONNX export of {path.name} predicts a different label than torch for "
            f"{mismatched} of {len(x)} held-out rows; the model was not registered"
        )
    return diff


def probabilities_of(
    path: Path, x: npt.NDArray[np.float32], classes: tuple[str, ...]
) -> npt.NDArray[np.float32]:
    """The ``probabilities`` of the exported classifier at ``path`` for ``x``.

    Raises :class:`DatasetError` unless it was exported for these ``classes`` (its
    ``maas.classes`` metadata) and runs on rows of this width.
    """
    try:
        sess = session(path)
        own = json.loads(sess.get_modelmeta().custom_metadata_map.get("maas.classes", "null"))
        if own is None:
            raise DatasetError(
                f"{path.name} has no maas.classes metadata, the JSON list of its class names "
                "in the order of its probabilities; set it with onnx.helper.set_model_props "
                "and register that file as a new version (docs/models.md, 'Retraining it')"
            )
        if own != list(classes):
            raise DatasetError(
                f"{path.name} was trained for other classes than this dataset's (its "
                "maas.classes metadata names them; docs/models.md, 'Retraining it')"
            )
        # By role, not by name: a retrained model keeps the names its clients use.
        floats = [o.name for o in sess.get_outputs() if o.type == "tensor(float)"]
        (probabilities,) = sess.run(floats[:1], {sess.get_inputs()[0].name: x})
    except DatasetError:
        raise
    except Exception as exc:  # onnxruntime raises its own unrelated types
        raise DatasetError(
            f"{path.name} does not run on this dataset's rows ({type(exc).__name__}: {exc})",
            public=f"{path.name} does not run on this dataset's rows",
        ) from exc
    return np.asarray(probabilities, dtype=np.float32)


def signature(path: Path) -> Signature:
    """The ONNX file's inputs and outputs as registry entities (dynamic dims are None)."""
    sess = session(path)

    def spec(arg: ort.NodeArg) -> TensorSpec:
        shape = tuple(d if isinstance(d, int) else None for d in arg.shape)
        return TensorSpec(name=arg.name, dtype=_ORT_TYPES.get(arg.type, arg.type), shape=shape)

    return Signature(
        inputs=tuple(spec(a) for a in sess.get_inputs()),
        outputs=tuple(spec(a) for a in sess.get_outputs()),
    )
