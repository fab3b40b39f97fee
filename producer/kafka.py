"""Kafka connection settings, topic names and topic creation.

Every component builds its clients from one :class:`KafkaSettings`, made once at the
entrypoint. Security settings (SASL/SSL) come from ``MAAS_KAFKA_*`` environment
variables, e.g. ``MAAS_KAFKA_SECURITY_PROTOCOL=SASL_SSL`` (:mod:`producer.kafka_options`
makes them into options both client libraries take). What the broker can do
(idempotence) is asked once, at start, by :func:`ensure_topics` (every component awaits
it first) or by the first client options built, never configured by hand; so is the
cluster's size, from which :func:`ensure_topics` chooses how many replicas topics get.
"""

from __future__ import annotations

import os
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from typing import Any

import structlog

from producer.capabilities import Capabilities, probe
from producer.contract.tenancy import Namespace
from producer.kafka_options import KafkaOptions

log = structlog.get_logger(__name__)

DEFAULT_BOOTSTRAP = "127.0.0.1:9092"
DEFAULT_PREFIX = "maas."
# How long a component waits at start for its broker to answer.
CONNECT_TIMEOUT_S = 15.0
# How long a client (a person waiting at a prompt) waits when every connection is
# refused at once: nothing listens there, and a broker that is starting listens first.
CLIENT_REFUSED_S = 3.0

_TOPIC_ALREADY_EXISTS = 36
# Topic / cluster authorization failed: the broker's ACLs do not let this principal
# create the topic (a tenant's client); the operator creates it.
_NOT_ALLOWED = frozenset({29, 31})


@dataclass(frozen=True, slots=True)
class Topics:
    """Topic names under a prefix (DESIGN.md: maas.predict, maas.retrain, ...)."""

    prefix: str = DEFAULT_PREFIX

    @property
    def predict(self) -> str:
        return f"{self.prefix}predict"

    @property
    def retrain(self) -> str:
        return f"{self.prefix}retrain"

    @property
    def results(self) -> str:
        return f"{self.prefix}results"

    @property
    def control(self) -> str:
        return f"{self.prefix}control"

    @property
    def dlq(self) -> str:
        return f"{self.prefix}dlq"

    @property
    def capture(self) -> str:
        return f"{self.prefix}capture"

    @property
    def feedback(self) -> str:
        return f"{self.prefix}feedback"

    def namespace(self, tenant: str | None = None) -> Namespace:
        """The topics of ``tenant`` (None: the default tenant, whose topics are the
        ``predict``, ``retrain`` and ``results`` above)."""
        return Namespace(self.prefix, tenant)

    def partitions(self, tenants: Iterable[str] = ()) -> dict[str, int]:
        """Topic → partition count: room for several workers on the hot topics; each of
        ``tenants`` gets its own predict, results and retrain topics, sized alike."""
        counts = {
            self.predict: 8,
            self.results: 8,
            self.retrain: 2,
            self.control: 1,
            self.dlq: 1,
            # The same count for both: one monitor owns both sides of a job_id.
            self.capture: 8,
            self.feedback: 8,
        }
        for tenant in tenants:
            namespace = self.namespace(tenant)
            counts[namespace.predict] = counts[self.predict]
            counts[namespace.results] = counts[self.results]
            counts[namespace.retrain] = counts[self.retrain]
            counts[namespace.capture] = counts[self.capture]
            counts[namespace.feedback] = counts[self.feedback]
        return counts


@dataclass(frozen=True, slots=True)
class Replication:
    """How many copies each partition has, and how many must hold a record before the
    broker acknowledges it to an ``acks=all`` producer (``min.insync.replicas``)."""

    factor: int
    min_insync: int

    @classmethod
    def for_cluster(cls, brokers: int) -> Replication:
        """Three copies where three brokers or more serve, two in sync for a write: one
        broker may die without losing an acknowledged record or refusing writes. A
        smaller cluster: a copy on each broker (one on a single broker)."""
        factor = min(max(brokers, 1), 3)
        return cls(factor=factor, min_insync=max(factor - 1, 1))

    def topic_configs(self) -> dict[str, str]:
        """The topic's settings (none for one copy: the embedded broker takes no others)."""
        return {"min.insync.replicas": str(self.min_insync)} if self.factor > 1 else {}


