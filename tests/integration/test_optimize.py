"""Model optimisation without a broker: quantise, measure, judge and register.

Speed is measured for milliseconds here (``FAST``); the figures that matter are in
docs/serving.md, measured by bench/run.py and ``maas models optimize`` itself.
"""

from __future__ import annotations

import json
from collections.abc import Callable
from dataclasses import replace
from pathlib import Path

import numpy as np
import onnx
import onnxruntime as ort
import pytest

from registry import ArtifactError, ArtifactStore, ModelNotFound, Registry, VersionNotFound
from registry.drafts import Draft
from tests.optimize_helpers import (
    FAST,
    build_classifier,
    build_text_model,
    build_torchscript,
    build_weightless,
    write_rows,
)
from tests.optimize_helpers import features as random_rows
from workers.optimize import (
    Comparison,
    DataError,
    Int8Settings,
    NothingToQuantize,
    NotOnnx,
    Optimized,
    OptimizeSettings,
    Quality,
    Request,
    Speed,
    from_metrics,
    optimize,
    shortfall,
)
from workers.optimize.cpu import VNNI_FLAGS, cpu_flags, detect
from workers.optimize.optimizer import Candidate, judge
from workers.recipes import ParamsError
from workers.recipes.demo import build_digits_model
from workers.runtime.loader import load_runtime

Run = Callable[..., Optimized]


@pytest.fixture
def run(registry: Registry, tmp_path: Path) -> Run:
    """``run(model, version, **request fields)``: optimise with fast measurement."""
    counter = iter(range(1000))

    def run_one(
        model: str, version: int, settings: OptimizeSettings = FAST, **fields: object
    ) -> Optimized:
        workdir = tmp_path / f"work{next(counter)}"
        workdir.mkdir()
        request = Request(model, version, **fields)  # type: ignore[arg-type]
        return optimize(registry.models, request, workdir, actor="tester", settings=settings)

    return run_one


@pytest.fixture
def classifier(registry: Registry, tmp_path: Path) -> Path:
    path = build_classifier(tmp_path / "src" / "model.onnx")
    registry.models.register("clf", Draft(path, promote=True), actor="tester")
    return path


@pytest.fixture
def features() -> np.ndarray:
    return random_rows()


def labels_of(model: Path, x: np.ndarray) -> np.ndarray:
    session = ort.InferenceSession(str(model), providers=["CPUExecutionProvider"])
    labels: np.ndarray = session.run(["label"], {"x": x})[0]
    return labels


def ops(path: Path) -> set[str]:
    return {node.op_type for node in onnx.load(str(path)).graph.node}


# -- the optimised version ------------------------------------------------------------------


def test_dynamic_int8_is_registered_with_lineage_and_measured_figures(
    registry: Registry, run: Run, classifier: Path, features: np.ndarray, tmp_path: Path
) -> None:
    rows = write_rows(tmp_path / "rows.csv", features, labels_of(classifier, features))
    done = run("clf", 1, calibration=rows)

    version = done.version
    assert (version.version, version.derived_from, version.method) == (2, 1, "int8-dynamic")
    assert version.format == "onnx" and "MatMulInteger" in ops(version.path)
    ArtifactStore.verify(version.path, version.sha256)  # content-addressed like any version
    metrics = version.metrics
    assert metrics["parent_accuracy"] == 1.0  # the labels are the parent's own answers
    assert metrics["accuracy"] == metrics["agreement"] >= 0.9
    assert metrics["quality_drop"] == pytest.approx(1.0 - metrics["agreement"])
    assert metrics["eval_rows"] == 200
    assert metrics["size_bytes"] < metrics["parent_size_bytes"]
    assert metrics["rows_per_s"] > 0 and metrics["parent_rows_per_s"] > 0
    chosen = detect()  # the int8 settings this CPU calls for, recorded
    made = {"method": "int8-dynamic", "evaluated_on": f"rows of {rows}"}
    made |= {"reduce_range": chosen.reduce_range, "int8_cpu": chosen.why}
    assert version.params["optimization"] == made
    assert from_metrics(metrics) == done.candidate.comparison
    assert registry.models.aliases("clf") == {"production": 1}  # not asked to promote
    assert not done.verdict.promote
    register = next(
        e for e in registry.models.audit("clf") if e.action == "register" and e.version == 2
    )
    assert register.details["derived_from"] == 1 and register.details["method"] == "int8-dynamic"


