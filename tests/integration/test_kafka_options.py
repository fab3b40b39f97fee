"""``MAAS_KAFKA_*`` made into client options, and replication chosen by cluster size:
pure tests (the SASL_SSL broker is tests/integration/test_sasl.py's)."""

from __future__ import annotations

import os
import pickle
import ssl
import subprocess
import sys
from pathlib import Path

import pytest
from aiokafka import AIOKafkaConsumer, AIOKafkaProducer

from producer.capabilities import Capabilities
from producer.errors import KafkaSettingsError
from producer.kafka import KafkaSettings, Replication
from producer.kafka_options import KafkaOptions
from scripts.kafka_security import SaslSsl

SECRET = "s3cret-pass"
# What Apache Kafka and the embedded broker answer the capability probe; and an address
# where nothing listens, for options that must be built without asking anyone.
KAFKA = Capabilities(idempotence=True)
TANSU = Capabilities(idempotence=False, refusal="UnsupportedVersionError")
NOWHERE = "127.0.0.1:1"


@pytest.fixture(scope="module")
def tls(tmp_path_factory: pytest.TempPathFactory) -> SaslSsl:
    return SaslSsl.create(tmp_path_factory.mktemp("tls"), {"maas": SECRET})


def sasl_ssl_env(tls: SaslSsl) -> dict[str, str]:
    return {"MAAS_BOOTSTRAP_SERVERS": "127.0.0.1:1", **tls.client_env("maas")}


async def test_sasl_passes_through_and_the_tls_files_become_one_context(tls: SaslSsl) -> None:
    settings = KafkaSettings.from_env(sasl_ssl_env(tls))
    options = settings.common()
    assert options["security_protocol"] == "SASL_SSL"
    assert options["sasl_mechanism"] == "SCRAM-SHA-512"
    assert (options["sasl_plain_username"], options["sasl_plain_password"]) == ("maas", SECRET)
    assert isinstance(options["ssl_context"], ssl.SSLContext)
    assert not any(name.startswith("ssl_") and name != "ssl_context" for name in options)
    # aiokafka refuses any option it does not know: these it takes.
    await AIOKafkaConsumer(**options).stop()
    await AIOKafkaProducer(**options).stop()


def test_passwords_never_show_in_a_repr(tls: SaslSsl) -> None:
    env = {**sasl_ssl_env(tls), "MAAS_KAFKA_SSL_CERTFILE": str(tls.folder / "server.pem")}
    env["MAAS_KAFKA_SSL_PASSWORD"] = "key-" + SECRET
    settings = KafkaSettings.from_env(env)
    assert SECRET not in repr(settings)
    assert "sasl_plain_password='***'" in repr(settings)
    assert "ssl_cafile=" in repr(settings)


def test_settings_travel_to_a_pool_process_by_their_values(tls: SaslSsl) -> None:
    settings = KafkaSettings.from_env(sasl_ssl_env(tls))
    copy = pickle.loads(pickle.dumps(settings))
    assert copy.options.settings == settings.options.settings
    assert isinstance(copy.common()["ssl_context"], ssl.SSLContext)


def test_integers_are_integers_and_producer_options_go_to_producers_only() -> None:
    options = KafkaOptions.from_env(
        {"MAAS_KAFKA_REQUEST_TIMEOUT_MS": "5000", "MAAS_KAFKA_MAX_REQUEST_SIZE": "2097152"}
    )
    settings = KafkaSettings(bootstrap_servers=NOWHERE, options=options)
    assert settings.common()["request_timeout_ms"] == 5000
    assert settings.producer(KAFKA)["max_request_size"] == 2097152
    assert "max_request_size" not in settings.consumer(KAFKA, "g")


@pytest.mark.parametrize(
    ("broker", "idempotent", "fetch_wait_ms"), [(KAFKA, True, 500), (TANSU, False, 5)]
)
def test_client_options_follow_the_capabilities_passed_in_without_asking_a_broker(
    broker: Capabilities, idempotent: bool, fetch_wait_ms: int
) -> None:
    settings = KafkaSettings(bootstrap_servers=NOWHERE)  # nothing listens: no I/O is made
    assert settings.producer(broker).get("enable_idempotence", False) is idempotent
    assert settings.consumer(broker, "g")["fetch_max_wait_ms"] == fetch_wait_ms
    assert settings.consumer(broker, None, fetch_max_wait_ms=7)["fetch_max_wait_ms"] == 7


