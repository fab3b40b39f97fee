"""Every use of aiokafka's internals, in one module: an aiokafka upgrade touches this file.

maas uses aiokafka's public API (``AIOKafkaProducer``, ``AIOKafkaConsumer``,
``AIOKafkaClient``, ``aiokafka.errors``) everywhere else. What it needs that aiokafka
keeps private or leaves undocumented is here, each with what reaches in and why, and
each checked by a test (``tests/unit/kafka/test_aiokafka_internals.py`` without a
broker, ``tests/integration/test_aiokafka_internals.py`` on one), so that an upgrade
that moves one of them fails a test that names it. aiokafka is pinned below 0.15
(pyproject.toml).

It lives in ``producer/`` rather than ``workers/kafka/`` because the broker
capability probe (:mod:`producer.capabilities`) needs a connection and a request of
aiokafka's own, and ``workers/`` may import ``producer/`` but not the reverse.

- the idle fetch wait (:mod:`workers.kafka.idle`): the consumer's fetcher reads its
  ``fetch_max_wait_ms`` from a private attribute for every fetch request;
- closing a consumer's connections (:mod:`workers.kafka.clients`): aiokafka has no
  public way to end a JoinGroup in flight;
- record batches (:mod:`workers.kafka.publisher`): the type of
  ``AIOKafkaProducer.create_batch()``, which lives in an internal module;
- Kafka's default partitioner (:mod:`workers.kafka.partitioning` must agree with the
  one the producer uses for ``send``);
- a raw Fetch and a varint decoder, and record decompression
  (:mod:`workers.kafka.unreadable`: records aiokafka cannot decode);
- a bare connection and the InitProducerId request (:mod:`producer.capabilities`);
- the range assignor (:mod:`workers.monitor.service`): the monitor's group must give a
  member the same partitions of the capture and the feedback topics;
- a transactional producer's id asked for again (:mod:`workers.serving.transactions`):
  after a topic was refused to a transaction, aiokafka sent that transaction's other
  batches outside it and counted their sequence numbers, which the broker then finds
  out of order in every later transaction of that producer id.
"""

from __future__ import annotations

from aiokafka import AIOKafkaConsumer, AIOKafkaProducer
from aiokafka.codec import gzip_decode, lz4_decode, snappy_decode, zstd_decode
from aiokafka.conn import collect_hosts, create_conn
from aiokafka.coordinator.assignors.range import RangePartitionAssignor
from aiokafka.partitioner import DefaultPartitioner
from aiokafka.producer.message_accumulator import BatchBuilder
from aiokafka.producer.transaction_manager import (
    NO_PRODUCER_EPOCH,
    NO_PRODUCER_ID,
    PidAndEpoch,
    TransactionState,
)
from aiokafka.protocol.fetch import FetchRequest
from aiokafka.protocol.transaction import InitProducerIdRequest
from aiokafka.record.util import decode_varint
from aiokafka.util import create_future

__all__ = [
    "BatchBuilder",
    "DefaultPartitioner",
    "FetchRequest",
    "RangePartitionAssignor",
    "close_connections",
    "collect_hosts",
    "create_conn",
    "decode_varint",
    "fetch_request",
    "fetch_wait_ms",
    "gzip_decode",
    "init_producer_id_request",
    "lz4_decode",
    "renew_producer_id",
    "set_fetch_wait_ms",
    "snappy_decode",
    "zstd_decode",
]


def fetch_wait_ms(consumer: AIOKafkaConsumer) -> int:
    """How long a started ``consumer``'s next fetch asks the broker to wait for data."""
    wait: int = consumer._fetcher._fetch_max_wait_ms
    return wait


def set_fetch_wait_ms(consumer: AIOKafkaConsumer, wait_ms: int) -> None:
    """Make a started ``consumer``'s next fetches ask the broker to wait ``wait_ms``
    (aiokafka takes ``fetch_max_wait_ms`` only when a consumer is built)."""
    consumer._fetcher._fetch_max_wait_ms = wait_ms


async def close_connections(consumer: AIOKafkaConsumer) -> None:
    """Close ``consumer``'s connections: a request in flight (a JoinGroup the broker
    holds) fails, so that a ``stop()`` waiting on it goes on."""
    await consumer._client.close()


def fetch_request(
    topic: str, partition: int, offset: int, *, max_bytes: int, max_wait_ms: int
) -> FetchRequest:
    """A Fetch of one partition from ``offset`` on, up to ``max_bytes``, answered once
    a byte is there or ``max_wait_ms`` passed, read uncommitted: the record batches as
    the broker stores them, nothing decoded."""
    return FetchRequest(max_wait_ms, 1, max_bytes, 0, [(topic, [(partition, offset, max_bytes)])])


def init_producer_id_request(timeout_ms: int = 60_000) -> InitProducerIdRequest:
    """An InitProducerId without a transactional id: granted where the broker has
    idempotent producers."""
    return InitProducerIdRequest(None, timeout_ms)


def renew_producer_id(producer: AIOKafkaProducer) -> None:
    """Make a transactional ``producer``, between two transactions, ask for its producer
    id again: the broker bumps its epoch and every partition's sequence numbers start
    over (Kafka's producer does so itself after such errors; aiokafka does not).
    ``begin_transaction`` waits for the new id."""
    manager = producer._txn_manager
    manager._pid_and_epoch = PidAndEpoch(NO_PRODUCER_ID, NO_PRODUCER_EPOCH)
    manager._pid_waiter = create_future()
    manager._sequence_numbers.clear()
    manager.state = TransactionState.UNINITIALIZED
    manager.notify_task_waiter()  # the sender asks for the id before anything else
