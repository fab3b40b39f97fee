"""The ``MAAS_KAFKA_*`` settings and maas's client defaults, in librdkafka's names.

The worker's librdkafka transport (``maas worker --transport librdkafka``) builds its
consumer and producer from the same :class:`~producer.kafka.KafkaSettings` as the
aiokafka one: the security settings (SASL PLAIN/SCRAM, TLS files) map one to one onto
librdkafka's dotted names, and the defaults (manual commits, fast group joins, acks=all,
idempotence where the broker grants it, the short fetch wait the embedded broker needs)
are the ones :meth:`KafkaSettings.consumer` and :meth:`KafkaSettings.producer` give
aiokafka. Keys are partitioned with murmur2 as Java clients and aiokafka do, so a job's
answer and its capture land where every other maas client expects them.
"""

from __future__ import annotations

import logging
from typing import Any

from producer.capabilities import Capabilities
from producer.kafka import KafkaSettings

# MAAS_KAFKA_<option> -> librdkafka's property, for options passed as given.
_NAMES = {
    "security_protocol": "security.protocol",
    "sasl_mechanism": "sasl.mechanism",
    "sasl_plain_username": "sasl.username",
    "sasl_plain_password": "sasl.password",
    "sasl_kerberos_service_name": "sasl.kerberos.service.name",
    "ssl_cafile": "ssl.ca.location",
    "ssl_certfile": "ssl.certificate.location",
    "ssl_keyfile": "ssl.key.location",
    "ssl_password": "ssl.key.password",
    "request_timeout_ms": "socket.timeout.ms",
    "metadata_max_age_ms": "metadata.max.age.ms",
    "connections_max_idle_ms": "connections.max.idle.ms",
}
_FALSE = frozenset({"0", "false", "no", "off"})
# How often a pattern subscription looks for new matching topics (a new tenant's).
PATTERN_REFRESH_MS = 2000


def common(kafka: KafkaSettings) -> dict[str, Any]:
    """What every librdkafka client of ``kafka`` is given: the brokers, the client id
    and the security settings (secrets included: never log the result)."""
    config: dict[str, Any] = {
        "bootstrap.servers": kafka.bootstrap_servers,
        "client.id": kafka.client_id,
        # librdkafka's own log lines (a broker down: one per retry) go to Python logging,
        # not straight to stderr.
        "logger": logging.getLogger("librdkafka"),
    }
    settings = kafka.options.settings
    for option, value in settings.items():
        if option in _NAMES:
            config[_NAMES[option]] = value.upper() if option == "security_protocol" else value
    if settings.get("ssl_check_hostname", "true").lower() in _FALSE:
        config["ssl.endpoint.identification.algorithm"] = "none"
    return config


def consumer(
    kafka: KafkaSettings, capabilities: Capabilities, group: str, *, max_poll_records: int
) -> dict[str, Any]:
    """A group member committing by hand, with the timeouts of aiokafka's."""
    holds_fetches = capabilities.holds_fetches
    return {
        **common(kafka),
        "group.id": group,
        "enable.auto.commit": False,
        "enable.auto.offset.store": False,
        "auto.offset.reset": "earliest",
        "session.timeout.ms": 6000,
        "heartbeat.interval.ms": 1000,
        "max.poll.interval.ms": 60000,
        "topic.metadata.refresh.interval.ms": PATTERN_REFRESH_MS,
        # The embedded broker holds a fetch for about half of this wait, records or not.
        "fetch.wait.max.ms": 5 if holds_fetches else 500,
        # librdkafka pre-fetches in its own thread; keep its queue near a poll's worth.
        "queued.max.messages.kbytes": 16384,
        "queued.min.messages": max(max_poll_records, 1000),
    }


def producer(
    kafka: KafkaSettings,
    capabilities: Capabilities,
    *,
    batch_bytes: int,
    max_record_bytes: int,
) -> dict[str, Any]:
    """acks=all, a short linger, idempotence where the broker grants it, murmur2 keys."""
    max_request = int(kafka.options.settings.get("max_request_size", max_record_bytes))
    return {
        **common(kafka),
        "acks": "all",
        "linger.ms": 2,
        "enable.idempotence": capabilities.idempotence,
        "partitioner": "murmur2_random",
        "batch.size": batch_bytes,
        "message.max.bytes": max(max_request, max_record_bytes),
        # A record that cannot be delivered fails within this, then is retried by maas
        # (or dead-lettered), as an aiokafka send that timed out would be.
        "message.timeout.ms": 30000,
    }
