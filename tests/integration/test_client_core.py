"""The sync and asyncio clients share one core: the same methods, arguments, errors and
lifecycle. Checked side by side, against the real broker where I/O is involved."""

from __future__ import annotations

import inspect
import uuid
from typing import Any

import pytest

from maas.broker import EmbeddedBroker
from producer import AsyncClient, AsyncHandle, Client, ClientError, Handle
from producer.contract.messages import decode_predict
from producer.kafka import KafkaSettings, Topics
from tests.kafka_helpers import read

ROW = {"x": [[0.0] * 64]}


@pytest.fixture
def lonely(broker: EmbeddedBroker) -> KafkaSettings:
    """Topics of their own and no worker: nothing answers."""
    return KafkaSettings(
        bootstrap_servers=broker.bootstrap_servers,
        topics=Topics(f"c{uuid.uuid4().hex[:8]}."),
        embedded=True,
    )


def public_parameters(cls: type) -> dict[str, list[tuple[str, Any, Any]]]:
    """Public method -> its parameters (name, kind, default), annotations aside."""
    return {
        name: [(p.name, p.kind, p.default) for p in inspect.signature(method).parameters.values()]
        for name, method in inspect.getmembers(cls, callable)
        if not name.startswith("_")
    }


@pytest.mark.parametrize(("sync", "aio"), [(Client, AsyncClient), (Handle, AsyncHandle)])
def test_sync_and_async_have_the_same_public_methods_and_arguments(sync: type, aio: type) -> None:
    assert public_parameters(sync) == public_parameters(aio)


def test_unknown_job_options_and_an_unstarted_client_are_refused() -> None:
    client = Client(KafkaSettings(), create_topics=False)
    with pytest.raises(TypeError, match="verison"):
        client.submit("digits", ROW, verison=2)  # type: ignore[call-arg]
    with pytest.raises(RuntimeError, match=r"not started: use `with Client\(...\)`"):
        client.submit("digits", ROW)


async def sent_job_ids(kafka: KafkaSettings, wanted: set[str]) -> set[str]:
    records = await read(
        kafka,
        kafka.topics.predict,
        until=lambda rs: wanted <= {decode_predict(r.value).job_id for r in rs},
    )
    return {decode_predict(r.value).job_id for r in records}


async def test_sync_close_sends_what_was_submitted_fails_the_waiting_and_is_idempotent(
    lonely: KafkaSettings,
) -> None:
    with Client(lonely) as client:
        handle = client.submit("digits", ROW, job_id="left-sync")
    assert client.is_closed and handle.done()
    with pytest.raises(ClientError, match="client closed before job left-sync ended"):
        handle.result(0)
    client.close()
    with pytest.raises(RuntimeError, match="closed"):
        client.submit("digits", ROW)
    assert "left-sync" in await sent_job_ids(lonely, {"left-sync"})


async def test_async_close_sends_what_was_submitted_fails_the_waiting_and_is_idempotent(
    lonely: KafkaSettings,
) -> None:
    async with AsyncClient(lonely) as client:
        handle = await client.submit("digits", ROW, job_id="left-async")
    assert client.is_closed and handle.done()
    with pytest.raises(ClientError, match="client closed before job left-async ended"):
        await handle.result(0)
    await client.close()
    with pytest.raises(RuntimeError, match="closed"):
        await client.submit("digits", ROW)
    assert "left-async" in await sent_job_ids(lonely, {"left-async"})
