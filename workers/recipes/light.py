"""A torch-free MLP classifier: trained with numpy, written to ONNX with ``onnx.helper``.

``maas up``'s demo model is trained with this, so that the embedded demo needs neither
torch nor its CUDA libraries (the ``train`` extra); the trainer's recipes keep PyTorch.
The network is the one the recipes train (:mod:`workers.recipes.network`): the input
scaling baked in, one ReLU hidden layer, softmax ``probabilities`` and argmax ``label``,
the same ONNX inputs and outputs, so a retrained version can replace it.
Weights come from an explicit seed (no global RNG state), so training is reproducible.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import numpy.typing as npt

from workers.recipes.base import ParityError
from workers.recipes.export import OPSET, PARITY_ATOL, Names, session

Floats = npt.NDArray[np.float32]


@dataclass(frozen=True, slots=True)
class LightConfig:
    """How to train: passes, Adam's learning rate, rows per step, hidden width, seed."""

    epochs: int = 30
    lr: float = 3e-3
    batch_size: int = 64
    hidden: int = 128
    seed: int = 0


@dataclass(frozen=True, slots=True)
class LightMLP:
    """``x`` [N, F] raw features → ``probabilities`` [N, C] float32 and ``label`` [N]."""

    shift: Floats
    scale: Floats
    w1: Floats
    b1: Floats
    w2: Floats
    b2: Floats

    def logits(self, x: Floats) -> Floats:
        hidden = np.maximum(((x - self.shift) / self.scale) @ self.w1 + self.b1, 0.0)
        out: Floats = hidden @ self.w2 + self.b2
        return out

    def probabilities(self, x: npt.NDArray[np.floating]) -> Floats:
        return _softmax(self.logits(np.asarray(x, dtype=np.float32)))


def _softmax(logits: Floats) -> Floats:
    shifted = np.exp(logits - logits.max(axis=1, keepdims=True))
    out: Floats = shifted / shifted.sum(axis=1, keepdims=True)
    return out


def _uniform(rng: np.random.Generator, fan_in: int, shape: tuple[int, ...]) -> Floats:
    """PyTorch's default Linear init: U(-1/sqrt(fan_in), 1/sqrt(fan_in))."""
    bound = 1.0 / np.sqrt(fan_in)
    return rng.uniform(-bound, bound, size=shape).astype(np.float32)