def test_static_int8_calibrates_on_rows_it_is_not_measured_on(
    registry: Registry, run: Run, classifier: Path, features: np.ndarray, tmp_path: Path
) -> None:
    rows = write_rows(tmp_path / "rows.csv", features)  # no labels: agreement only
    version = run("clf", 1, method="static", calibration=rows).version

    assert version.method == "int8-static-qdq"
    assert {"QuantizeLinear", "DequantizeLinear"} <= ops(version.path)
    assert version.metrics["eval_rows"] == 100  # half calibrate, half measure
    assert "accuracy" not in version.metrics and version.metrics["agreement"] >= 0.8
    assert version.params["optimization"]["calibrated_on"] == f"rows of {rows}"


def text_model(registry: Registry, tmp_path: Path) -> tuple[Path, Path]:
    """A registered text model ("enc" version 1) and sentences to measure it on."""
    source = build_text_model(tmp_path / "text")
    registry.models.register("enc", Draft(source), actor="tester")
    texts = ["the cat sat on a mat", "a dog ran far", "the dog sat", "cat"] * 10
    data = tmp_path / "texts.jsonl"
    data.write_text("".join(json.dumps({"id": i, "text": t}) + "\n" for i, t in enumerate(texts)))
    return source, data


def test_a_text_model_keeps_its_tokenizer(registry: Registry, run: Run, tmp_path: Path) -> None:
    """With the int8 settings this CPU calls for (reduce_range without VNNI), the
    embeddings stay close to fp32 on either kind of x86 CPU; the choice is recorded."""
    source, data = text_model(registry, tmp_path)

    version = run("enc", 1, calibration=data).version

    assert version.signature.text_input == "text"
    assert (version.path / "tokenizer.json").read_bytes() == (
        source / "tokenizer.json"
    ).read_bytes()
    assert version.metrics["cosine_mean"] > 0.95 and version.metrics["cosine_min"] > 0.9
    runtime = load_runtime(version.path, "onnx", version.signature)
    embedding = runtime.infer(runtime.prepare({"text": ["the cat", "a dog ran"]}))["embedding"]
    assert embedding.shape == (2, 8)
    chosen = detect()
    assert version.metrics["int8_reduce_range"] == float(chosen.reduce_range)
    made = version.params["optimization"]
    assert (made["reduce_range"], made["int8_cpu"]) == (chosen.reduce_range, chosen.why)


@pytest.mark.parametrize("reduce_range", [True, False], ids=["7-bit", "8-bit"])
def test_each_int8_setting_keeps_a_text_model_close_where_the_cpu_allows(
    registry: Registry, run: Run, tmp_path: Path, reduce_range: bool
) -> None:
    """7-bit weights are close to fp32 on any CPU; full 8-bit weights only where the
    int8 dot product cannot saturate (VNNI), which is why the CPU chooses."""
    flags = cpu_flags() or frozenset()
    if not reduce_range and not flags & VNNI_FLAGS:
        pytest.skip("full 8-bit weights saturate on an x86 CPU without VNNI (cpu.py)")
    _, data = text_model(registry, tmp_path)
    settings = replace(FAST, int8=Int8Settings(reduce_range, "the test's choice"))

    version = run("enc", 1, settings=settings, calibration=data).version

    assert version.metrics["int8_reduce_range"] == float(reduce_range)
    assert version.params["optimization"]["int8_cpu"] == "the test's choice"
    assert version.metrics["cosine_mean"] > 0.95 and version.metrics["cosine_min"] > 0.9