@pytest.mark.parametrize(
    ("env", "named"),
    [
        ({"MAAS_KAFKA_SASL_USERNAME": "x"}, "MAAS_KAFKA_SASL_USERNAME is not a setting"),
        ({"MAAS_KAFKA_SECURITY_PROTOCOL": "TLS"}, "MAAS_KAFKA_SECURITY_PROTOCOL must be"),
        ({"MAAS_KAFKA_REQUEST_TIMEOUT_MS": "5s"}, "MAAS_KAFKA_REQUEST_TIMEOUT_MS must be"),
        ({"MAAS_KAFKA_SSL_CAFILE": "/ca.pem"}, "SECURITY_PROTOCOL is PLAINTEXT"),
        ({"MAAS_KAFKA_SASL_MECHANISM": "PLAIN"}, "is not SASL_SSL or SASL_PLAINTEXT"),
        (
            {"MAAS_KAFKA_SECURITY_PROTOCOL": "SASL_SSL", "MAAS_KAFKA_SASL_MECHANISM": "SCRAM"},
            "MAAS_KAFKA_SASL_MECHANISM must be",
        ),
        (
            {"MAAS_KAFKA_SECURITY_PROTOCOL": "SASL_SSL", "MAAS_KAFKA_SASL_PLAIN_USERNAME": "u"},
            "needs MAAS_KAFKA_SASL_PLAIN_PASSWORD",
        ),
        (
            {"MAAS_KAFKA_SECURITY_PROTOCOL": "SSL", "MAAS_KAFKA_SSL_CAFILE": "/nowhere/ca.pem"},
            "MAAS_KAFKA_SSL_CAFILE=/nowhere/ca.pem: could not be loaded (No such file",
        ),
        (
            {"MAAS_KAFKA_SECURITY_PROTOCOL": "SSL", "MAAS_KAFKA_SSL_KEYFILE": "/k.pem"},
            "MAAS_KAFKA_SSL_KEYFILE needs MAAS_KAFKA_SSL_CERTFILE",
        ),
    ],
)
def test_a_setting_no_client_could_honour_is_one_error_naming_it(
    env: dict[str, str], named: str
) -> None:
    with pytest.raises(KafkaSettingsError, match="MAAS_KAFKA_") as caught:
        KafkaOptions.from_env(env)
    assert named in str(caught.value)


def test_a_key_that_does_not_decrypt_is_named_without_its_password(tls: SaslSsl) -> None:
    encrypted = tls.folder / "encrypted.pem"
    subprocess.run(
        ["openssl", "pkey", "-in", str(tls.folder / "server.key"), "-aes256",
         "-passout", "pass:right-" + SECRET, "-out", str(encrypted)],
        check=True,
    )  # fmt: skip
    env = {
        "MAAS_KAFKA_SECURITY_PROTOCOL": "SSL",
        "MAAS_KAFKA_SSL_CERTFILE": str(tls.folder / "server.crt"),
        "MAAS_KAFKA_SSL_KEYFILE": str(encrypted),
        "MAAS_KAFKA_SSL_PASSWORD": "wrong-" + SECRET,
    }
    with pytest.raises(KafkaSettingsError, match="MAAS_KAFKA_SSL_CERTFILE=") as caught:
        KafkaOptions.from_env(env)
    assert SECRET not in str(caught.value)
    KafkaOptions.from_env({**env, "MAAS_KAFKA_SSL_PASSWORD": "right-" + SECRET})


def test_a_command_with_a_wrong_setting_says_which_in_one_line(tmp_path: Path) -> None:
    env = {key: value for key, value in os.environ.items() if not key.startswith("MAAS_")}
    env |= {
        "MAAS_DATABASE_URL": f"sqlite:///{tmp_path / 'registry.db'}",
        "MAAS_KAFKA_SECURITY_PROTOCOL": "SASL_SSL",
        "MAAS_KAFKA_SASL_MECHANISM": "SCRAM-SHA-512",
        "MAAS_KAFKA_SASL_PLAIN_USERNAME": "maas",
        "MAAS_KAFKA_SASL_PLAIN_PASSWORD": SECRET,
        "MAAS_KAFKA_SSL_CAFILE": str(tmp_path / "missing-ca.pem"),
    }
    done = subprocess.run(
        [sys.executable, "-m", "maas.cli", "worker"],
        capture_output=True,
        text=True,
        env=env,
        timeout=60,
        check=False,
    )
    assert done.returncode == 1
    [line] = done.stderr.strip().splitlines()
    assert line.startswith("error: MAAS_KAFKA_SSL_CAFILE=") and "could not be loaded" in line
    assert SECRET not in done.stdout + done.stderr


@pytest.mark.parametrize(
    ("brokers", "factor", "min_insync"), [(1, 1, 1), (2, 2, 1), (3, 3, 2), (5, 3, 2)]
)
def test_replication_follows_the_cluster_size(brokers: int, factor: int, min_insync: int) -> None:
    replication = Replication.for_cluster(brokers)
    assert (replication.factor, replication.min_insync) == (factor, min_insync)
    configs = replication.topic_configs()
    assert configs == ({"min.insync.replicas": str(min_insync)} if factor > 1 else {})