@dataclass(frozen=True, slots=True)
class KafkaSettings:
    """How to reach the brokers. What they can do (:class:`Capabilities`, asked by
    :func:`detect_capabilities`) is passed to the client options built from them.

    ``embedded`` (MAAS_EMBEDDED_BROKER=1) overrides the broker's answer: treat the broker
    as the embedded one, without idempotence, whatever it says.
    """

    bootstrap_servers: str = DEFAULT_BOOTSTRAP
    topics: Topics = field(default_factory=Topics)
    options: KafkaOptions = field(default_factory=KafkaOptions)
    embedded: bool = False
    client_id: str = "maas"

    @classmethod
    def from_env(
        cls,
        env: Mapping[str, str] | None = None,
        *,
        bootstrap_servers: str | None = None,
        topic_prefix: str | None = None,
        embedded: bool | None = None,
    ) -> KafkaSettings:
        env = os.environ if env is None else env
        return cls(
            bootstrap_servers=bootstrap_servers
            or env.get("MAAS_BOOTSTRAP_SERVERS", DEFAULT_BOOTSTRAP),
            topics=Topics(topic_prefix or env.get("MAAS_TOPIC_PREFIX", DEFAULT_PREFIX)),
            options=KafkaOptions.from_env(env),
            embedded=embedded
            if embedded is not None
            else env.get("MAAS_EMBEDDED_BROKER", "") in {"1", "true"},
        )

    def common(self) -> dict[str, Any]:
        """Options shared by every client, aiokafka and kafka-python alike."""
        return {
            "bootstrap_servers": self.bootstrap_servers,
            "client_id": self.client_id,
            **self.options.common(),
        }

    def producer(self, capabilities: Capabilities, **overrides: Any) -> dict[str, Any]:
        """Producer options: acks=all; idempotence where the broker grants it."""
        options = {**self.common(), "acks": "all", "linger_ms": 2, **self.options.producer()}
        if capabilities.idempotence:
            options["enable_idempotence"] = True
        return {**options, **overrides}

    def consumer(
        self, capabilities: Capabilities, group_id: str | None, **overrides: Any
    ) -> dict[str, Any]:
        """Consumer options: manual commits; timeouts that make group joins fast."""
        options = {
            **self.common(),
            "group_id": group_id,
            "enable_auto_commit": False,
            "auto_offset_reset": "earliest",
            "session_timeout_ms": 6000,
            "heartbeat_interval_ms": 1000,
            "max_poll_interval_ms": 60000,
            # Kafka answers a fetch as soon as data arrives, so its default wait costs no
            # latency; the embedded broker holds it for about half of this wait even when
            # data is there, so keep it short there (workers.kafka.idle lengthens it when idle).
            "fetch_max_wait_ms": 5 if capabilities.holds_fetches else 500,
        }
        return {**options, **overrides}


async def detect_capabilities(
    settings: KafkaSettings,
    *,
    timeout_s: float = CONNECT_TIMEOUT_S,
    refused_s: float | None = None,
) -> Capabilities:
    """Ask the broker what it supports: once, at an entrypoint, which passes the answer on.

    Waits up to ``timeout_s`` for a broker that is still starting (``refused_s``: less,
    once connections have been refused that long); raises
    :class:`~producer.errors.BrokerUnavailable` when none answers.
    """
    answer = await probe(settings.common(), timeout_s=timeout_s, refused_s=refused_s)
    if settings.embedded:
        answer = Capabilities(idempotence=False, refusal="MAAS_EMBEDDED_BROKER")
    if not answer.idempotence:  # the embedded broker's normal: no news, said at debug level
        log.debug(
            "the broker grants no idempotent producer, as the embedded one does not: "
            "producing without idempotence (Apache Kafka grants it)",
            bootstrap_servers=settings.bootstrap_servers,
            broker_answer=answer.refusal,
        )
    return answer


async def ensure_topics(
    settings: KafkaSettings,
    *,
    tenants: Iterable[str] = (),
    timeout_s: float = CONNECT_TIMEOUT_S,
    refused_s: float | None = None,
) -> Capabilities:
    """Wait for the broker (asking what it supports: :func:`detect_capabilities`), then
    create the service's topics (:func:`create_topics`); returns what the broker
    supports, for the caller's clients."""
    capabilities = await detect_capabilities(settings, timeout_s=timeout_s, refused_s=refused_s)
    await create_topics(settings, tenants=tenants)
    return capabilities


async def create_topics(settings: KafkaSettings, *, tenants: Iterable[str] = ()) -> None:
    """Create the service's topics (and those of ``tenants``) with their partition
    counts, replicated as the cluster's size allows (:meth:`Replication.for_cluster`);
    existing ones are kept, and those the broker's ACLs do not let this principal create
    are left to the operator. Does not wait for the broker: :func:`ensure_topics` does."""
    from aiokafka.admin import AIOKafkaAdminClient, NewTopic

    wanted = settings.topics.partitions(tenants)
    admin = AIOKafkaAdminClient(**settings.common())
    try:
        await admin.start()
        existing = set(await admin.list_topics())
        if not wanted.keys() - existing:
            return
        replication = Replication.for_cluster(len((await admin.describe_cluster())["brokers"]))
        missing = [
            NewTopic(name, n, replication.factor, topic_configs=replication.topic_configs())
            for name, n in wanted.items()
            if name not in existing
        ]
        response = await admin.create_topics(missing)
        refused = set()
        for name, code, message in (e[:3] for e in response.topic_errors):
            if code in _NOT_ALLOWED:
                refused.add(name)
            elif code not in (0, _TOPIC_ALREADY_EXISTS):  # another process may win the race
                raise RuntimeError(f"could not create topic {name}: {message} (code {code})")
        if refused:
            log.info(
                "topics not created: this principal may not create them (a tenant's client "
                "on a broker with ACLs; the operator's maas tenants add creates them)",
                topics=sorted(refused),
            )
        created = sorted({t.name for t in missing} - refused)
        if created:
            log.info(
                "topics created",
                topics=created,
                replicas=replication.factor,
                min_insync_replicas=replication.min_insync,
            )
    finally:
        await admin.close()
