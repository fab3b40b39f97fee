"""Requests onto Kafka and their answers back: one async SDK client per tenant.

A tenant's requests become OIP records (:mod:`~workers.gateway.records`) on its predict
topic with ``maas-reply-to`` the gateway's own results topic in that namespace
(``maas.results.gateway-<id>``, ``maas.acme.results.gateway-<id>``): workers accept it
(it lies in the tenant's namespace) and the gateway reads only its own answers, OIP
InferenceResponses that the SDK reads as Results. Clients open on a tenant's first
request and stay open; the reply topic is created with them.
"""

from __future__ import annotations

import asyncio
import contextlib
import time
from typing import Any

import msgspec
import structlog
from aiokafka import AIOKafkaConsumer, TopicPartition
from aiokafka.admin import AIOKafkaAdminClient, NewTopic
from aiokafka.errors import KafkaError

from producer.aio import AsyncClient, AsyncHandle
from producer.capabilities import Capabilities
from producer.contract.messages import DecodeError, Result, decode_result
from producer.core import REPLY_READING, Outgoing
from producer.errors import ClientError
from producer.kafka import KafkaSettings, Replication, detect_capabilities, ensure_topics
from producer.oip import is_response, result_of
from workers.gateway.errors import NotFound, TooLarge, Unavailable
from workers.gateway.records import Job, headers_of, shape_in

log = structlog.get_logger(__name__)

REPLY_PARTITIONS = 4
START_TIMEOUT_S = 10.0


def reply_topic(kafka: KafkaSettings, tenant: str | None, gateway_id: str) -> str:
    """The gateway's own results topic in ``tenant``'s namespace."""
    return f"{kafka.topics.namespace(tenant).results}.gateway-{gateway_id}"


class GatewayClient(AsyncClient):
    """The SDK's asyncio client, publishing records the gateway has already written."""

    async def publish(self, job: Job) -> AsyncHandle:
        """Publish ``job``'s OIP record on the tenant's predict topic, keyed by its id; the
        handle settles with the answer, read as a Result."""
        headers = headers_of(job, self.reply_topic)
        outgoing = Outgoing(
            self.topics.predict, job.body.data, job.job_id.encode(), job.job_id, headers
        )
        return await self._send(outgoing)


