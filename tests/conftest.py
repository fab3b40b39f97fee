"""Shared fixtures: one real embedded broker (Tansu over TCP) per test session."""

from __future__ import annotations

import uuid
from collections.abc import Iterator

import pytest

from maas.broker import EmbeddedBroker
from producer.kafka import KafkaSettings, Topics


@pytest.fixture(scope="session")
def broker() -> Iterator[EmbeddedBroker]:
    with EmbeddedBroker() as running:
        yield running


@pytest.fixture
def kafka(broker: EmbeddedBroker) -> KafkaSettings:
    """Settings with a topic prefix of their own, so tests never share topics."""
    prefix = f"t{uuid.uuid4().hex[:8]}."
    return KafkaSettings(
        bootstrap_servers=broker.bootstrap_servers, topics=Topics(prefix), embedded=True
    )
