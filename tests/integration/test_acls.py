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
import time
from collections.abc import Iterator
from collections.abc import Set as AbstractSet
from pathlib import Path

import pytest
from aiokafka import AIOKafkaConsumer, AIOKafkaProducer, ConsumerRecord, TopicPartition
from aiokafka import errors as kafka_errors
from aiokafka.admin import AIOKafkaAdminClient, NewTopic

from maas.acls import AclAdmin, Resource, Rule, service_rules, tenant_rules
from producer.kafka import KafkaSettings
from scripts.apache_kafka import ApacheKafka
from scripts.kafka_security import SaslSsl
from tests.cli_helpers import maas_process, one_error_line
from tests.kafka_helpers import job, read_all
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
        self.settings = settings_as(secured, tls, user)
        self.options = self.settings.common()

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

    def write_many(self, topic: str, values: list[bytes]) -> None:
        async def write() -> None:
            producer = AIOKafkaProducer(**self.options, acks="all", request_timeout_ms=WAIT_MS)
            await producer.start()
            try:
                for value in values:
                    await producer.send_and_wait(topic, value)
            finally:
                await producer.stop()

        asyncio.run(write())

    def records(
        self, topic: str, *, until: AbstractSet[str] = frozenset(), wait_s: float = 60
    ) -> list[ConsumerRecord[bytes, bytes]]:
        """Every committed record of ``topic`` (``read_committed``: an exactly-once
        worker's aborted answers are not among them) up to its end, read again until the
        records' ``job_id`` include all of ``until`` or ``wait_s`` has passed."""
        deadline = time.monotonic() + wait_s
        while True:
            records = asyncio.run(read_all(self.settings, topic, isolation_level="read_committed"))
            seen = set(job_ids(records))
            if until <= seen or time.monotonic() > deadline:
                return records
            time.sleep(1)


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


# Reply topics outside the service's prefix, as a default-tenant job may name them
# (docs/security.md): the service's principal may see the first (DESCRIBE) but not
# write it; it has no ACL at all on the second, so to it that topic does not exist.
REFUSING, UNSEEN = "outside.refusing", "outside.unseen"


@pytest.fixture(scope="module")
def reply_topics(tenants: KafkaSettings) -> None:
    async def create() -> None:
        admin = AIOKafkaAdminClient(**tenants.common())
        await admin.start()
        try:
            await admin.create_topics([NewTopic(REFUSING, 1, 1), NewTopic(UNSEEN, 1, 1)])
        finally:
            await admin.close()

    asyncio.run(create())
    with AclAdmin(tenants) as admin:
        admin.create([Rule("User:maas", "DESCRIBE", Resource.TOPIC, REFUSING)])


def job_id(record: ConsumerRecord[bytes, bytes]) -> str | None:
    """The ``job_id`` of a record holding a JSON object with one (others' tests write
    other bytes to the same topics)."""
    try:
        body = json.loads(record.value or b"")
    except ValueError:
        return None
    found = body.get("job_id") if isinstance(body, dict) else None
    return found if isinstance(found, str) else None


def job_ids(records: list[ConsumerRecord[bytes, bytes]]) -> list[str]:
    return [found for found in map(job_id, records) if found is not None]


@pytest.mark.usefixtures("reply_topics")
@pytest.mark.timeout(300)  # the module's broker and digits may be built in its setup
@pytest.mark.parametrize("exactly_once", [False, True], ids=["at-least-once", "exactly-once"])
def test_a_reply_topic_the_service_may_not_write_costs_its_job_only(
    tenants: KafkaSettings,
    operator_env: dict[str, str],
    tls: SaslSsl,
    clients: dict[str, As],
    tmp_path: Path,
    exactly_once: bool,
) -> None:
    """Issue 28, item 1 with ACLs: the broker refuses the Result for good
    (TopicAuthorizationFailed, not retriable), so the job is dead-lettered once with the
    broker's reason, every other job is answered once, and the worker goes on."""
    mode = "eos" if exactly_once else "alo"
    env = operator_env | tls.client_env("maas")
    worker = Pieces(env | ({"MAAS_EXACTLY_ONCE": "1"} if exactly_once else {}), tmp_path)
    worker.start("worker")
    try:
        inputs = {"x": digits_samples(1)[0].tolist()}
        plain = [f"{mode}-{i}" for i in range(20)]
        refused, unseen = f"{mode}-refused", f"{mode}-unseen"
        clients["admin"].write_many(
            "maas.predict",
            [
                *(job(i, inputs) for i in plain[:10]),
                job(refused, inputs, reply_to=REFUSING),
                job(unseen, inputs, reply_to=UNSEEN),
                *(job(i, inputs) for i in plain[10:]),
            ],
        )
        results = clients["admin"].records("maas.results", until={*plain, unseen})
        answers = [json.loads(r.value) for r in results if job_id(r)]
        mine = [a for a in answers if a["job_id"].startswith(f"{mode}-")]
        assert sorted(a["job_id"] for a in mine) == sorted([*plain, unseen]), worker.log("worker")
        assert all(a["status"] == "ok" for a in mine if a["job_id"] != unseen)
        [hidden] = [a for a in mine if a["job_id"] == unseen]  # to maas, it does not exist
        assert hidden["error"]["code"] == "INVALID_INPUT"
        assert f"reply_to topic {UNSEEN!r} does not exist" in hidden["error"]["message"]

        letters = clients["admin"].records("maas.dlq", until={refused})
        [letter] = [r for r in letters if job_id(r) == refused]
        headers = dict(letter.headers)
        assert headers["maas.error.code"] == b"INTERNAL"
        assert b"TopicAuthorizationFailed" in headers["maas.error.message"]
        assert clients["admin"].records(REFUSING, wait_s=0) == []

        later = [f"{mode}-later-{i}" for i in range(10)]  # still serving
        clients["admin"].write_many("maas.predict", [job(i, inputs) for i in later])
        results = clients["admin"].records("maas.results", until=set(later))
        mine = [i for i in job_ids(results) if i.startswith(f"{mode}-")]
        assert sorted(mine) == sorted([*plain, unseen, *later])  # each once
        assert worker.running["worker"].poll() is None, worker.log("worker")
    finally:
        worker.stop()
    assert "Traceback" not in worker.log("worker")