def test_a_trained_version_is_measured_on_the_rows_its_recipe_held_out(
    registry: Registry, run: Run, tmp_path: Path
) -> None:
    trained = build_digits_model(tmp_path / "digits", epochs=3)
    parent = registry.models.register(
        "digits",
        Draft(
            trained.artifact,
            dataset_hash=trained.dataset_hash,
            params=trained.params,
            metrics=trained.metrics,
        ),
        actor="tester",
    )
    dynamic = run("digits", 1).version
    static = run("digits", 1, method="static").version

    assert dynamic.params["optimization"]["evaluated_on"] == "held-out rows of built-in 'digits'"
    assert dynamic.metrics["eval_rows"] == parent.metrics["n_test"] == 450
    assert dynamic.metrics["parent_accuracy"] == pytest.approx(parent.metrics["accuracy"])
    assert static.params["optimization"]["calibrated_on"] == "training rows of built-in 'digits'"
    assert static.metrics["eval_rows"] == 450
    # The derived version carries its parent's data and split: it can be optimised again.
    assert (dynamic.dataset_hash, dynamic.params["split_seed"]) == (trained.dataset_hash, 0)


# -- bad input: a clear error, and nothing registered ----------------------------------------


def test_a_torchscript_version_is_not_onnx(registry: Registry, run: Run, tmp_path: Path) -> None:
    registry.models.register("ts", Draft(build_torchscript(tmp_path / "ts")), actor="tester")
    with pytest.raises(NotOnnx, match=r"model\.pt is not an ONNX model"):
        run("ts", 1)
    assert [v.version for v in registry.models.versions("ts")] == [1]


@pytest.mark.parametrize("method", ["dynamic", "static"])
def test_a_model_without_quantisable_operators(
    registry: Registry, run: Run, tmp_path: Path, features: np.ndarray, method: str
) -> None:
    registry.models.register(
        "plain", Draft(build_weightless(tmp_path / "w" / "model.onnx")), actor="tester"
    )
    rows = write_rows(tmp_path / "rows.csv", features)
    with pytest.raises(NothingToQuantize, match=r"no operator .* quantises \(its operators: Relu"):
        run("plain", 1, method=method, calibration=rows)
    assert [v.version for v in registry.models.versions("plain")] == [1]


@pytest.mark.parametrize(
    ("content", "message"),
    [
        ("a,b,c\n1,2,3\n", r"does not fit the model: input 'x'"),
        ('{"pixels": [1, 2]}\n', r"unknown input 'pixels'; the model's inputs are: x"),
        (
            '{"x": ['
            + ",".join(["0"] * 16)
            + '], "label": 1}\n{"x": ['
            + ",".join(["0"] * 16)
            + "]}\n",
            r"row 1 has no 'label'",
        ),
        ('{"x": [1]}\n{"y": [1]}\n', r"row 1 has inputs \['y'\], the first row has \['x'\]"),
        ("", r"has no rows"),
    ],
    ids=["too-few-columns", "unknown-input", "label-on-some-rows", "ragged-inputs", "empty"],
)
def test_calibration_data_that_does_not_fit(
    registry: Registry, run: Run, classifier: Path, tmp_path: Path, content: str, message: str
) -> None:
    suffix = ".csv" if content.startswith("a,") else ".jsonl"
    data = tmp_path / f"bad{suffix}"
    data.write_text(content)
    with pytest.raises(DataError, match=message):
        run("clf", 1, calibration=data)
    assert [v.version for v in registry.models.versions("clf")] == [1]


def test_missing_rows_and_missing_files_say_what_to_pass(
    registry: Registry, run: Run, classifier: Path, tmp_path: Path
) -> None:
    with pytest.raises(DataError, match=r"carries no held-out rows.*--calibration FILE"):
        run("clf", 1)
    with pytest.raises(DataError, match=r"does not exist"):
        run("clf", 1, calibration=tmp_path / "nowhere.csv")
    one = write_rows(tmp_path / "one.csv", np.zeros((1, 16), dtype=np.float32))
    with pytest.raises(DataError, match=r"static quantisation needs rows to calibrate"):
        run("clf", 1, method="static", calibration=one)
    assert [v.version for v in registry.models.versions("clf")] == [1]


