"""Registry events on the control topic: published on every alias move, read by workers."""

from __future__ import annotations

import time

import structlog

from producer.kafka import KafkaSettings
from producer.messages import ControlEvent, encode

log = structlog.get_logger(__name__)


def publish_control(settings: KafkaSettings, event: ControlEvent, *, timeout_s: float = 10.0) -> None:
    """Publish one control event and wait for the ack (kafka-python; for sync callers)."""
    from kafka import KafkaProducer

    if not event.at_ms:
        event = ControlEvent(**{**_fields(event), "at_ms": int(time.time() * 1000)})
    producer = KafkaProducer(**settings.producer(linger_ms=0))
    try:
        future = producer.send(
            settings.topics.control, encode(event), key=event.model.encode()
        )
        future.get(timeout=timeout_s)
    finally:
        producer.close(timeout=timeout_s)
    log.info("control event published", control_event=event.event, model=event.model,
             alias=event.alias, version=event.version)


def _fields(event: ControlEvent) -> dict[str, object]:
    return {name: getattr(event, name) for name in event.__struct_fields__}
