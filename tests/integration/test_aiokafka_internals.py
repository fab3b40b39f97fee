"""What maas takes from aiokafka's internals that needs a started client, on a real
(embedded) broker: the adapter's fetch wait is the one the fetcher sends, closing a
consumer's connections lets it stop, and a bare connection answers the probe's request.
The rest is checked without a broker in tests/unit/kafka/test_aiokafka_internals.py."""

from __future__ import annotations

from aiokafka import AIOKafkaConsumer, TopicPartition

from producer import aiokafka_internals as internals
from producer.kafka import KafkaSettings, ensure_topics


async def started(kafka: KafkaSettings, **options: int) -> AIOKafkaConsumer:
    capabilities = await ensure_topics(kafka)
    consumer = AIOKafkaConsumer(**kafka.consumer(capabilities, None, **options))
    await consumer.start()
    consumer.assign([TopicPartition(kafka.topics.predict, 0)])
    return consumer


async def test_the_fetch_wait_is_read_and_set_on_a_started_consumer(kafka: KafkaSettings) -> None:
    consumer = await started(kafka, fetch_max_wait_ms=123)
    try:
        assert internals.fetch_wait_ms(consumer) == 123
        internals.set_fetch_wait_ms(consumer, 7)
        assert internals.fetch_wait_ms(consumer) == 7
        assert await consumer.getmany(timeout_ms=50) == {}  # fetches go on with it
    finally:
        await consumer.stop()


async def test_a_consumer_whose_connections_are_closed_still_stops(kafka: KafkaSettings) -> None:
    consumer = await started(kafka)
    await internals.close_connections(consumer)
    await consumer.stop()


async def test_a_bare_connection_sends_the_probes_request(kafka: KafkaSettings) -> None:
    [(host, port, _)] = internals.collect_hosts(kafka.bootstrap_servers)
    conn = await internals.create_conn(host, port, **kafka.options.common())
    try:
        response = await conn.send(internals.init_producer_id_request())
        assert isinstance(response.error_code, int)
    finally:
        conn.close()
