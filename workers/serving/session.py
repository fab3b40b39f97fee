"""What one run of a serving worker serves with, built once its clients are connected.

:meth:`~workers.serving.loop.Worker.run` connects the group member and the producer,
then builds one :class:`Session` from them: the delivery strategy its settings ask for
(:class:`~workers.serving.delivery.AtLeastOnce`, or
:class:`~workers.serving.transactions.ExactlyOnce` when it has a transactional id), the
cluster's topic list and the edge that admits records. The loop is handed the session:
nothing in it is filled in later or may be missing.
"""

from __future__ import annotations

from dataclasses import dataclass

from aiokafka import AIOKafkaConsumer

from workers.kafka.publisher import Publisher
from workers.kafka.topics import ClusterTopics
from workers.serving.delivery import Delivery
from workers.serving.edge import Edge


@dataclass(frozen=True, slots=True)
class Session:
    """The connected clients and what answers through them, for one run of a worker."""

    consumer: AIOKafkaConsumer
    publisher: Publisher
    delivery: Delivery
    topics: ClusterTopics
    edge: Edge
