"""Model optimisation: int8 quantisation with ONNX Runtime, measured against the parent
version and registered as a version derived from it (``maas models optimize``).

Modules: :mod:`~workers.optimize.quantize` (the artifact), :mod:`~workers.optimize.rows`
(calibration and evaluation rows), :mod:`~workers.optimize.measure` (quality, size and
speed against the parent), :mod:`~workers.optimize.report` (the figures in words) and
:mod:`~workers.optimize.optimizer` (build, judge, register). Errors::

    OptimizeError          root; ``retriable`` is False
    ├── NotOnnx            the version is not ONNX (e.g. TorchScript)
    ├── NothingToQuantize  no operator the method quantises
    └── DataError          calibration or evaluation rows missing, unreadable or misfit
"""

from workers.optimize.cpu import Int8Settings
from workers.optimize.errors import DataError, NothingToQuantize, NotOnnx, OptimizeError
from workers.optimize.measure import Comparison, MeasureSettings, Quality, Speed
from workers.optimize.optimizer import (
    Candidate,
    Optimized,
    OptimizeSettings,
    Request,
    Verdict,
    VersionStore,
    build,
    judge,
    optimize,
    shortfall,
)
from workers.optimize.quantize import METHOD_NAMES, METHODS, Method, quantize
from workers.optimize.report import from_metrics, summary
from workers.optimize.rows import Rows

__all__ = [
    "METHODS",
    "METHOD_NAMES",
    "Candidate",
    "Comparison",
    "DataError",
    "Int8Settings",
    "MeasureSettings",
    "Method",
    "NotOnnx",
    "NothingToQuantize",
    "OptimizeError",
    "OptimizeSettings",
    "Optimized",
    "Quality",
    "Request",
    "Rows",
    "Speed",
    "Verdict",
    "VersionStore",
    "build",
    "from_metrics",
    "judge",
    "optimize",
    "quantize",
    "shortfall",
    "summary",
]
