"""Tenants through each real broker: a worker and a trainer serve every tenant's topics,
each tenant only what it is granted, answered only in its own namespace."""

from __future__ import annotations

import asyncio
import json
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from pathlib import Path

import pytest
from aiokafka import AIOKafkaConsumer, TopicPartition

from maas.cli import main
from producer.aio import AsyncClient
from producer.client import Client
from producer.contract.messages import Result
from producer.contract.tenancy import Namespace
from producer.control import announce_tenant
from producer.kafka import KafkaSettings, detect_capabilities
from registry.drafts import Draft
from registry.entities import ModelVersion
from registry.registry import Registry
from tests.kafka_helpers import (
    create_topic,
    job,
    publish,
    read,
    read_results,
    retrain_job,
    running,
    settled,
)
from workers.recipes.demo import digits_samples
from workers.serving.loop import Worker, WorkerSettings
from workers.tenancy.guard import TenancySettings
from workers.training.trainer import Trainer, TrainerSettings

pytestmark = pytest.mark.both_brokers

# Grants are read again only on a control event here (the TTL outlasts every test).
TENANCY = TenancySettings(grants_ttl_s=600.0, audit_rows=3)
PIXELS = digits_samples(1)[0].tolist()
WEAK = {"epochs": 1, "hidden": 8, "max_rows": 200}


async def add_tenant(
    kafka: KafkaSettings, registry: Registry, name: str, *models: str, retrain: bool = False
) -> Namespace:
    """Tenant ``name`` in the registry, with its topics (as ``maas tenants add`` makes them)."""
    registry.tenants.add(name, models=models, retrain=retrain, actor="test")
    namespace = kafka.topics.namespace(name)
    for topic in (namespace.predict, namespace.retrain, namespace.results):
        await create_topic(kafka, topic)
    return namespace


@asynccontextmanager
async def serving(
    kafka: KafkaSettings, registry: Registry, transport: str = "aiokafka"
) -> AsyncIterator[Worker]:
    """A worker with tenancy, on ``transport`` (the Kafka client library it uses)."""
    settings = WorkerSettings(metrics_interval_s=5.0, tenancy=TENANCY, transport=transport)
    worker = Worker(kafka, registry.models, registry.metrics, settings, tenants=registry.tenants)
    async with running(worker.run):
        await asyncio.wait_for(worker.ready.wait(), 30)
        yield worker


async def job_ids(kafka: KafkaSettings, topic: str, expected: int) -> list[str]:
    """The job ids of every record on ``topic``, once ``expected`` came and no more."""
    records = await read(kafka, topic, until=settled(expected))
    return sorted(json.loads(r.value)["job_id"] for r in records)


async def written(kafka: KafkaSettings, topic: str) -> int:
    """The sum of ``topic``'s partitions' end offsets: 0 while nothing was ever written."""
    partitions = kafka.topics.partitions().get(topic, 1)
    consumer = AIOKafkaConsumer(**kafka.consumer(await detect_capabilities(kafka), None))
    await consumer.start()
    try:
        tps = [TopicPartition(topic, p) for p in range(partitions)]
        consumer.assign(tps)
        return sum((await consumer.end_offsets(tps)).values())
    finally:
        await consumer.stop()


