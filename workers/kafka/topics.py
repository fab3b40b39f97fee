"""Which topics the cluster has: reply topics are checked against it, and the service's
own topics are created again when the broker lost them.

A job names its ``reply_to``; the worker answers there only when the name is a legal
Kafka topic name and the topic exists (the results topic always qualifies), and
answers ``INVALID_INPUT`` on the results topic otherwise. So a job can neither make
the broker create topics (a metadata request for an unknown topic creates it where
``auto.create.topics.enable`` is on) nor hold a worker up waiting for the metadata of
a topic that never comes. The cluster's topic list is read on demand, by one request
that every waiting job shares, at most every ``min_refresh_s``; and every few seconds
in the background (:func:`keep_service_topics`), which also creates the service's
topics again when they are missing, as after a restart of a broker that keeps its
topics in memory or after someone deleted one: the default tenant's and those of every
tenant that has a topic left (a deleted ``maas.acme.results`` comes back).
"""

from __future__ import annotations

import asyncio
import math
import re
import time
from collections.abc import Iterable

import structlog
from aiokafka import AIOKafkaClient
from aiokafka.errors import KafkaError, KafkaTimeoutError

from producer.contract.tenancy import tenant_of_topic
from producer.kafka import KafkaSettings, ensure_topics

log = structlog.get_logger(__name__)

_LEGAL = re.compile(r"[a-zA-Z0-9._-]{1,249}")


def topic_name_problem(name: str) -> str | None:
    """Why ``name`` is not a legal Kafka topic name, or None when it is."""
    if _LEGAL.fullmatch(name) and name not in (".", ".."):
        return None
    return (
        f"reply_to {name[:80]!r} is not a legal Kafka topic name (1 to 249 characters "
        "of a-z, A-Z, 0-9, '.', '_' and '-'; not '.' or '..')"
    )


class ClusterTopics:
    """The cluster's topic names as last read (``listed``), and those plus ``always``
    (topics maas answers on whatever the list says): ``known``, a frozenset."""

    def __init__(
        self,
        client: AIOKafkaClient,
        *,
        always: Iterable[str] = (),
        min_refresh_s: float = 0.5,
        timeout_s: float = 10.0,
    ) -> None:
        self._client = client
        self._always = frozenset(always)
        self._min_refresh_s = min_refresh_s
        self._timeout_s = timeout_s
        self.listed: frozenset[str] = frozenset()  # what the cluster said, last time
        self.known = self._always
        self._read_at = -math.inf  # when the list was asked for (monotonic s)
        self._reading: asyncio.Future[None] | None = None

    async def refresh(self, since: float) -> None:
        """Make the list one asked for at ``since`` (monotonic s) or later, reading it
        again if it is older: one request at a time, at most one per
        ``min_refresh_s``. Raises KafkaError when the broker does not answer."""
        while self._read_at < since:
            if self._reading is None or self._reading.done():  # none, or one asked too early
                self._reading = asyncio.ensure_future(self._read())
            await asyncio.shield(self._reading)

    async def _read(self) -> None:
        await asyncio.sleep(self._read_at + self._min_refresh_s - time.monotonic())
        asked = time.monotonic()
        try:
            async with asyncio.timeout(self._timeout_s):
                metadata = await self._client.fetch_all_metadata()
        except TimeoutError as exc:
            raise KafkaTimeoutError("the broker did not send its topic list in time") from exc
        self.listed = frozenset(metadata.topics())
        self.known = self._always | self.listed
        self._read_at = asked


def tenants_listed(prefix: str, topics: Iterable[str]) -> list[str]:
    """The tenants that have one of their topics among ``topics``."""
    return sorted({t for t in (tenant_of_topic(prefix, name) for name in topics) if t})


async def keep_service_topics(
    kafka: KafkaSettings, cluster: ClusterTopics, *, interval_s: float
) -> None:
    """Every ``interval_s``: read the topic list, and create the service's topics (the
    default tenant's and every listed tenant's) again if some are missing (a broker
    that lost its storage, a topic deleted). Runs until cancelled."""
    while True:
        await asyncio.sleep(interval_s)
        try:
            await cluster.refresh(time.monotonic())
        except KafkaError:
            continue  # the broker is away: its clients say so, rate-limited
        tenants = tenants_listed(kafka.topics.prefix, cluster.listed)
        missing = sorted(set(kafka.topics.partitions(tenants)) - cluster.listed)
        if not missing:
            continue
        log.warning(
            "service topics missing (deleted, or the broker restarted without its "
            "storage?); creating them again",
            topics=missing,
        )
        try:
            await ensure_topics(kafka, tenants=tenants)
        except (KafkaError, OSError, RuntimeError) as exc:
            log.warning("could not create the service topics; trying again", error=str(exc))
