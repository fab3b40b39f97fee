"""Shared fixtures: the brokers under test (real ones, over TCP) and per-test settings.

A test runs on the embedded broker (Tansu) unless it (or its module) is marked
``both_brokers``: then it runs once on each broker that ``--brokers`` names (default
both), the second time on Apache Kafka, started from its jars once per session on
first use (``scripts/apache_kafka.py``).
"""

from __future__ import annotations

import uuid
from collections.abc import Iterator

import pytest

from maas.broker import EmbeddedBroker
from producer.kafka import KafkaSettings, Topics
from scripts.apache_kafka import ApacheKafka
from tests.kafka_helpers import Broker

# The fixture modules, for every test module: factories of small ONNX models and registries
# (SQLite, PostgreSQL), and the digits model served by a worker.
pytest_plugins = ["tests.registry_fixtures", "tests.serving_fixtures", "tests.gateway_fixtures"]

BROKERS = ("embedded", "kafka")
# Fixtures that start or reach a broker: a test that uses one is an integration test.
BROKER_FIXTURES = frozenset({"broker", "kafka", "apache_kafka"})


def pytest_addoption(parser: pytest.Parser) -> None:
    parser.addoption(
        "--brokers",
        default=",".join(BROKERS),
        help="brokers for the tests marked both_brokers, comma-separated (default: "
        "embedded,kafka; `--brokers embedded` needs neither Java nor Maven)",
    )


def pytest_generate_tests(metafunc: pytest.Metafunc) -> None:
    if "broker" in metafunc.fixturenames and metafunc.definition.get_closest_marker("both_brokers"):
        chosen = metafunc.config.getoption("--brokers").split(",")
        unknown = set(chosen) - set(BROKERS)
        if unknown:
            raise pytest.UsageError(f"--brokers: unknown {sorted(unknown)}; choose from {BROKERS}")
        metafunc.parametrize("broker", chosen, indirect=True, scope="module")


def pytest_collection_modifyitems(items: list[pytest.Item]) -> None:
    """Mark the tests that need a broker or PostgreSQL, so that the fast tier
    (`make test-unit`) can leave them out without a list kept by hand."""
    for item in items:
        fixtures = set(getattr(item, "fixturenames", ()))
        if fixtures & BROKER_FIXTURES:
            item.add_marker(pytest.mark.broker)
        if fixtures & {"pg_url", "pg_registry"}:
            item.add_marker(pytest.mark.postgres)


@pytest.fixture(scope="session")
def apache_kafka(tmp_path_factory: pytest.TempPathFactory) -> Iterator[ApacheKafka]:
    with ApacheKafka(workdir=tmp_path_factory.mktemp("apache-kafka"), quick_start=True) as running:
        yield running


@pytest.fixture(scope="module")
def broker(request: pytest.FixtureRequest) -> Iterator[Broker]:
    """The module's broker: an embedded one of its own (it starts in milliseconds), or
    the session's Apache Kafka for the ``kafka`` variant of a ``both_brokers`` test."""
    if getattr(request, "param", "embedded") == "kafka":
        yield request.getfixturevalue("apache_kafka")
        return
    with EmbeddedBroker() as embedded:
        yield embedded


@pytest.fixture
def kafka(broker: Broker) -> KafkaSettings:
    """Settings with a topic prefix of their own, so tests never share topics. What the
    broker can do is asked, as every maas process asks it."""
    prefix = f"t{uuid.uuid4().hex[:8]}."
    return KafkaSettings(bootstrap_servers=broker.bootstrap_servers, topics=Topics(prefix))
