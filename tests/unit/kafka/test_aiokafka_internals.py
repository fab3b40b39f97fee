"""What maas takes from aiokafka's internals, without a broker: each name the adapter
(producer.aiokafka_internals) exports still exists and behaves as the code using it
expects. The uses that need a started client are checked on a broker in
tests/integration/test_aiokafka_internals.py."""

from __future__ import annotations

import gzip

from aiokafka import AIOKafkaProducer, TopicPartition

from producer import aiokafka_internals as internals
from workers.kafka.partitioning import partitions_of


async def test_a_producers_batches_are_the_batch_builder_the_publisher_fills() -> None:
    producer = AIOKafkaProducer(bootstrap_servers="127.0.0.1:9")  # never started
    try:
        batch = producer.create_batch()
        assert isinstance(batch, internals.BatchBuilder)
        assert batch.append(key=b"k", value=b"v", timestamp=None, headers=[]) is not None
    finally:
        await producer.stop()


def test_the_default_partitioner_agrees_with_ours() -> None:
    partitioner = internals.DefaultPartitioner()
    partitions = list(range(8))
    keys = [f"job-{i}".encode() for i in range(200)]
    theirs = [partitioner(key, partitions, partitions) for key in keys]
    assert partitions_of(keys, partitions) == theirs


def test_a_fetch_request_names_the_partition_offset_and_bytes() -> None:
    request = internals.fetch_request("t", 3, 42, max_bytes=1000, max_wait_ms=100)
    assert isinstance(request, internals.FetchRequest)
    assert request.API_KEY == 1
    assert request.topics == [("t", [(3, 42, 1000)])]


def test_an_init_producer_id_request_is_the_idempotence_probe() -> None:
    assert internals.init_producer_id_request().API_KEY == 22


def test_varints_are_zigzag_decoded_with_the_next_position() -> None:
    assert internals.decode_varint(b"\x02", 0) == (1, 1)
    assert internals.decode_varint(b"\x00\x01", 1) == (-1, 2)
    assert internals.decode_varint(b"\xac\x02", 0) == (150, 2)


def test_gzip_record_data_is_decompressed() -> None:
    assert internals.gzip_decode(gzip.compress(b"records")) == b"records"
    assert all(callable(decode) for decode in (internals.lz4_decode, internals.snappy_decode))
    assert callable(internals.zstd_decode)


def test_bootstrap_servers_are_split_into_hosts_and_ports() -> None:
    hosts = internals.collect_hosts("a.example:9092,b.example:9093")
    assert {(host, port) for host, port, _ in hosts} == {("a.example", 9092), ("b.example", 9093)}


def test_the_range_assignor_gives_a_member_the_same_partitions_of_each_topic() -> None:
    from aiokafka.coordinator.assignors.abstract import AbstractPartitionAssignor

    assert issubclass(internals.RangePartitionAssignor, AbstractPartitionAssignor)
    assert internals.RangePartitionAssignor.name == "range"


async def test_a_renewed_producer_asks_for_its_id_again_with_fresh_sequence_numbers() -> None:
    producer = AIOKafkaProducer(bootstrap_servers="127.0.0.1:9", transactional_id="t.0")
    try:
        manager = producer._txn_manager
        manager.set_pid_and_epoch(7, 0)  # as the sender does once the broker granted it
        tp = TopicPartition("results", 3)
        manager.increment_sequence_number(tp, 5)
        internals.renew_producer_id(producer)
        assert not manager.has_pid()
        assert manager.sequence_number(tp) == 0
        waiting = manager.wait_for_pid()  # what begin_transaction waits on
        manager.set_pid_and_epoch(7, 1)  # the broker's answer: the epoch bumped
        await waiting
        assert (manager.producer_id, manager.producer_epoch) == (7, 1)
    finally:
        await producer.stop()
