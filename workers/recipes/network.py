"""The PyTorch classifier shared by the built-in recipes, and its training loop.

The network is an MLP with its input scaling baked in: it takes raw features and
computes ``(x - shift) / scale`` itself, so the exported ONNX model needs no client-side
preprocessing. It returns softmax ``probabilities`` and the argmax ``label``.
Weights are initialised from an explicit generator (no global RNG state is touched),
so training is reproducible per seed and safe to run beside other work.
"""

from __future__ import annotations

import math
from collections.abc import Callable
from dataclasses import dataclass

import numpy as np
import numpy.typing as npt
import torch
from torch import nn


@dataclass(frozen=True, slots=True)
class FitConfig:
    epochs: int
    lr: float
    batch_size: int
    seed: int


class Classifier(nn.Module):
    """``x`` [N, F] raw features → (``probabilities`` [N, C] float32, ``label`` [N] int64)."""

    shift: torch.Tensor
    scale: torch.Tensor

    def __init__(
        self,
        shift: npt.NDArray[np.float64],
        scale: npt.NDArray[np.float64],
        hidden: int,
        n_classes: int,
        generator: torch.Generator,
    ) -> None:
        super().__init__()
        n_features = int(shift.shape[0])
        self.register_buffer("shift", torch.as_tensor(shift, dtype=torch.float32))
        self.register_buffer("scale", torch.as_tensor(scale, dtype=torch.float32))
        self.hidden = nn.Linear(n_features, hidden)
        self.out = nn.Linear(hidden, n_classes)
        for layer in (self.hidden, self.out):
            _init_linear(layer, generator)

    def logits(self, x: torch.Tensor) -> torch.Tensor:
        h = torch.relu(self.hidden((x - self.shift) / self.scale))
        out: torch.Tensor = self.out(h)
        return out

    def forward(self, x: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        probabilities = torch.softmax(self.logits(x), dim=1)
        return probabilities, torch.argmax(probabilities, dim=1)


def _init_linear(layer: nn.Linear, generator: torch.Generator) -> None:
    """PyTorch's default Linear init, drawn from ``generator``."""
    nn.init.kaiming_uniform_(layer.weight, a=math.sqrt(5), generator=generator)
    bound = 1.0 / math.sqrt(layer.in_features)
    nn.init.uniform_(layer.bias, -bound, bound, generator=generator)


def fit(
    net: Classifier,
    x: npt.NDArray[np.float64],
    y: npt.NDArray[np.int64],
    config: FitConfig,
    on_epoch: Callable[[int], None] | None = None,
    on_step: Callable[[], None] | None = None,
) -> float:
    """Train ``net`` in place with Adam and cross-entropy; return the last epoch's mean loss.

    ``on_step`` is called before every optimiser step: it stops training by raising."""
    inputs = torch.as_tensor(x, dtype=torch.float32)
    targets = torch.as_tensor(y, dtype=torch.int64)
    optimiser = torch.optim.Adam(net.parameters(), lr=config.lr)
    loss_fn = nn.CrossEntropyLoss()
    order = np.random.default_rng(config.seed)
    net.train()
    loss_sum = 0.0
    for epoch in range(config.epochs):
        loss_sum = 0.0
        for batch in np.array_split(order.permutation(len(y)), _n_batches(len(y), config)):
            if on_step is not None:
                on_step()
            index = torch.as_tensor(batch)
            optimiser.zero_grad()
            loss = loss_fn(net.logits(inputs[index]), targets[index])
            loss.backward()
            optimiser.step()
            loss_sum += loss.item() * len(batch)
        if on_epoch is not None:
            on_epoch(epoch + 1)
    net.eval()
    return loss_sum / len(y)


def n_steps(rows: int, config: FitConfig) -> int:
    """The optimiser steps :func:`fit` takes on ``rows`` rows."""
    return config.epochs * _n_batches(rows, config)


def n_parameters(n_features: int, hidden: int, n_classes: int) -> int:
    """The trainable parameters of a :class:`Classifier` of that shape."""
    return (n_features + 1) * hidden + (hidden + 1) * n_classes


def _n_batches(rows: int, config: FitConfig) -> int:
    return max(1, math.ceil(rows / config.batch_size))


def predict(net: Classifier, x: npt.NDArray[np.float32]) -> npt.NDArray[np.float32]:
    """Softmax probabilities from the torch model, in float32."""
    with torch.inference_mode():
        probabilities, _ = net(torch.as_tensor(x))
    out: npt.NDArray[np.float32] = probabilities.numpy()
    return out
