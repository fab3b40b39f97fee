"""The librdkafka transport's settings: MAAS_KAFKA_* in librdkafka's names, maas's defaults."""

from __future__ import annotations

import re

import confluent_kafka
import pytest

from producer.capabilities import Capabilities
from producer.contract.tenancy import job_topic_pattern
from producer.kafka import KafkaSettings
from producer.kafka_options import KafkaOptions
from workers.kafka import rdkafka_config
from workers.kafka.rdkafka_consumer import posix_pattern
from workers.kafka.rdkafka_publisher import kafka_error


def settings(options: dict[str, str]) -> KafkaSettings:
    return KafkaSettings("broker:9093", options=KafkaOptions(options))


def test_sasl_scram_maps_to_librdkafkas_names() -> None:
    kafka = settings(
        {
            "security_protocol": "sasl_plaintext",
            "sasl_mechanism": "SCRAM-SHA-512",
            "sasl_plain_username": "maas",
            "sasl_plain_password": "s3cret",
            "request_timeout_ms": "5000",
        }
    )
    config = rdkafka_config.common(kafka)
    assert config["bootstrap.servers"] == "broker:9093"
    assert config["security.protocol"] == "SASL_PLAINTEXT"
    assert config["sasl.mechanism"] == "SCRAM-SHA-512"
    assert (config["sasl.username"], config["sasl.password"]) == ("maas", "s3cret")
    assert config["socket.timeout.ms"] == "5000"
    assert not any(key.startswith(("sasl_", "security_")) for key in config)


def test_a_tls_setting_without_hostname_checks_turns_them_off() -> None:
    with_files = {"security_protocol": "SSL", "ssl_check_hostname": "false"}
    config = rdkafka_config.common(settings(with_files))
    assert config["ssl.endpoint.identification.algorithm"] == "none"
    assert "ssl.endpoint.identification.algorithm" not in rdkafka_config.common(settings({}))


@pytest.mark.parametrize("idempotence", [True, False])
def test_the_clients_take_maas_defaults_and_librdkafka_accepts_them(idempotence: bool) -> None:
    kafka, asked = settings({}), Capabilities(idempotence=idempotence)
    consumer = rdkafka_config.consumer(kafka, asked, "maas-workers", max_poll_records=1000)
    producer = rdkafka_config.producer(
        kafka, asked, batch_bytes=512 * 1024, max_record_bytes=2 << 20
    )
    assert consumer["enable.auto.commit"] is False
    assert consumer["fetch.wait.max.ms"] == (500 if idempotence else 5)  # the embedded broker
    assert producer["enable.idempotence"] is idempotence
    assert producer["partitioner"] == "murmur2_random"  # as aiokafka and Java place keys
    assert producer["message.max.bytes"] == 2 << 20
    # librdkafka refuses a property it does not know, or a bad value, when it is built
    confluent_kafka.Consumer(consumer).close()
    confluent_kafka.Producer(producer).flush(0)


def test_the_job_topic_pattern_reads_the_same_in_posix_syntax() -> None:
    pattern = posix_pattern(job_topic_pattern("maas.", "predict"))
    assert "(?:" not in pattern
    posix_like = re.compile(pattern)
    for topic, wanted in [
        ("maas.predict", True),
        ("maas.acme.predict", True),
        ("maas.acme.results", False),
        ("maas.a.b.predict", False),
        ("xmaas.predict", False),
    ]:
        assert bool(posix_like.match(topic)) is wanted, topic


def test_librdkafkas_errors_become_aiokafkas_with_their_retriable_flag() -> None:
    from aiokafka.errors import KafkaTimeoutError, MessageSizeTooLargeError

    too_large = kafka_error(
        confluent_kafka.KafkaError(confluent_kafka.KafkaError.MSG_SIZE_TOO_LARGE)
    )
    assert isinstance(too_large, MessageSizeTooLargeError)
    assert not too_large.retriable
    timed_out = kafka_error(confluent_kafka.KafkaError(confluent_kafka.KafkaError._MSG_TIMED_OUT))
    assert isinstance(timed_out, KafkaTimeoutError)


def test_a_fenced_or_fatal_transactional_error_stops_the_worker_as_aiokafkas_does() -> None:
    from aiokafka.errors import ProducerFenced

    from workers.kafka.rdkafka_transactions import transaction_error

    def raised(code: int, **flags: bool) -> confluent_kafka.KafkaException:
        return confluent_kafka.KafkaException(confluent_kafka.KafkaError(code, **flags))

    fenced = transaction_error(raised(confluent_kafka.KafkaError._FENCED))
    assert isinstance(fenced, ProducerFenced)
    fatal = transaction_error(raised(confluent_kafka.KafkaError._STATE, fatal=True))
    assert isinstance(fatal, ProducerFenced)
    abortable = transaction_error(
        raised(confluent_kafka.KafkaError._STATE, txn_requires_abort=True)
    )
    assert abortable.retriable and not isinstance(abortable, ProducerFenced)
    assert isinstance(kafka_error(confluent_kafka.KafkaError(90)), ProducerFenced)
