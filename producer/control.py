"""Registry events on the control topic: published on every alias move and tenant change,
read by workers
(``workers/tenancy/control.py`` follows the topic with :func:`producer.tail.tail_async`)."""

from __future__ import annotations

import socket
import time
from collections.abc import Callable
from typing import Protocol

import msgspec
import structlog

from producer.capabilities import run_blocking
from producer.contract.messages import ControlEvent, encode
from producer.kafka import KafkaSettings, detect_capabilities

log = structlog.get_logger(__name__)


class AliasMoveLike(Protocol):
    """What the registry's ``AliasMove`` carries (the producer side does not import it)."""

    @property
    def model(self) -> str: ...
    @property
    def alias(self) -> str: ...
    @property
    def version(self) -> int: ...
    @property
    def previous_version(self) -> int | None: ...
    @property
    def kind(self) -> str: ...
    @property
    def actor(self) -> str: ...
    @property
    def reason(self) -> str: ...


def publish_control(
    settings: KafkaSettings, event: ControlEvent, *, timeout_s: float = 10.0
) -> None:
    """Publish one control event and wait for the ack (kafka-python; for sync callers).
    An entrypoint of its own: it asks the broker what it supports before it produces."""
    from kafka import KafkaProducer

    _check_reachable(settings.bootstrap_servers, timeout_s)
    capabilities = run_blocking(lambda: detect_capabilities(settings))
    if not event.at_ms:
        event = msgspec.structs.replace(event, at_ms=int(time.time() * 1000))
    producer = KafkaProducer(
        **settings.producer(capabilities, linger_ms=0),
        max_block_ms=int(timeout_s * 1000),
    )
    try:
        key = (event.tenant or event.model).encode()
        future = producer.send(settings.topics.control, encode(event), key=key)
        future.get(timeout=timeout_s)
    finally:
        producer.close(timeout=timeout_s)
    # the command prints what it did; its log says it again only when asked (--log-level debug)
    log.debug("control event published", **log_fields(event))


def announce_tenant(settings: KafkaSettings, tenant: str, change: str, *, actor: str) -> None:
    """Tell the workers that ``tenant`` changed (``change``: added, granted, revoked,
    removed), so that they read its grants again without a restart."""
    event = ControlEvent(event="tenant", tenant=tenant, actor=actor, reason=change)
    publish_control(settings, event, timeout_s=5.0)


def log_fields(event: ControlEvent) -> dict[str, object]:
    """How logs name a control event, on the publishing and the following side."""
    return {
        "control_event": event.event,
        "model": event.model,
        "alias": event.alias,
        "version": event.version,
        "tenant": event.tenant,
    }


def _check_reachable(bootstrap_servers: str, timeout_s: float) -> None:
    """Fail fast when no bootstrap server accepts a connection.

    kafka-python would otherwise block for ``max_block_ms`` and leak its sockets.
    """
    for address in bootstrap_servers.split(","):
        host, _, port = address.strip().rpartition(":")
        try:
            with socket.create_connection((host.strip("[]") or "localhost", int(port)), timeout_s):
                return
        except (OSError, ValueError):
            continue
    raise ConnectionError(f"no Kafka broker accepts connections at {bootstrap_servers}")


def alias_move_publisher(
    settings: KafkaSettings, registry: str | None = None
) -> Callable[[AliasMoveLike], None]:
    """A registry hook that announces alias moves on the control topic, naming the
    ``registry`` they were made in (its ``RegistrySettings.identity``).

    Best effort: the registry change is already committed, and workers also re-read
    aliases after a few seconds, so an unreachable broker only delays the swap.
    """

    def publish(move: AliasMoveLike) -> None:
        event = ControlEvent(
            event="rollback" if move.kind == "rollback" else "promote",
            model=move.model,
            alias=move.alias,
            version=move.version,
            previous_version=move.previous_version,
            actor=move.actor,
            reason=move.reason,
            registry=registry,
        )
        try:
            publish_control(settings, event, timeout_s=5.0)
        except Exception as exc:
            log.warning(
                "control event not published; workers pick up the move within seconds",
                bootstrap_servers=settings.bootstrap_servers,
                error=str(exc),
            )

    return publish