def test_a_missing_or_corrupt_parent(
    registry: Registry, run: Run, classifier: Path, features: np.ndarray, tmp_path: Path
) -> None:
    rows = write_rows(tmp_path / "rows.csv", features)
    with pytest.raises(VersionNotFound, match=r"has no version 7"):
        run("clf", 7, calibration=rows)
    with pytest.raises(ModelNotFound, match=r"no model named 'nope'"):
        run("nope", 1, calibration=rows)
    stored = registry.models.get_version("clf", 1).path
    stored.chmod(0o644)
    stored.write_bytes(stored.read_bytes() + b"\0")
    with pytest.raises(ArtifactError, match=r"is corrupt"):
        run("clf", 1, calibration=rows)
    assert [v.version for v in registry.models.versions("clf")] == [1]


def test_a_request_is_checked_when_made() -> None:
    with pytest.raises(ValueError, match=r"method must be one of dynamic, static"):
        Request("m", 1, method="float16")  # type: ignore[arg-type]
    with pytest.raises(ValueError, match=r"max_drop must be a finite number >= 0"):
        Request("m", 1, max_drop=-0.1)


# -- the verdict -------------------------------------------------------------------------------


def comparison(drop: float, speedup: float) -> Comparison:
    quality = Quality("agreement", drop, agreement=1.0 - drop)
    return Comparison(quality, Speed(1000.0, 64), Speed(1000.0 * speedup, 128), 4000, 1000, 100)


@pytest.mark.parametrize(
    ("drop", "speedup", "promote", "promoted", "decision"),
    [
        (
            0.02,
            2.0,
            True,
            False,
            "not promoted: its quality drop 0.0200 exceeds the allowed 0.0100",
        ),
        (
            0.0,
            0.8,
            True,
            False,
            "not promoted: it is not faster than its parent on this machine (0.80x",
        ),
        (0.005, 1.5, False, False, "registered without promotion (--promote promotes it)"),
        (0.01, 1.5, True, True, "promoted: within the allowed drop 0.0100 and 1.50x as fast"),
    ],
)
def test_promoted_only_when_asked_within_the_drop_and_faster(
    drop: float, speedup: float, promote: bool, promoted: bool, decision: str
) -> None:
    int8 = Int8Settings(False, "test")
    candidate = Candidate(Path("m"), "int8-dynamic", comparison(drop, speedup), "rows", None, int8)
    verdict = judge(candidate, 0.01, promote=promote, source=3)
    assert verdict.promote is promoted
    assert verdict.decision.startswith(decision) or decision in verdict.decision
    assert verdict.reason.startswith("int8-dynamic of version 3, ")
    assert "size 1.0 KB vs 4.0 KB (0.25x)" in verdict.reason
    assert (shortfall(candidate.comparison, 0.01) is None) is (drop <= 0.01 and speedup >= 1)


def test_retraining_params_are_checked() -> None:
    from workers.optimize.retrain import Quantize, split_params

    assert split_params({"epochs": 3}) == ({"epochs": 3}, None)
    assert split_params({"epochs": 3, "quantize": "static", "max_drop": 0.02}) == (
        {"epochs": 3},
        Quantize("static", 0.02),
    )
    with pytest.raises(ParamsError, match=r"'quantize' must be one of dynamic, static"):
        split_params({"quantize": "int4"})
    with pytest.raises(ParamsError, match=r"'max_drop' must be between 0 and 1"):
        split_params({"quantize": "dynamic", "max_drop": 2})
    with pytest.raises(ParamsError, match=r"give 'quantize' with it"):
        split_params({"max_drop": 0.1})
