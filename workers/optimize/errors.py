"""Why a version could not be optimised; every message says what to do instead.

OptimizeError          root; ``retriable`` is False: the same input fails the same way
├── NotOnnx            the version is not an ONNX model (e.g. TorchScript)
├── NothingToQuantize  the graph has no operator the method quantises
└── DataError          calibration or evaluation rows are missing, unreadable or do
                       not fit the model's inputs
"""

from __future__ import annotations


class OptimizeError(Exception):
    """Root of every optimisation failure; nothing was registered when it is raised."""

    retriable = False


class NotOnnx(OptimizeError):
    """Only ONNX versions can be quantised by ONNX Runtime."""


class NothingToQuantize(OptimizeError):
    """Quantising changed no operator: the model would be the same, only renamed."""


class DataError(OptimizeError):
    """Rows to calibrate or measure with are missing, unreadable or shaped wrongly."""
