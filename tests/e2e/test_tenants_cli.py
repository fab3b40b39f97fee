"""``maas tenants`` end to end through ``maas.cli.main``: a real SQLite registry and the
embedded broker (topics, control events). The Kafka ACLs are in tests/integration/test_acls.py."""

from __future__ import annotations

import asyncio
import json
import uuid
from collections.abc import Callable
from pathlib import Path

import pytest
from aiokafka.admin import AIOKafkaAdminClient

from maas.cli import main
from producer.kafka import KafkaSettings
from registry import Draft, Registry, RegistrySettings
from scripts.apache_kafka import ApacheKafka
from tests.cli_helpers import one_error_line
from tests.kafka_helpers import read_all

MakeOnnx = Callable[..., Path]
Maas = Callable[..., tuple[int, str, str]]


@pytest.fixture
def maas(
    registry_settings: RegistrySettings,
    kafka: KafkaSettings,
    make_onnx: MakeOnnx,
    capsys: pytest.CaptureFixture[str],
) -> Maas:
    """Run ``maas tenants ...`` against the test registry (models ``digits`` and ``text``
    registered) and broker; returns (code, stdout, stderr)."""
    with Registry.open(registry_settings) as registry:
        for name in ("digits", "text"):
            registry.models.register(name, Draft(make_onnx()), actor="ops")
    capsys.readouterr()  # what registering logged, where earlier tests left logs going
    options = [
        *("--database-url", registry_settings.database_url),
        *("--artifact-dir", str(registry_settings.artifact_dir)),
        *("--bootstrap-servers", kafka.bootstrap_servers),
        *("--topic-prefix", kafka.topics.prefix),
    ]

    def run(*argv: str) -> tuple[int, str, str]:
        actor = [] if argv[0] == "list" else ["--actor", "tester"]
        code = main(["--log-level", "warning", "tenants", *argv, *options, *actor])
        out, err = capsys.readouterr()
        return code, out, err

    return run


def topics(kafka: KafkaSettings) -> set[str]:
    async def names() -> set[str]:
        admin = AIOKafkaAdminClient(**kafka.common())
        await admin.start()
        try:
            return {t for t in await admin.list_topics() if t.startswith(kafka.topics.prefix)}
        finally:
            await admin.close()

    return asyncio.run(names())


def tenant_events(kafka: KafkaSettings) -> list[tuple[str, str, str]]:
    """(tenant, change, actor) of every tenant event on the control topic, with its key."""
    records = asyncio.run(read_all(kafka, kafka.topics.control))
    events = [(r.key, json.loads(r.value)) for r in records]
    assert all(key == event["tenant"].encode() for key, event in events)
    return [(e["tenant"], e["reason"], e["actor"]) for _, e in events if e["event"] == "tenant"]


def test_add_list_grant_revoke_remove(
    maas: Maas, kafka: KafkaSettings, registry_settings: RegistrySettings
) -> None:
    code, out, err = maas("add", "acme", "--models", "digits", "--retrain")
    assert (code, err.splitlines()) == (0, [f"wrote to registry {registry_settings.location}"])
    stem = f"{kafka.topics.prefix}acme."
    assert "added tenant acme: digits; retrain" in out
    assert f"topics: {stem}predict, {stem}retrain, {stem}results" in out
    assert {f"{stem}predict", f"{stem}retrain", f"{stem}results"} <= topics(kafka)
    assert maas("add", "beta", "--promote-always")[0] == 0

    code, out, _ = maas("list")
    rows = [line.split() for line in out.strip().splitlines()]
    assert rows[0] == ["TENANT", "MODELS", "RETRAIN", "PROMOTE", "ALWAYS", "PRINCIPAL", "TOPICS"]
    assert rows[1] == ["acme", "digits", "yes", "no", "-", f"{stem}*"]
    assert rows[2][:5] == ["beta", "-", "no", "yes", "-"]

    code, out, _ = maas("grant", "acme", "text")
    assert code == 0 and "tenant acme: digits, text; retrain" in out
    code, out, _ = maas("revoke", "acme", "digits")
    assert code == 0 and "tenant acme: text; retrain" in out
    code, out, _ = maas("revoke", "acme", "--retrain")
    assert code == 0 and out.startswith("tenant acme: text\n")
    code, out, _ = maas("grant", "acme", "--promote-always")
    assert code == 0 and "tenant acme: text; promote always" in out
    code, out, _ = maas("remove", "acme")
    assert code == 0 and f"removed tenant acme; its topics ({stem}*) stay" in out
    assert maas("list")[1].split().count("acme") == 0
    assert tenant_events(kafka) == [
        ("acme", "added", "tester"),
        ("beta", "added", "tester"),
        ("acme", "granted text", "tester"),
        ("acme", "revoked digits", "tester"),
        ("acme", "revoked retrain", "tester"),
        ("acme", "granted promote always", "tester"),
        ("acme", "removed", "tester"),
    ]


