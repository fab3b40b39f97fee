"""Fixtures for registry tests: ONNX models built in code, SQLite and PostgreSQL registries.

tests/conftest.py loads them for every test module (through ``pytest_plugins``; tests do
not import this module, so pytest can rewrite its asserts).

PostgreSQL tests get a database of their own (random name, dropped afterwards), so
they never see another test run's rows on a shared server.
"""

from __future__ import annotations

import os
import uuid
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from pathlib import Path

import numpy as np
import onnx
import pytest
from onnx import TensorProto, helper, numpy_helper
from sqlalchemy import create_engine, text

from registry import Registry, RegistrySettings

PG_ADMIN_URL = os.environ.get(
    "MAAS_TEST_POSTGRES_URL", "postgresql+psycopg://postgres@127.0.0.1:5432/test"
)

MakeOnnx = Callable[..., Path]


def build_onnx(path: Path, *, features: int = 4, classes: int = 3, seed: int = 0) -> Path:
    """A tiny classifier: x[batch, features] -> probabilities[batch, classes]."""
    weights = np.random.default_rng(seed).normal(size=(features, classes)).astype(np.float32)
    graph = helper.make_graph(
        [
            helper.make_node("MatMul", ["x", "W"], ["logits"]),
            helper.make_node("Softmax", ["logits"], ["probabilities"], axis=-1),
        ],
        "tiny",
        [helper.make_tensor_value_info("x", TensorProto.FLOAT, ["batch", features])],
        [helper.make_tensor_value_info("probabilities", TensorProto.FLOAT, ["batch", classes])],
        initializer=[numpy_helper.from_array(weights, name="W")],
    )
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", 17)], ir_version=8)
    onnx.checker.check_model(model)
    path.parent.mkdir(parents=True, exist_ok=True)
    onnx.save(model, str(path))
    return path


@pytest.fixture
def make_onnx(tmp_path: Path) -> MakeOnnx:
    """Factory: ``make_onnx(seed=1)`` writes a distinct small ONNX model and returns its path."""
    counter = iter(range(1_000_000))

    def make(*, seed: int | None = None, **kwargs: int) -> Path:
        n = next(counter)
        return build_onnx(
            tmp_path / "src" / f"m{n}" / "model.onnx", seed=n if seed is None else seed, **kwargs
        )

    return make


def sqlite_settings(root: Path) -> RegistrySettings:
    return RegistrySettings(
        database_url=f"sqlite:///{root / 'registry.db'}", artifact_dir=root / "artifacts"
    )


@contextmanager
def postgres_database() -> Iterator[str]:
    """A fresh PostgreSQL database for one test; yields its URL and drops it afterwards."""
    name = f"maas_test_{uuid.uuid4().hex[:12]}"
    admin = create_engine(PG_ADMIN_URL, isolation_level="AUTOCOMMIT")
    try:
        with admin.connect() as connection:
            connection.execute(text(f'CREATE DATABASE "{name}"'))
        yield PG_ADMIN_URL.rsplit("/", 1)[0] + f"/{name}"
    finally:
        with admin.connect() as connection:
            connection.execute(text(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)'))
        admin.dispose()


@pytest.fixture
def registry_settings(tmp_path: Path) -> RegistrySettings:
    """Settings for a SQLite registry and an artifact directory in ``tmp_path``."""
    return sqlite_settings(tmp_path / "registry")


@pytest.fixture
def registry(registry_settings: RegistrySettings) -> Iterator[Registry]:
    """The SQLite registry, open: its ``models``, ``runs`` and ``metrics`` stores."""
    with Registry.open(registry_settings) as opened:
        yield opened


@pytest.fixture(params=["sqlite", pytest.param("postgres", marks=pytest.mark.postgres)])
def any_registry(request: pytest.FixtureRequest) -> Registry:
    """The registry on SQLite, and again on PostgreSQL (tests marked ``postgres``)."""
    registry: Registry = request.getfixturevalue(
        "registry" if request.param == "sqlite" else "pg_registry"
    )
    return registry


@pytest.fixture
def pg_url() -> Iterator[str]:
    with postgres_database() as url:
        yield url


@pytest.fixture
def pg_registry(pg_url: str, tmp_path: Path) -> Iterator[Registry]:
    """A registry on a PostgreSQL database of its own, open."""
    settings = RegistrySettings(database_url=pg_url, artifact_dir=tmp_path / "artifacts")
    with Registry.open(settings) as opened:
        yield opened
