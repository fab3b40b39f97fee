"""Versions derived from other versions: lineage recorded, both-or-neither registration."""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path

import pytest

from registry import ArtifactError, ConflictError, Draft, ModelNotFound, Registry, VersionNotFound
from registry.runs import RunOutcome

MakeOnnx = Callable[..., Path]


def test_register_records_what_a_version_was_derived_from(
    registry: Registry, make_onnx: MakeOnnx
) -> None:
    registry.models.register("m", Draft(make_onnx()), actor="ann")
    derived = registry.models.register(
        "m", Draft(make_onnx(), derived_from=1, method="int8-dynamic"), actor="ann"
    )
    assert (derived.derived_from, derived.method) == (1, "int8-dynamic")
    assert registry.models.get_version("m", 2) == derived
    assert registry.models.get_version("m", 1).derived_from is None


def test_a_derived_version_needs_its_source_and_its_method(
    registry: Registry, make_onnx: MakeOnnx
) -> None:
    registry.models.register("m", Draft(make_onnx()), actor="ann")
    with pytest.raises(VersionNotFound, match=r"has no version 5"):
        registry.models.register(
            "m", Draft(make_onnx(), derived_from=5, method="int8-dynamic"), actor="ann"
        )
    with pytest.raises(ValueError, match=r"give both or neither"):
        registry.models.register("m", Draft(make_onnx(), method="int8-dynamic"), actor="ann")
    assert [v.version for v in registry.models.versions("m")] == [1]


def test_register_derived_registers_both_in_one_transaction_and_finishes_the_run(
    registry: Registry, make_onnx: MakeOnnx
) -> None:
    registry.runs.start_run("job", "m", trigger="manual")
    base = Draft(make_onnx(), "trained", metrics={"accuracy": 0.9})
    derived = Draft(
        make_onnx(), "int8", promote=True, metrics={"accuracy": 0.89}, method="int8-static-qdq"
    )
    first, second = registry.models.register_derived(
        "m", base, derived, actor="ann", run_job_id="job"
    )

    assert (first.version, first.derived_from, first.method) == (1, None, None)
    assert (second.version, second.derived_from, second.method) == (2, 1, "int8-static-qdq")
    assert registry.models.aliases("m") == {"production": 2}
    run = registry.runs.get_run("job")
    assert run is not None
    assert (run.status, run.version, run.promoted, run.reason) == ("ok", 2, True, "int8")
    assert run.metrics == {"accuracy": 0.89}


def test_without_a_promotion_the_run_records_the_base_version(
    registry: Registry, make_onnx: MakeOnnx
) -> None:
    registry.runs.start_run("job", "m", trigger="manual")
    derived = Draft(make_onnx(), "int8", method="int8-dynamic")
    registry.models.register_derived(
        "m", Draft(make_onnx(), "base"), derived, actor="ann", run_job_id="job"
    )
    run = registry.runs.get_run("job")
    assert run is not None and (run.version, run.promoted, run.reason) == (1, False, "base")


def test_register_derived_registers_neither_when_one_fails(
    registry: Registry, make_onnx: MakeOnnx, tmp_path: Path
) -> None:
    broken = tmp_path / "broken.onnx"
    broken.write_bytes(b"not a model")
    with pytest.raises(ArtifactError):
        registry.models.register_derived(
            "m", Draft(make_onnx()), Draft(broken, method="int8-dynamic"), actor="ann"
        )
    with pytest.raises(ModelNotFound):
        registry.models.versions("m")
    registry.runs.start_run("done", "m", trigger="manual")
    registry.runs.finish_run("done", RunOutcome(status="error"))
    with pytest.raises(ConflictError, match=r"already finished"):
        registry.models.register_derived(
            "m",
            Draft(make_onnx()),
            Draft(make_onnx(), method="int8-dynamic"),
            actor="ann",
            run_job_id="done",
        )
    with pytest.raises(ModelNotFound):
        registry.models.versions("m")


def test_register_derived_refuses_two_promotions_and_a_missing_method(
    registry: Registry, make_onnx: MakeOnnx
) -> None:
    with pytest.raises(ValueError, match=r"not both"):
        registry.models.register_derived(
            "m",
            Draft(make_onnx(), promote=True),
            Draft(make_onnx(), promote=True, method="int8-dynamic"),
            actor="ann",
        )
    with pytest.raises(ValueError, match=r"needs the method"):
        registry.models.register_derived("m", Draft(make_onnx()), Draft(make_onnx()), actor="ann")


@pytest.mark.postgres
def test_lineage_on_postgres(pg_registry: Registry, make_onnx: MakeOnnx) -> None:
    pg_registry.models.register("m", Draft(make_onnx()), actor="ann")
    first, second = pg_registry.models.register_derived(
        "m", Draft(make_onnx()), Draft(make_onnx(), method="int8-dynamic"), actor="ann"
    )
    assert [(v.version, v.derived_from, v.method) for v in pg_registry.models.versions("m")] == [
        (1, None, None),
        (2, None, None),
        (3, 2, "int8-dynamic"),
    ]
    assert (first.version, second.version) == (2, 3)