def test_an_empty_list_says_what_to_do(maas: Maas) -> None:
    code, out, _ = maas("list")
    assert code == 0 and "no tenants yet" in out and "maas tenants add" in out


@pytest.mark.parametrize(
    ("argv", "fragments"),
    [
        (["grant", "nope", "digits"], ["no tenant named 'nope'", "maas tenants list"]),
        (["remove", "nope"], ["no tenant named 'nope'"]),
        (["grant", "nope"], ["nothing to grant: name models, --retrain or --promote-always"]),
        (["add", "Acme"], ["tenant name 'Acme' is not allowed", "lower-case letters"]),
        (["add", "results"], ["is a topic word"]),
        (["add", "acme", "--models", "digits,missing"], ["no model named 'missing'"]),
    ],
)
def test_mistakes_are_one_error_line_and_change_nothing(
    maas: Maas, kafka: KafkaSettings, argv: list[str], fragments: list[str]
) -> None:
    code, _, err = maas(*argv)
    assert code == 1
    one_error_line(err, *fragments)
    assert "no tenants yet" in maas("list")[1]
    assert not any(".acme." in topic for topic in topics(kafka))


def test_a_duplicate_and_a_revoke_of_what_was_not_granted_are_refused(maas: Maas) -> None:
    assert maas("add", "acme", "--models", "digits")[0] == 0
    code, _, err = maas("add", "acme")
    assert code == 1
    one_error_line(err, "tenant 'acme' already exists")
    code, _, err = maas("revoke", "acme", "text")
    assert code == 1
    one_error_line(err, "no grant for text; its models: digits")


def test_a_principal_on_a_broker_without_acls_changes_nothing(
    maas: Maas, kafka: KafkaSettings
) -> None:
    code, _, err = maas("add", "acme", "--models", "digits", "--principal", "User:acme")
    assert code == 1
    one_error_line(err, "does not support ACLs", "--principal cannot be enforced", "nothing was")
    assert "no tenants yet" in maas("list")[1]
    assert not any(".acme." in topic for topic in topics(kafka))


def test_bad_flags_are_usage_errors(maas: Maas, capsys: pytest.CaptureFixture[str]) -> None:
    for argv in (["add", "acme", "--principal", "User:*"], ["grant", "acme", "a b"]):
        with pytest.raises(SystemExit) as exited:
            maas(*argv)
        assert exited.value.code == 2
        assert "is not allowed" in capsys.readouterr().err


@pytest.mark.slow
def test_a_principal_on_kafka_without_an_authorizer_changes_nothing(
    registry_settings: RegistrySettings,
    apache_kafka: ApacheKafka,
    capsys: pytest.CaptureFixture[str],
) -> None:
    Registry.open(registry_settings).close()
    options = [
        *("--database-url", registry_settings.database_url),
        *("--bootstrap-servers", apache_kafka.bootstrap_servers),
        *("--topic-prefix", f"t{uuid.uuid4().hex[:8]}."),
    ]
    code = main(["tenants", "add", "acme", "--principal", "User:acme", *options])
    assert code == 1
    one_error_line(capsys.readouterr().err, "has no authorizer", "nothing was changed")
    with Registry.open(registry_settings) as registry:
        assert registry.tenants.list() == []
