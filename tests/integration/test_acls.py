"""Tenants on Kafka ACLs: Apache Kafka with SASL_SSL (SCRAM) and the StandardAuthorizer,
``admin`` its only super user. The service's principal ``maas`` has the ACLs that
docs/security.md lists (:func:`maas.acls.service_rules`); ``maas tenants add NAME
--principal User:NAME`` gives ``acme`` and ``beta`` theirs. The broker itself refuses
what a tenant may not do: read another's results, write another's jobs, forge a Result
on any results topic, join the workers' group. ``remove`` takes exactly its ACLs away.

The broker starts once for the module.
"""

from __future__ import annotations

import asyncio
import json
import os
import secrets
from collections.abc import Iterator
from pathlib import Path

import pytest
from aiokafka import AIOKafkaConsumer, AIOKafkaProducer, TopicPartition
from aiokafka import errors as kafka_errors

from maas.acls import AclAdmin, Rule, service_rules, tenant_rules
from producer.kafka import KafkaSettings
from scripts.apache_kafka import ApacheKafka
from scripts.kafka_security import SaslSsl
from tests.cli_helpers import maas_process, one_error_line
from tests.kafka_helpers import job
from tests.process_helpers import Pieces
from workers.recipes.demo import digits_samples

pytestmark = [
    pytest.mark.slow,
    pytest.mark.filterwarnings("ignore:open_text is deprecated:DeprecationWarning"),
]

USERS = ("admin", "maas", "acme", "beta")  # admin first: the brokers' own, the super user
WAIT_MS = 10_000


@pytest.fixture(scope="module")
def tls(tmp_path_factory: pytest.TempPathFactory) -> SaslSsl:
    users = {user: f"pw-{secrets.token_hex(8)}" for user in USERS}
    return SaslSsl.create(tmp_path_factory.mktemp("tls"), users)


@pytest.fixture(scope="module")
def secured(tls: SaslSsl, tmp_path_factory: pytest.TempPathFactory) -> Iterator[ApacheKafka]:
    with ApacheKafka(
        workdir=tmp_path_factory.mktemp("kafka"),
        sasl_ssl=tls,
        properties=tls.authorizer_properties(),
        quick_start=True,
    ) as running:
        yield running


@pytest.fixture(scope="module")
def operator_env(
    secured: ApacheKafka, tls: SaslSsl, tmp_path_factory: pytest.TempPathFactory
) -> dict[str, str]:
    """The operator's environment: the registry, and ``MAAS_KAFKA_*`` as ``admin``."""
    folder = tmp_path_factory.mktemp("registry")
    env = {key: value for key, value in os.environ.items() if not key.startswith("MAAS_")}
    return env | {
        "MAAS_BOOTSTRAP_SERVERS": secured.bootstrap_servers,
        "MAAS_DATABASE_URL": f"sqlite:///{folder / 'registry.db'}",
        "MAAS_ARTIFACT_DIR": str(folder / "artifacts"),
        **tls.client_env("admin"),
    }


def settings_as(secured: ApacheKafka, tls: SaslSsl, user: str) -> KafkaSettings:
    env = {"MAAS_BOOTSTRAP_SERVERS": secured.bootstrap_servers, **tls.client_env(user)}
    return KafkaSettings.from_env(env)


@pytest.fixture(scope="module")
def tenants(
    secured: ApacheKafka, tls: SaslSsl, operator_env: dict[str, str], digits_artifact: Path
) -> KafkaSettings:
    """The service's ACLs, the digits model, and tenants ``acme`` (granted digits) and
    ``beta`` added with their principals; returns the operator's settings."""
    operator = settings_as(secured, tls, "admin")
    with AclAdmin(operator) as admin:
        admin.create(service_rules(operator.topics.prefix, "User:maas"))
    registered = maas_process(
        "models", "register", "digits", str(digits_artifact), "--promote", env=operator_env
    )
    assert registered.returncode == 0, registered.stderr
    for name, models in (("acme", "digits"), ("beta", "")):
        done = maas_process(
            "tenants", "add", name, "--models", models, "--principal", f"User:{name}",
            env=operator_env,
        )  # fmt: skip
        assert done.returncode == 0, done.stderr
        assert f"ACL: User:{name} WRITE topic maas.{name}.predict" in done.stdout
    return operator


class As:
    """Plain aiokafka clients that log in as ``user``."""

    def __init__(self, secured: ApacheKafka, tls: SaslSsl, user: str) -> None:
        self.options = settings_as(secured, tls, user).common()

    def write(self, topic: str, value: bytes = b"{}") -> None:
        async def write() -> None:
            producer = AIOKafkaProducer(**self.options, acks="all", request_timeout_ms=WAIT_MS)
            await producer.start()
            try:
                await producer.send_and_wait(topic, value)
            finally:
                await producer.stop()

        asyncio.run(write())

    def read(
        self, topic: str, *, group: str | None = None, until: bytes = b"", wait_s: float = 10
    ) -> list[bytes]:
        """The records of ``topic`` from the start, as consumer group ``group`` (None: no
        group, partitions assigned), once one holds ``until`` (default: any record)."""

        async def read() -> list[bytes]:
            subscribed = [] if group is None else [topic]  # subscribed: refused at start
            consumer = AIOKafkaConsumer(
                *subscribed, **self.options, group_id=group, auto_offset_reset="earliest"
            )
            values: list[bytes] = []
            try:
                await consumer.start()
                if group is None:
                    consumer.assign([TopicPartition(topic, p) for p in range(8)])
                async with asyncio.timeout(wait_s):
                    while not any(until in value for value in values):
                        batch = await consumer.getmany(timeout_ms=500)
                        values += [r.value or b"" for records in batch.values() for r in records]
                return values
            finally:
                await consumer.stop()

        return asyncio.run(read())