def fit(
    x: npt.NDArray[np.float64],
    y: npt.NDArray[np.int64],
    n_classes: int,
    scaling: tuple[npt.NDArray[np.float64], npt.NDArray[np.float64]],
    config: LightConfig,
) -> tuple[LightMLP, float]:
    """Train with Adam on the mean cross-entropy; the model and the last epoch's loss."""
    rng = np.random.default_rng(config.seed)
    n_features = x.shape[1]
    params = [
        _uniform(rng, n_features, (n_features, config.hidden)),
        _uniform(rng, n_features, (config.hidden,)),
        _uniform(rng, config.hidden, (config.hidden, n_classes)),
        _uniform(rng, config.hidden, (n_classes,)),
    ]
    adam = _Adam(params, config.lr)
    shift, scale = (np.asarray(s, dtype=np.float32) for s in scaling)
    inputs = (x.astype(np.float32) - shift) / scale
    loss = 0.0
    for _ in range(config.epochs):
        loss = 0.0
        batches = max(1, -(-len(y) // config.batch_size))
        for rows in np.array_split(rng.permutation(len(y)), batches):
            batch_loss, grads = _gradients(params, inputs[rows], y[rows])
            adam.step(grads)
            loss += batch_loss * len(rows)
    return LightMLP(shift, scale, *params), loss / max(len(y), 1)


def _gradients(
    params: list[Floats], x: Floats, y: npt.NDArray[np.int64]
) -> tuple[float, list[Floats]]:
    """Mean cross-entropy of one batch and its gradients, by hand (two layers)."""
    w1, b1, w2, b2 = params
    pre = x @ w1 + b1
    hidden = np.maximum(pre, 0.0)
    probabilities = _softmax(hidden @ w2 + b2)
    rows = np.arange(len(y))
    loss = float(-np.mean(np.log(np.clip(probabilities[rows, y], 1e-12, 1.0))))
    d_logits = probabilities
    d_logits[rows, y] -= 1.0
    d_logits /= len(y)
    d_hidden = (d_logits @ w2.T) * (pre > 0)
    grads = [x.T @ d_hidden, d_hidden.sum(axis=0), hidden.T @ d_logits, d_logits.sum(axis=0)]
    return loss, [g.astype(np.float32) for g in grads]


class _Adam:
    """Adam (PyTorch's defaults: betas 0.9 and 0.999, eps 1e-8), updating in place."""

    def __init__(self, params: list[Floats], lr: float) -> None:
        self.params, self.lr, self.t = params, lr, 0
        self.m = [np.zeros_like(p) for p in params]
        self.v = [np.zeros_like(p) for p in params]

    def step(self, grads: list[Floats]) -> None:
        self.t += 1
        for p, g, m, v in zip(self.params, grads, self.m, self.v, strict=True):
            m *= 0.9
            m += 0.1 * g
            v *= 0.999
            v += 0.001 * g * g
            m_hat = m / (1 - 0.9**self.t)
            v_hat = v / (1 - 0.999**self.t)
            p -= (self.lr * m_hat / (np.sqrt(v_hat) + 1e-8)).astype(np.float32)


def export_onnx(
    net: LightMLP, path: Path, metadata: Mapping[str, str], names: Names | None = None
) -> None:
    """Write ``net`` to ``path`` as an ONNX graph: input [batch, F], outputs
    probabilities [batch, C] and label [batch], under ``names``."""
    import onnx
    from onnx import TensorProto, helper, numpy_helper

    names = names or Names()
    consts = {"shift": net.shift, "scale": net.scale, "w1": net.w1, "b1": net.b1}
    consts |= {"w2": net.w2, "b2": net.b2}
    nodes = [
        helper.make_node("Sub", [names.input, "shift"], ["centred"]),
        helper.make_node("Div", ["centred", "scale"], ["scaled"]),
        helper.make_node("MatMul", ["scaled", "w1"], ["h0"]),
        helper.make_node("Add", ["h0", "b1"], ["h1"]),
        helper.make_node("Relu", ["h1"], ["h2"]),
        helper.make_node("MatMul", ["h2", "w2"], ["z0"]),
        helper.make_node("Add", ["z0", "b2"], ["logits"]),
        helper.make_node("Softmax", ["logits"], [names.probabilities], axis=1),
        helper.make_node("ArgMax", [names.probabilities], [names.label], axis=1, keepdims=0),
    ]
    n_features, n_classes = net.w1.shape[0], net.w2.shape[1]
    graph = helper.make_graph(
        nodes,
        "maas_mlp",
        [helper.make_tensor_value_info(names.input, TensorProto.FLOAT, ["batch", n_features])],
        [
            helper.make_tensor_value_info(
                names.probabilities, TensorProto.FLOAT, ["batch", n_classes]
            ),
            helper.make_tensor_value_info(names.label, TensorProto.INT64, ["batch"]),
        ],
        initializer=[numpy_helper.from_array(v, name=k) for k, v in consts.items()],
    )
    model = helper.make_model(
        graph, opset_imports=[helper.make_opsetid("", OPSET)], producer_name="maas"
    )
    model.ir_version = 8  # what onnxruntime 1.20+ reads
    helper.set_model_props(model, dict(metadata))
    onnx.checker.check_model(model)
    onnx.save(model, str(path))


def check_parity(net: LightMLP, path: Path, x: Floats, atol: float = PARITY_ATOL) -> float:
    """Run ``x`` through numpy and onnxruntime; the max abs diff of the probabilities.

    Raises :class:`ParityError` when it exceeds ``atol`` or any label differs."""
    expected = net.probabilities(x)
    runner = session(path)
    got, label = runner.run(None, {runner.get_inputs()[0].name: x})
    diff = float(np.max(np.abs(np.asarray(got) - expected))) if len(x) else 0.0
    if not diff <= atol or np.any(np.asarray(label) != expected.argmax(axis=1)):
        raise ParityError(
            f"ONNX export of {path.name} differs from the numpy model (max abs diff of "
            f"probabilities {diff:.3g}, atol {atol:g}); the model was not registered"
        )
    return diff