@pytest.mark.parametrize("transport", ["aiokafka", "librdkafka"])
async def test_a_tenant_gets_its_models_only_and_answers_only_in_its_namespace(
    kafka: KafkaSettings,
    registry: Registry,
    digits: ModelVersion,
    digits_artifact: Path,
    transport: str,
) -> None:
    registry.models.register("other", Draft(digits_artifact, promote=True), actor="test")
    a = await add_tenant(kafka, registry, "a", "digits")
    b = await add_tenant(kafka, registry, "b", "other")
    ghost = kafka.topics.namespace("ghost")  # topics made by hand; no tenant in the registry
    await create_topic(kafka, ghost.predict)
    await create_topic(kafka, ghost.results)
    elsewhere = [b.results, kafka.topics.control, kafka.topics.dlq, kafka.topics.results]
    misdirected = {f"a-to-{i}": topic for i, topic in enumerate(elsewhere)}
    flood = [f"a-flood-{i}" for i in range(20)]
    await publish(
        kafka,
        a.predict,
        [
            job("a-ok", {"x": PIXELS}),
            job("a-other", {"x": PIXELS}, model="other"),
            *(job(j, {"x": PIXELS}, reply_to=topic) for j, topic in misdirected.items()),
            job("a-bad-to-b", {"nope": 1}, reply_to=b.results),  # refused before it is read
            *(job(j, {"x": PIXELS}, model="other") for j in flood),
        ],
    )
    await publish(
        kafka,
        b.predict,
        [job("b-digits", {"x": PIXELS}), job("b-ok", {"x": PIXELS}, model="other")],
    )
    await publish(kafka, ghost.predict, [job("ghost", {"x": PIXELS})])
    await publish(
        kafka,
        kafka.topics.predict,
        [
            job("d-ok", {"x": PIXELS}, model="other"),
            job("d-control", {"x": PIXELS}, reply_to=kafka.topics.control),
            job("d-tenant", {"x": PIXELS}, reply_to=a.results),
        ],
    )
    async with serving(kafka, registry, transport):
        on_a = await read_results(
            kafka, {"a-ok", "a-other", "a-bad-to-b", *misdirected, *flood}, topic=a.results
        )
        on_b = await read_results(kafka, {"b-digits", "b-ok"}, topic=b.results)
        on_ghost = await read_results(kafka, {"ghost"}, topic=ghost.results)
        on_default = await read_results(kafka, {"d-ok", "d-control", "d-tenant"})

    assert (on_a["a-ok"]["status"], on_a["a-ok"]["version"]) == ("ok", 1)
    assert (on_b["b-ok"]["status"], on_default["d-ok"]["status"]) == ("ok", "ok")
    refused = {
        **{j: on_a[j] for j in ["a-other", "a-bad-to-b", *misdirected, *flood]},
        "b-digits": on_b["b-digits"],
        "ghost": on_ghost["ghost"],
        "d-control": on_default["d-control"],
        "d-tenant": on_default["d-tenant"],
    }
    assert {j: r["error"]["code"] for j, r in refused.items()} == dict.fromkeys(
        refused, "UNAUTHORIZED"
    )
    assert "model 'other'" in on_a["a-other"]["error"]["message"]
    assert "'b'" not in on_a["a-other"]["error"]["message"]  # nothing of other tenants
    assert "not registered" in on_ghost["ghost"]["error"]["message"]
    assert "reply_to" in on_a["a-to-0"]["error"]["message"]
    # Nothing was written where the refused jobs pointed.
    assert await written(kafka, kafka.topics.control) == 0
    assert await written(kafka, kafka.topics.dlq) == 0
    for topic, answered in [(b.results, on_b), (kafka.topics.results, on_default)]:
        assert await job_ids(kafka, topic, len(answered)) == sorted(answered)
    # Every refusal audited, a flood in a bounded number of rows whose counts add up.
    rows = [e for e in registry.tenants.audit("a", limit=1000) if e.action == "refusal"]
    not_granted = [r for r in rows if r.details["reason"] == "model-not-granted"]
    assert len(not_granted) <= TENANCY.audit_rows + 1
    assert sum(1 + r.details["suppressed"] for r in not_granted) == 1 + len(flood)
    outside = [r for r in rows if r.details["reason"] == "reply-to-outside-namespace"]
    assert sum(1 + r.details["suppressed"] for r in outside) == len(misdirected) + 1


@pytest.mark.parametrize("transport", ["aiokafka", "librdkafka"])
async def test_a_new_tenant_is_served_and_a_revoked_grant_stops_at_the_control_event(
    kafka: KafkaSettings, registry: Registry, digits: ModelVersion, transport: str
) -> None:
    async with serving(kafka, registry, transport):
        late = await add_tenant(kafka, registry, "late", "digits")  # after the worker started
        await publish(kafka, late.predict, [job("first", {"x": PIXELS})])
        first = await read_results(kafka, {"first"}, topic=late.results, timeout_s=20)
        assert first["first"]["status"] == "ok"

        registry.tenants.revoke("late", ["digits"], actor="test")
        await asyncio.to_thread(announce_tenant, kafka, "late", "revoked", actor="test")
        await asyncio.sleep(1.0)  # the worker follows the control topic from now on
        await publish(kafka, late.predict, [job("second", {"x": PIXELS})])
        second = await read_results(kafka, {"second"}, topic=late.results)
    assert second["second"]["error"]["code"] == "UNAUTHORIZED"


