"""Kafka plumbing shared by every maas daemon: clients, publishing, topics.

Owns the consumers' start-up and group membership (:mod:`~workers.kafka.clients`),
publishing answers and dead letters with retries (:mod:`~workers.kafka.publisher`),
Kafka's default partitioning of keyed records (:mod:`~workers.kafka.partitioning`),
records aiokafka cannot decode (:mod:`~workers.kafka.unreadable`), which topics exist
and recreating the service's own (:mod:`~workers.kafka.topics`) and the adaptive fetch
wait (:mod:`~workers.kafka.idle`). Every use of aiokafka's private internals lives in
one adapter, :mod:`producer.aiokafka_internals` (in ``producer`` because the broker
capability probe needs it too), so an aiokafka upgrade touches one file.
"""
