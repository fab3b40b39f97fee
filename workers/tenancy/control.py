"""Hot swap: follow the control topic and drop cached aliases the moment one moves."""

from __future__ import annotations

import asyncio
from collections.abc import Callable

import structlog
from aiokafka import AIOKafkaConsumer

from producer.capabilities import Capabilities
from producer.contract.messages import ControlEvent, DecodeError, decode_control
from producer.control import log_fields
from producer.kafka import KafkaSettings
from producer.tail import tail_async

log = structlog.get_logger(__name__)

_CONTROL_WAIT_MS = 200


async def follow_control(
    settings: KafkaSettings,
    capabilities: Capabilities,
    on_event: Callable[[ControlEvent], None],
) -> None:
    """Read control events from now on (no consumer group: every worker sees every event;
    ``capabilities``: what the broker supports, asked by the process at start)."""
    topic = settings.topics.control
    # Control events are rare and a swap within a second is soon enough: a short fetch
    # wait here only burns CPU (an idle worker and the embedded broker spent 17% and
    # 23% of a core answering empty fetches, mostly this consumer's and the job one's).
    consumer = AIOKafkaConsumer(
        **settings.consumer(
            capabilities, None, auto_offset_reset="latest", fetch_max_wait_ms=_CONTROL_WAIT_MS
        )
    )
    await consumer.start()
    try:
        await tail_async(consumer, topic)
        while True:
            batch = await consumer.getmany(timeout_ms=500)
            for records in batch.values():
                for record in records:
                    _dispatch(record.value, on_event)
    except asyncio.CancelledError:
        raise
    finally:
        await consumer.stop()


def _dispatch(raw: bytes | None, on_event: Callable[[ControlEvent], None]) -> None:
    try:
        event = decode_control(raw or b"")
    except DecodeError as exc:
        log.warning("control event ignored", error=str(exc))
        return
    log.info("control event", **log_fields(event))
    on_event(event)


def from_another_registry(event: ControlEvent, registry: str) -> bool:
    """Say (a warning) when ``event`` was published by a command writing to another
    registry than ``registry``, the one this process reads: a model registered there is
    unknown here, and its jobs are answered MODEL_NOT_FOUND. True when it was."""
    if not event.registry or not registry or event.registry == registry or not event.model:
        return False
    log.warning(
        "control event from another registry: its model may be unknown here; point the "
        "command and this process at one registry (MAAS_DATABASE_URL)",
        model=event.model,
        publisher_registry=event.registry,
        this_registry=registry,
    )
    return True
