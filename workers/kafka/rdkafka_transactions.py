"""Kafka transactions on librdkafka, in the shape exactly-once serving drives them.

:class:`~workers.serving.transactions.ExactlyOnce` begins a transaction, sends a cycle's
answers, adds the consumed offsets and commits, through its publisher's ``producer``
(aiokafka's coroutines). :class:`RdkafkaTransactions` is that producer for the librdkafka
transport: the same four coroutines over ``confluent_kafka.Producer``'s blocking calls
(each in a thread). The offsets are sent with the consumer's group metadata, its
generation and member id (KIP-447), so the broker refuses them from a member that the
group has moved on from, not just from a fenced producer. librdkafka's errors become
aiokafka's: a fenced producer ``ProducerFenced``, others a ``KafkaError`` whose
``retriable`` says whether the transaction may be tried again (abortable ones may).
"""

from __future__ import annotations

import asyncio
from collections.abc import Callable, Mapping
from typing import Any, TypeVar

import confluent_kafka
from aiokafka import TopicPartition
from aiokafka.errors import KafkaError, ProducerFenced

from workers.kafka.rdkafka_consumer import RdkafkaConsumer
from workers.kafka.rdkafka_publisher import FENCED

T = TypeVar("T")
TIMEOUT_S = 30.0  # the longest one transactional call waits for the broker


def fenced(error: confluent_kafka.KafkaError) -> bool:
    """Whether ``error`` ends this producer: another took its transactional id, or
    librdkafka's error is fatal (later calls all fail): the worker stops either way."""
    return error.code() in FENCED or error.fatal()


def transaction_error(exc: confluent_kafka.KafkaException) -> KafkaError:
    """librdkafka's transactional failure as aiokafka's."""
    error = exc.args[0] if exc.args else None
    if not isinstance(error, confluent_kafka.KafkaError):
        return KafkaError(str(exc))
    if fenced(error):
        return ProducerFenced()
    failed = KafkaError(error.str())
    failed.retriable = bool(error.retriable() or error.txn_requires_abort())
    return failed


class RdkafkaTransactions:
    """The transactional calls of a librdkafka producer with a ``transactional.id``,
    whose offsets go with ``consumer``'s group metadata."""

    def __init__(self, producer: confluent_kafka.Producer, consumer: RdkafkaConsumer) -> None:
        self._producer, self._consumer = producer, consumer

    async def _call(self, call: Callable[..., T], *args: Any) -> T:
        try:
            return await asyncio.to_thread(call, *args)
        except confluent_kafka.KafkaException as exc:
            raise transaction_error(exc) from exc

    async def init(self) -> None:
        """Fence the predecessor with this transactional id and end its transaction."""
        await self._call(self._producer.init_transactions, TIMEOUT_S)

    async def begin_transaction(self) -> None:
        await self._call(self._producer.begin_transaction)

    async def send_offsets_to_transaction(
        self, offsets: Mapping[TopicPartition, int], group_id: str
    ) -> None:
        """Add ``offsets`` to the transaction for the consumer's group (``group_id`` is
        aiokafka's way of naming it; librdkafka takes the member's metadata)."""
        del group_id  # the metadata names the group, with the member's generation
        wanted = [confluent_kafka.TopicPartition(t, p, o) for (t, p), o in offsets.items()]
        metadata = self._consumer.group_metadata()
        await self._call(self._producer.send_offsets_to_transaction, wanted, metadata, TIMEOUT_S)

    async def commit_transaction(self) -> None:
        await self._call(self._producer.commit_transaction, TIMEOUT_S)

    async def abort_transaction(self) -> None:
        await self._call(self._producer.abort_transaction, TIMEOUT_S)