@pytest.fixture(scope="module")
def clients(secured: ApacheKafka, tls: SaslSsl) -> dict[str, As]:
    return {user: As(secured, tls, user) for user in USERS}


def test_a_tenant_writes_its_jobs_and_reads_its_results(
    tenants: KafkaSettings, clients: dict[str, As]
) -> None:
    clients["acme"].write("maas.acme.predict", b'{"job_id": "a1"}')
    assert clients["maas"].read("maas.acme.predict", group="maas-workers") == [b'{"job_id": "a1"}']
    clients["maas"].write("maas.acme.results", b'{"job_id": "a1", "status": "ok"}')
    answer = [b'{"job_id": "a1", "status": "ok"}']
    assert clients["acme"].read("maas.acme.results", group="maas.acme.app") == answer
    assert clients["acme"].read("maas.acme.results") == answer  # and without a group


@pytest.mark.parametrize(
    "topic", ["maas.acme.results", "maas.results", "maas.acme.predict", "maas.dlq"]
)
def test_another_tenant_cannot_read_what_is_not_its_own(
    tenants: KafkaSettings, clients: dict[str, As], topic: str
) -> None:
    with pytest.raises(kafka_errors.TopicAuthorizationFailedError):
        clients["beta"].read(topic, group="maas.beta.reader")  # a group it may use


@pytest.mark.parametrize(
    "topic",
    [
        "maas.acme.predict",  # another tenant's jobs
        "maas.acme.retrain",
        "maas.acme.results",  # forged Results: on anyone's results topic, its own included
        "maas.beta.results",
        "maas.results",
        "maas.control",
        "maas.dlq",
        "maas.predict",  # the default tenant's jobs
    ],
)
def test_a_tenant_cannot_write_where_it_is_not_allowed(
    tenants: KafkaSettings, clients: dict[str, As], topic: str
) -> None:
    with pytest.raises(kafka_errors.TopicAuthorizationFailedError):
        clients["beta"].write(topic)


@pytest.mark.parametrize("group", ["maas-workers", "maas-trainers", "maas.acme.app"])
def test_a_tenant_cannot_join_groups_that_are_not_its_own(
    tenants: KafkaSettings, clients: dict[str, As], group: str
) -> None:
    clients["beta"].write("maas.beta.predict")  # something it could read, but not as them
    with pytest.raises(kafka_errors.GroupAuthorizationFailedError):
        clients["beta"].read("maas.beta.results", group=group)


def test_remove_deletes_exactly_the_tenants_acls(
    tenants: KafkaSettings, operator_env: dict[str, str], clients: dict[str, As]
) -> None:
    added = maas_process("tenants", "add", "gone", "--principal", "User:beta", env=operator_env)
    assert added.returncode == 0, added.stderr
    clients["beta"].write("maas.gone.predict")
    with AclAdmin(tenants) as admin:
        gone = tenant_rules(tenants.topics.namespace("gone"), "User:beta")
        beta = tenant_rules(tenants.topics.namespace("beta"), "User:beta")
        assert admin.rules_of("User:beta") == sorted([*gone, *beta], key=Rule.describe)
        others = {user: admin.rules_of(f"User:{user}") for user in ("acme", "maas")}
        removed = maas_process("tenants", "remove", "gone", env=operator_env)
        assert removed.returncode == 0, removed.stderr
        assert f"deleted {len(gone)} Kafka ACLs of User:beta" in removed.stdout
        assert admin.rules_of("User:beta") == sorted(beta, key=Rule.describe)
        assert {user: admin.rules_of(f"User:{user}") for user in others} == others
    with pytest.raises(kafka_errors.TopicAuthorizationFailedError):
        clients["beta"].write("maas.gone.predict")
    clients["beta"].write("maas.beta.predict")


def test_only_a_principal_that_may_manage_acls_adds_a_tenant(
    tenants: KafkaSettings, operator_env: dict[str, str], tls: SaslSsl
) -> None:
    as_service = operator_env | tls.client_env("maas")
    done = maas_process("tenants", "add", "gamma", "--principal", "User:gamma", env=as_service)
    assert done.returncode == 1
    one_error_line(done.stderr, "may not manage ACLs", "super user")
    listed = maas_process("tenants", "list", env=operator_env)
    assert "gamma" not in listed.stdout and "acme" in listed.stdout


def test_a_worker_as_the_services_principal_answers_a_tenants_job(
    tenants: KafkaSettings,
    operator_env: dict[str, str],
    tls: SaslSsl,
    clients: dict[str, As],
    tmp_path: Path,
) -> None:
    worker = Pieces(operator_env | tls.client_env("maas"), tmp_path)
    worker.start("worker")
    try:
        inputs = {"x": digits_samples(2)[0].tolist()}
        clients["acme"].write("maas.acme.predict", job("acme-1", inputs))
        values = clients["acme"].read("maas.acme.results", until=b'"acme-1"', wait_s=60)
        [answer] = [a for a in map(json.loads, values) if a["job_id"] == "acme-1"]
        assert (answer["status"], answer["version"]) == ("ok", 1), worker.log("worker")
        assert len(answer["outputs"]["label"]) == 2
        submitted = maas_process(  # the SDK, logged in as acme
            "submit", "--tenant", "acme", "--model", "digits", "--inputs", json.dumps(inputs),
            "--timeout", "60", env=operator_env | tls.client_env("acme"), timeout=90,
        )  # fmt: skip
        assert submitted.returncode == 0, submitted.stderr
        assert json.loads(submitted.stdout)["status"] == "ok"
    finally:
        worker.stop()
    assert "Traceback" not in worker.log("worker")
