"""Names on the wire fit the registry: one set of limits, checked on SQLite and PostgreSQL."""

from __future__ import annotations

import json
from collections.abc import Callable
from pathlib import Path

import pytest
from sqlalchemy import String

from producer.contract import messages, names
from producer.contract.messages import DecodeError, decode_envelope, decode_predict, decode_retrain
from registry import InvalidName, Registry, VersionNotFound
from registry.drafts import Draft
from registry.names import check_tenant_name
from registry.tables import Base

pytest_plugins = ["tests.registry_fixtures"]

MakeOnnx = Callable[..., Path]
LONGEST = "m" * names.NAME_MAX_LENGTH
TOO_LONG = "m" * (names.NAME_MAX_LENGTH + 1)
BAD_NAMES = ["", TOO_LONG, "a b", "digits\n", "-x", "a/b", "é", "x\x00"]


def test_the_registry_columns_are_as_wide_as_the_contract_allows() -> None:
    widths = {
        f"{table.name}.{column.name}": column.type.length
        for table in Base.metadata.tables.values()
        for column in table.columns
        if column.name in ("name", "model", "job_id", "tenant") and isinstance(column.type, String)
    }
    tenants = {"tenants.name", "audit_log.tenant", "quality_joins.tenant"}
    assert set(widths) >= {"models.name", "retrain_runs.job_id", "retrain_runs.model", *tenants}
    assert {widths.pop(column) for column in tenants} == {names.TENANT_NAME_MAX_LENGTH}
    assert set(widths.values()) == {names.NAME_MAX_LENGTH}, widths


def retrain(**fields: str) -> bytes:
    return messages.encode(
        messages.RetrainJob(job_id=fields.get("job_id", "j"), model=fields.get("model", "m"))
    )


@pytest.mark.parametrize("name", BAD_NAMES)
def test_a_job_naming_a_model_the_registry_cannot_hold_is_invalid(name: str) -> None:
    with pytest.raises(DecodeError) as raised:
        decode_retrain(retrain(model=name))
    assert raised.value.field == "model"
    predict = {"job_id": "j", "model": name, "inputs": {"x": [1]}}
    with pytest.raises(DecodeError) as raised:
        decode_predict(json.dumps(predict).encode())
    assert raised.value.field == "model"


@pytest.mark.parametrize("job_id", ["", "j" * 201, "a\nb", "tab\there", "\x7f", "\x85"])
def test_job_ids_are_bounded_and_free_of_control_characters(job_id: str) -> None:
    with pytest.raises(DecodeError) as raised:
        decode_retrain(retrain(job_id=job_id))
    assert raised.value.field == "job_id"
    with pytest.raises(DecodeError):
        decode_envelope(retrain(job_id=job_id))


def test_the_longest_names_decode() -> None:
    job = decode_retrain(retrain(job_id="j" * 200, model=LONGEST))
    assert (len(job.job_id), job.model) == (200, LONGEST)
    assert decode_retrain(retrain(job_id="ünïcode ok", model="all-MiniLM_L6.v2")).model


def test_the_longest_names_fit_the_database(any_registry: Registry, make_onnx: MakeOnnx) -> None:
    version = any_registry.models.register(LONGEST, Draft(make_onnx(), promote=True), actor="t")
    assert any_registry.models.resolve(LONGEST).version == version.version == 1
    run, created = any_registry.runs.start_run("j" * 200, LONGEST, trigger="manual")
    assert created and run.model == LONGEST
    schedule = any_registry.runs.add_schedule(LONGEST, "0 3 * * *", actor="t")
    assert schedule.model == LONGEST
    any_registry.models.promote(LONGEST, 1, alias="a" * names.ALIAS_MAX_LENGTH, actor="t")


@pytest.mark.parametrize("name", BAD_NAMES)
def test_names_that_do_not_fit_are_refused_before_the_database(
    any_registry: Registry, make_onnx: MakeOnnx, name: str
) -> None:
    with pytest.raises(InvalidName):
        any_registry.models.register(name, Draft(make_onnx()), actor="t")
    with pytest.raises(InvalidName):
        any_registry.runs.start_run("j", name, trigger="manual")
    with pytest.raises(InvalidName):
        any_registry.runs.add_schedule(name, "0 3 * * *", actor="t")
    assert any_registry.models.list_models() == []


def test_job_ids_and_aliases_that_do_not_fit_are_refused(
    any_registry: Registry, make_onnx: MakeOnnx
) -> None:
    with pytest.raises(InvalidName, match="1 to 200 characters, got 201"):
        any_registry.runs.start_run("j" * 201, "m", trigger="manual")
    with pytest.raises(InvalidName, match="not allowed"):
        any_registry.runs.start_run("a\x1bb", "m", trigger="manual")
    any_registry.models.register("m", Draft(make_onnx()), actor="t")
    with pytest.raises(InvalidName, match="1 to 100 characters"):
        any_registry.models.promote("m", 1, alias="a" * 101, actor="t")
    with pytest.raises(InvalidName):
        any_registry.models.register(
            "m", Draft(make_onnx(), promote=True), actor="t", alias="bad alias"
        )
    assert [v.version for v in any_registry.models.versions("m")] == [1]


@pytest.mark.parametrize("version", [0, -1, 2**31, 2**70])
def test_a_version_beyond_the_column_is_simply_not_found(
    any_registry: Registry, make_onnx: MakeOnnx, version: int
) -> None:
    any_registry.models.register("m", Draft(make_onnx()), actor="t")
    with pytest.raises(VersionNotFound, match="versions are 1-1"):
        any_registry.models.get_version("m", version)
    with pytest.raises(VersionNotFound):
        any_registry.models.promote("m", version, actor="t")


@pytest.mark.parametrize("name", ["acme", "a", "team-42", "x" * 63])
def test_tenant_names_that_make_topic_names(name: str) -> None:
    assert check_tenant_name(name) == name


@pytest.mark.parametrize(
    ("name", "message"),
    [
        ("Acme", "not allowed"),
        ("-acme", "not allowed"),
        ("a.b", "not allowed"),
        ("x" * 64, "1 to 63 characters"),
        ("", "1 to 63 characters"),
        ("acme\n", "not allowed"),
        ("results", "topic word"),
        ("dlq", "topic word"),
    ],
)
def test_tenant_names_that_would_break_topic_names_are_refused(name: str, message: str) -> None:
    with pytest.raises(InvalidName, match=message):
        check_tenant_name(name)