class Dispatcher:
    """Publishes jobs for any tenant and hands back handles that settle with the Result."""

    def __init__(self, kafka: KafkaSettings, gateway_id: str) -> None:
        self._kafka = kafka
        self.gateway_id = gateway_id
        self._clients: dict[str | None, GatewayClient] = {}
        self._opening: dict[str | None, asyncio.Lock] = {}
        self._known: Capabilities | None = None  # what the broker supports, once asked

    async def submit(self, tenant: str | None, job: Job) -> AsyncHandle:
        """Publish ``job`` on ``tenant``'s predict topic; :class:`Unavailable` when the
        broker cannot take it."""
        client = await self._client(tenant)
        try:
            return await client.publish(job)
        except ClientError as exc:
            if isinstance(exc, ValueError):  # JobTooLarge: more than one record holds
                raise TooLarge(str(exc)) from exc
            raise Unavailable(f"the broker did not take job {job.job_id}: {exc}") from exc
        except KafkaError as exc:
            raise Unavailable(f"the broker did not take job {job.job_id}: {exc}") from exc

    async def _client(self, tenant: str | None) -> GatewayClient:
        client = self._clients.get(tenant)
        if client is not None and not client.is_closed:
            return client
        lock = self._opening.setdefault(tenant, asyncio.Lock())
        async with lock:
            client = self._clients.get(tenant)
            if client is None or client.is_closed:
                client = await self._open(tenant)
                self._clients[tenant] = client
        return client

    async def _open(self, tenant: str | None) -> GatewayClient:
        topic = reply_topic(self._kafka, tenant, self.gateway_id)
        client = GatewayClient(self._kafka, tenant=tenant, reply_topic=topic, create_topics=False)
        try:
            await asyncio.wait_for(self._prepare(tenant, topic), START_TIMEOUT_S)
            await asyncio.wait_for(client.start(), START_TIMEOUT_S)
        except (TimeoutError, OSError, ClientError, KafkaError) as exc:
            await client.close()
            raise Unavailable(
                f"the broker at {self._kafka.bootstrap_servers} cannot be reached: {exc}"
            ) from exc
        log.info("gateway client open", tenant=tenant, reply_topic=topic)
        return client

    async def _prepare(self, tenant: str | None, topic: str) -> None:
        """The tenant's topics and the gateway's reply topic, created where missing."""
        self._known = await ensure_topics(self._kafka, tenants=[tenant] if tenant else [])
        admin = AIOKafkaAdminClient(**self._kafka.common())
        try:
            await admin.start()
            if topic not in set(await admin.list_topics()):
                brokers = len((await admin.describe_cluster())["brokers"])
                copies = Replication.for_cluster(brokers)
                await admin.create_topics(
                    [
                        NewTopic(
                            topic,
                            REPLY_PARTITIONS,
                            copies.factor,
                            topic_configs=copies.topic_configs(),
                        )
                    ]
                )
        finally:
            await admin.close()

    async def find(
        self, tenant: str | None, gateway_id: str, job_id: str, since_s: float
    ) -> Result | None:
        """The Result of ``job_id`` on gateway ``gateway_id``'s reply topic in ``tenant``'s
        namespace, answered within the last ``since_s`` seconds; None if not there (yet).
        Any gateway can so answer a poll for another's job, or its own after a restart:
        the answers live on Kafka."""
        topic = reply_topic(self._kafka, tenant, gateway_id)
        capabilities = await self._capabilities()
        consumer = AIOKafkaConsumer(**self._kafka.consumer(capabilities, None, **REPLY_READING))
        try:
            await asyncio.wait_for(consumer.start(), START_TIMEOUT_S)
            return await asyncio.wait_for(_scan(consumer, topic, job_id, since_s), START_TIMEOUT_S)
        except (TimeoutError, OSError, KafkaError) as exc:
            raise Unavailable(
                f"the broker did not say whether job {job_id} was answered: {exc}"
            ) from exc
        finally:
            await consumer.stop()

    async def _capabilities(self) -> Capabilities:
        """What the broker supports: asked when the first client opens, else here, once."""
        if self._known is None:
            try:
                self._known = await detect_capabilities(self._kafka, timeout_s=START_TIMEOUT_S)
            except OSError as exc:  # BrokerUnavailable, BrokerRefused
                raise Unavailable(str(exc)) from exc
        return self._known

    async def close(self) -> None:
        clients, self._clients = list(self._clients.values()), {}
        for client in clients:
            with contextlib.suppress(Exception):
                await client.close()


async def _scan(
    consumer: AIOKafkaConsumer, topic: str, job_id: str, since_s: float
) -> Result | None:
    """Read ``topic`` from ``since_s`` ago to its end; the Result keyed ``job_id``, if any."""
    if topic not in await consumer.topics():  # also loads the topic's metadata
        raise NotFound(f"no job {job_id!r}: no gateway's reply topic {topic} in this namespace")
    # The topic's partitions: as the metadata knows them, else as every gateway makes them
    # (topics() answers from a fetch of its own, which may not reach the consumer's view).
    ids = sorted(consumer.partitions_for_topic(topic) or range(REPLY_PARTITIONS))
    partitions = [TopicPartition(topic, p) for p in ids]
    consumer.assign(partitions)
    since_ms = int((time.time() - since_s) * 1000)
    starts = await consumer.offsets_for_times({tp: since_ms for tp in partitions})
    ends = await consumer.end_offsets(partitions)
    for tp in partitions:
        found = starts.get(tp)
        consumer.seek(tp, found.offset if found is not None else ends[tp])
    key, answer = job_id.encode(), None
    while await _behind(consumer, ends):
        for records in (await consumer.getmany(timeout_ms=200)).values():
            for record in records:
                if record.key == key:
                    answer = _answer(record) or answer
    return answer


def _answer(record: Any) -> Result | None:
    """An answer record as a Result: an OIP InferenceResponse (its shape header, echoed
    by the worker, as its metadata) or a maas.predict/v1 Result; None if neither."""
    try:
        if not is_response(record.headers):
            return decode_result(record.value or b"")
        result = result_of(record.key, record.value or b"", record.headers)
    except DecodeError:
        return None
    return msgspec.structs.replace(result, metadata=shape_in(record.headers))


async def _behind(consumer: AIOKafkaConsumer, ends: dict[TopicPartition, int]) -> bool:
    for tp, end in ends.items():
        if await consumer.position(tp) < end:
            return True
    return False
