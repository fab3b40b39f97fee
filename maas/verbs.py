"""Every verb of ``maas``: the module that registers it, its line in ``maas --help``, and
the install extra it needs.

``maas --help`` lists the verbs from this table alone, importing none of their modules
(the worker's pulls in numpy, ONNX Runtime, the Kafka clients, SQLAlchemy); a verb's
module is imported only when that verb runs or its own help is asked for. Each summary
is the one its module registers, word for word (tests/e2e/test_cli_lazy.py holds them
to it).
"""

from __future__ import annotations

import importlib.util
from typing import NamedTuple

from maas.extras import EXTRA_OF


class Verb(NamedTuple):
    module: str  # exposes register(subparsers)
    summary: str
    extra: str | None = None  # the install extra it needs; None: the client's install


VERBS = {
    "broker": Verb(
        "maas.commands.broker", "run the embedded broker (Tansu, in memory) until Ctrl-C"
    ),
    "up": Verb(
        "maas.commands.stack",
        "run the embedded stack: broker, registry, demo model, worker, trainer",
    ),
    "worker": Verb(
        "maas.commands.serve", "serve prediction jobs (consume, batch, infer, reply)", "worker"
    ),
    "models": Verb("maas.commands.models", "register, list, promote and roll back model versions"),
    "tenants": Verb(
        "maas.commands.tenants", "add, list, grant, revoke and remove tenants", "worker"
    ),
    "trainer": Verb("maas.commands.schedule", "training worker for the retrain topic", "train"),
    "scheduler": Verb(
        "maas.commands.schedule",
        "fire schedules stored in the registry (and the metric trigger)",
        "worker",
    ),
    "schedule": Verb(
        "maas.commands.schedule", "add, list and remove retraining schedules", "worker"
    ),
    "runs": Verb("maas.commands.runs", "list retraining runs, cancel a running one", "worker"),
    "submit": Verb(
        "maas.commands.client", "publish one prediction job and print its Result as JSON"
    ),
    "score": Verb(
        "maas.commands.client", "batch-score a JSONL, CSV or Parquet file into JSONL, resumably"
    ),
    "retrain": Verb("maas.commands.client", "publish a retrain job and wait for the answer"),
    "db": Verb("maas.commands.db", "registry database: apply the migrations", "worker"),
    "feedback": Verb(
        "maas.commands.feedback",
        "send the ground truth for answered jobs (one label, or a CSV file)",
    ),
    "monitor": Verb(
        "maas.commands.monitor",
        "join captured answers with feedback: labelled quality per version",
        "worker",
    ),
    "gateway": Verb(
        "maas.commands.gateway",
        "serve the Open Inference Protocol (V2) over HTTP and gRPC",
        "worker",
    ),
}
# An extra that installs another's modules too (pyproject.toml: train = maas[worker] + torch).
_INCLUDES = {"train": ("worker",)}


def missing(extra: str | None) -> bool:
    """Whether a module of ``extra`` is not installed: looked for, not imported."""
    if extra is None:
        return False
    wanted = {extra, *_INCLUDES.get(extra, ())}
    return any(_absent(module) for module, of in EXTRA_OF.items() if of in wanted)


def _absent(module: str) -> bool:
    try:
        return importlib.util.find_spec(module) is None
    except (ImportError, ValueError):
        return True
