"""The contract is enough: plain aiokafka, and a plain Java client, get a Result."""

from __future__ import annotations

import json
import os
import subprocess
from pathlib import Path
from typing import TYPE_CHECKING

import pytest
from aiokafka import AIOKafkaConsumer, AIOKafkaProducer, TopicPartition

from maas.broker import EmbeddedBroker
from scripts.apache_kafka import fetch_jars

if TYPE_CHECKING:
    from tests.kafka_helpers import Broker
    from tests.serving_fixtures import ServedDigits

pytestmark = pytest.mark.both_brokers


async def test_a_hand_written_json_job_gets_a_result(served_digits: ServedDigits) -> None:
    bootstrap = served_digits.kafka.bootstrap_servers
    prefix = served_digits.kafka.topics.prefix
    replies = f"{prefix}results"
    consumer = AIOKafkaConsumer(bootstrap_servers=bootstrap, auto_offset_reset="latest")
    producer = AIOKafkaProducer(bootstrap_servers=bootstrap)
    await consumer.start()
    await producer.start()
    try:
        partitions = [TopicPartition(replies, p) for p in await producer.partitions_for(replies)]
        consumer.assign(partitions)
        await consumer.seek_to_end(*partitions)
        for tp in partitions:
            await consumer.position(tp)
        job = {
            "schema": "maas.predict/v1",
            "job_id": "interop-1",
            "model": "digits",
            "version": None,
            "alias": "production",
            "inputs": {"x": [[0.0] * 64, [16.0] * 64]},
            "reply_to": replies,
            "deadline_ms": None,
            "priority": 0,
            "metadata": {"caller": "plain-aiokafka"},
        }
        await producer.send_and_wait(f"{prefix}predict", json.dumps(job).encode(), key=b"interop-1")
        result = None
        while result is None:
            batch = await consumer.getmany(timeout_ms=30_000)
            assert batch, "no record on the reply topic within 30 s"
            for record in (r for records in batch.values() for r in records):
                if record.key == b"interop-1":
                    result = json.loads(record.value or b"")
    finally:
        await producer.stop()
        await consumer.stop()
    assert result["schema"] == "maas.result/v1"
    assert (result["job_id"], result["status"], result["error"]) == ("interop-1", "ok", None)
    assert result["version"] == served_digits.version
    assert result["metadata"] == {"caller": "plain-aiokafka"}
    assert len(result["outputs"]["probabilities"]) == len(result["outputs"]["label"]) == 2


# What the JVM client needs of Kafka's jars (no compression codecs: the job is tiny).
_JVM_JARS = (
    "kafka-clients",
    "slf4j-api",
    "jackson-databind",
    "jackson-core",
    "jackson-annotations",
)
_JVM_CLIENT = Path(__file__).parent / "interop" / "PredictClient.java"


@pytest.fixture(scope="module")
def java_client(broker: Broker, tmp_path_factory: pytest.TempPathFactory) -> list[str]:
    """The command that runs PredictClient.java, compiled against Apache's kafka-clients
    and Jackson from the jars of the session's Apache Kafka, in a small JVM."""
    if isinstance(broker, EmbeddedBroker):
        pytest.skip(
            "kafka-clients 4.4 cannot talk to the embedded broker: Tansu drops a connection "
            "whose ApiVersions request (v5) carries a cluster id; kafka-clients 4.3 works"
        )
    libs = fetch_jars()
    classpath = [str(next(libs.glob(f"{name}-[0-9]*.jar"))) for name in _JVM_JARS]
    classes = tmp_path_factory.mktemp("jvm-client")
    javac = ["javac", "-d", str(classes), "-cp", os.pathsep.join(classpath), str(_JVM_CLIENT)]
    subprocess.run(javac, check=True, timeout=120)
    return [
        "java", "-Xmx64m", "-XX:+UseSerialGC", "-XX:TieredStopAtLevel=1",
        "-cp", os.pathsep.join([str(classes), *classpath]), "PredictClient",
    ]  # fmt: skip


def test_a_plain_java_client_gets_a_result(
    served_digits: ServedDigits, java_client: list[str]
) -> None:
    kafka = served_digits.kafka
    command = [*java_client, kafka.bootstrap_servers, kafka.topics.prefix, "interop-java-1"]
    done = subprocess.run(command, capture_output=True, text=True, timeout=90, check=False)
    assert done.returncode == 0, done.stderr[-3000:]
    result = json.loads(done.stdout)
    assert result["schema"] == "maas.result/v1"
    assert (result["job_id"], result["status"], result["error"]) == ("interop-java-1", "ok", None)
    assert result["version"] == served_digits.version
    assert result["metadata"] == {"caller": "java-kafka-clients"}
    assert len(result["outputs"]["probabilities"]) == len(result["outputs"]["label"]) == 2


def test_a_plain_java_client_sends_an_mlserver_record_and_gets_an_inference_response(
    served_digits: ServedDigits, java_client: list[str]
) -> None:
    kafka = served_digits.kafka
    command = [*java_client, kafka.bootstrap_servers, kafka.topics.prefix, "interop-oip-1", "oip"]
    done = subprocess.run(command, capture_output=True, text=True, timeout=90, check=False)
    assert done.returncode == 0, done.stderr[-3000:]
    response = json.loads(done.stdout)
    assert (response["id"], response["model_name"]) == ("interop-oip-1", "digits")
    assert response["model_version"] == str(served_digits.version)
    outputs = {output["name"]: output for output in response["outputs"]}
    assert outputs["label"]["shape"] == [2] and outputs["label"]["datatype"] == "INT64"
    assert outputs["probabilities"]["shape"] == [2, 10]
    assert len(outputs["probabilities"]["data"]) == 20