async def test_the_trainer_runs_a_tenants_retrain_jobs_only_as_granted(
    kafka: KafkaSettings, registry: Registry, digits: ModelVersion
) -> None:
    teacher = await add_tenant(kafka, registry, "teacher", "digits", retrain=True)
    reader = await add_tenant(kafka, registry, "reader", "digits")
    await publish(
        kafka,
        teacher.retrain,
        [
            retrain_job("always", promote="always"),  # no promote_always grant
            retrain_job("foreign", model="secret"),
            retrain_job("to-control", reply_to=kafka.topics.control),
            b'{"job_id": "broken", "reply_to": "%s", "params": 1}' % kafka.topics.dlq.encode(),
            retrain_job("trained", params=WEAK, promote="never"),
        ],
    )
    await publish(kafka, reader.retrain, [retrain_job("no-grant")])
    trainer = Trainer(
        kafka,
        registry.models,
        registry.runs,
        TrainerSettings(tenancy=TENANCY),
        tenants=registry.tenants,
    )
    async with running(trainer.run):
        taught = await read_results(
            kafka, {"always", "foreign", "to-control", "broken", "trained"}, topic=teacher.results
        )
        read = await read_results(kafka, {"no-grant"}, topic=reader.results)
    codes = {j: (r["error"] or {}).get("code") for j, r in {**taught, **read}.items()}
    assert codes == {
        "always": "UNAUTHORIZED",
        "foreign": "UNAUTHORIZED",
        "to-control": "UNAUTHORIZED",
        "broken": "UNAUTHORIZED",
        "trained": None,
        "no-grant": "UNAUTHORIZED",
    }
    assert (taught["trained"]["status"], taught["trained"]["version"]) == ("ok", 2)
    for topic in (kafka.topics.control, kafka.topics.dlq, kafka.topics.results):
        assert await written(kafka, topic) == 0
    assert await job_ids(kafka, teacher.results, len(taught)) == sorted(taught)
    assert [v.version for v in registry.models.versions("digits")] == [1, 2]


async def test_the_clients_act_for_the_tenant_they_are_given(
    kafka: KafkaSettings,
    registry: Registry,
    digits: ModelVersion,
    monkeypatch: pytest.MonkeyPatch,
    capsys: pytest.CaptureFixture[str],
) -> None:
    a = await add_tenant(kafka, registry, "a", "digits")
    await add_tenant(kafka, registry, "nothing")  # granted no model
    flags = ["--bootstrap-servers", kafka.bootstrap_servers, "--topic-prefix", kafka.topics.prefix]
    submit = ["submit", "--model", "digits", "--inputs", json.dumps({"x": PIXELS}), *flags]

    def sync_predict() -> Result:
        with Client(kafka, tenant="a") as client:
            return client.predict("digits", {"x": PIXELS}, job_id="sync")

    async with serving(kafka, registry):
        async with AsyncClient(kafka, tenant="a") as client:
            answer = await client.predict("digits", {"x": PIXELS}, job_id="async")
        assert answer.status == (await asyncio.to_thread(sync_predict)).status == "ok"
        assert await asyncio.to_thread(main, [*submit, "--tenant", "a", "--job-id", "flag"]) == 0
        monkeypatch.setenv("MAAS_TENANT", "a")
        assert await asyncio.to_thread(main, [*submit, "--job-id", "env"]) == 0
        monkeypatch.setenv("MAAS_TENANT", "nothing")
        assert await asyncio.to_thread(main, [*submit, "--job-id", "refused"]) == 1
    out = capsys.readouterr().out.splitlines()
    printed = [json.loads(line) for line in out if line.startswith('{"job_id"')]
    assert [(r["job_id"], r["status"]) for r in printed] == [
        ("flag", "ok"),
        ("env", "ok"),
        ("refused", "error"),
    ]
    assert printed[-1]["error"]["code"] == "UNAUTHORIZED"
    assert await job_ids(kafka, a.predict, 4) == ["async", "env", "flag", "sync"]
    assert await written(kafka, kafka.topics.predict) == 0  # nothing on the default tenant's
    monkeypatch.setenv("MAAS_TENANT", "Not A Name")
    assert await asyncio.to_thread(main, submit) != 0
    assert "tenant name 'Not A Name' is not allowed" in capsys.readouterr().err
