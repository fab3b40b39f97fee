"""Starting and stopping the serving worker's librdkafka clients.

:func:`connected_rdkafka` is :func:`workers.kafka.clients.connected` for the librdkafka
transport (``maas worker --transport librdkafka``): the service's topics created first,
a producer (:class:`~workers.kafka.rdkafka_publisher.RdkafkaPublisher`) and a group
member (:class:`~workers.kafka.rdkafka_consumer.RdkafkaConsumer`) built from the same
settings, a stop signal honoured during start-up, and both closed on the way out,
the consumer first (it leaves the group, committing on revocation). The cluster's topic
list is read through a small aiokafka client (metadata only, every few seconds).
"""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from typing import cast

from aiokafka import AIOKafkaClient, AIOKafkaConsumer

from producer.capabilities import Capabilities
from producer.kafka import KafkaSettings
from workers.kafka import rdkafka_config
from workers.kafka.clients import Clients, unless_stopped
from workers.kafka.publisher import Publisher, PublishSettings
from workers.kafka.rdkafka_consumer import RdkafkaConsumer
from workers.kafka.rdkafka_publisher import RdkafkaPublisher
from workers.kafka.rdkafka_transactions import RdkafkaTransactions


def rdkafka_clients(
    kafka: KafkaSettings, capabilities: Capabilities, clients: Clients
) -> tuple[RdkafkaConsumer, RdkafkaPublisher]:
    """The (unstarted) consumer and publisher that ``clients`` describes."""
    max_records = int(clients.consumer_options.get("max_poll_records", 1000))
    consumer = RdkafkaConsumer(
        rdkafka_config.consumer(kafka, capabilities, clients.group, max_poll_records=max_records),
        clients.topic,
        listener=clients.listener,
        max_records=max_records,
    )
    config = rdkafka_config.producer(
        kafka,
        capabilities,
        batch_bytes=clients.batch_bytes,
        max_record_bytes=clients.max_record_bytes,
    )
    if clients.transactional_id is not None:
        config["transactional.id"] = clients.transactional_id
    publisher = RdkafkaPublisher(
        config,
        PublishSettings(
            dlq_topic=kafka.topics.dlq,
            batch_bytes=clients.batch_bytes,
            max_record_bytes=clients.max_record_bytes,
        ),
        AIOKafkaClient(**kafka.common()),
    )
    return consumer, publisher


@asynccontextmanager
async def connected_rdkafka(
    kafka: KafkaSettings,
    capabilities: Capabilities,
    clients: Clients,
    *,
    stop: asyncio.Event | None = None,
) -> AsyncIterator[tuple[AIOKafkaConsumer, Publisher]]:
    """The started librdkafka consumer and publisher of ``clients``; with a
    transactional id, the publisher's transactions are initialised first. The consumer is typed as aiokafka's: it has the
    part of that interface the serving loop uses (see its module)."""
    consumer, publisher = rdkafka_clients(kafka, capabilities, clients)
    try:
        await unless_stopped(publisher.client.bootstrap(), stop)
        publisher.start()
        if clients.transactional_id is not None:  # fences the predecessor, as aiokafka's
            transactions = RdkafkaTransactions(publisher.rdkafka, consumer)
            await unless_stopped(transactions.init(), stop)
            publisher.transactions = transactions
        await consumer.start()
        yield cast(AIOKafkaConsumer, consumer), publisher
    finally:
        await consumer.stop()
        await publisher.close()
        await publisher.client.close()
