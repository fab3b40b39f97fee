"""``maas models optimize`` as a user runs it, and the optimised version served by a real
worker through the real embedded broker: its answers agree with the parent's within
what the command reported; it promotes, hot-swaps and rolls back like any version."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator, Callable, Iterator
from pathlib import Path

import numpy as np
import pytest
import structlog

from maas.cli import main
from producer.control import alias_move_publisher
from producer.kafka import KafkaSettings
from registry import Registry, RegistrySettings
from registry.drafts import Draft
from tests.kafka_helpers import job, publish, read_results
from tests.optimize_helpers import (
    build_classifier,
    build_torchscript,
    build_weightless,
    features,
    write_rows,
)
from workers.recipes import TrainedModel
from workers.recipes.data import load_builtin
from workers.recipes.demo import build_digits_model, demo_held_out_rows
from workers.serving.loop import Worker, WorkerSettings

Maas = Callable[..., tuple[int, str, str]]
READ_ONLY = frozenset({"list", "show", "history", "stats"})  # no --actor, no Kafka flags


@pytest.fixture(autouse=True)
def _restore_logging() -> Iterator[None]:
    """``main`` configures structlog for the whole process (here at warning level):
    put it back, so that later tests capture the info events they look for."""
    saved = structlog.get_config()
    yield
    structlog.configure(**saved)


@pytest.fixture(autouse=True)
def _control_topic(monkeypatch: pytest.MonkeyPatch, kafka: KafkaSettings) -> None:
    """Alias moves are announced on the control topic of the real test broker."""
    monkeypatch.setenv("MAAS_BOOTSTRAP_SERVERS", kafka.bootstrap_servers)
    monkeypatch.setenv("MAAS_TOPIC_PREFIX", kafka.topics.prefix)
    monkeypatch.setenv("MAAS_EMBEDDED_BROKER", "1")


@pytest.fixture
def maas(registry_settings: RegistrySettings, capsys: pytest.CaptureFixture[str]) -> Maas:
    """Run ``maas models ...`` against the test registry; returns (code, stdout, stderr)."""
    options = ["--database-url", registry_settings.database_url]
    options += ["--artifact-dir", str(registry_settings.artifact_dir)]

    def run(*argv: str) -> tuple[int, str, str]:
        capsys.readouterr()  # what the test printed before, e.g. its own registrations
        actor = [] if argv[0] in READ_ONLY else ["--actor", "tester"]
        code = main(["--log-level", "warning", "models", *argv, *options, *actor])
        out, err = capsys.readouterr()
        return code, out, err

    return run


@pytest.fixture(scope="module")
def trained(tmp_path_factory: pytest.TempPathFactory) -> TrainedModel:
    return build_digits_model(tmp_path_factory.mktemp("digits"), epochs=5)


@pytest.fixture
def digits(registry: Registry, trained: TrainedModel) -> None:
    registry.models.register(
        "digits",
        Draft(
            trained.artifact,
            promote=True,
            dataset_hash=trained.dataset_hash,
            params=trained.params,
            metrics=trained.metrics,
        ),
        actor="tester",
    )


@pytest.fixture
async def worker(kafka: KafkaSettings, registry_settings: RegistrySettings) -> AsyncIterator[None]:
    with Registry.open(registry_settings, on_alias_move=alias_move_publisher(kafka)) as opened:
        serving = Worker(kafka, opened.models, opened.metrics, WorkerSettings(alias_ttl_s=60.0))
        stop = asyncio.Event()
        task = asyncio.create_task(serving.run(stop))
        await asyncio.wait_for(serving.ready.wait(), 30)
        yield
        stop.set()
        await asyncio.wait_for(task, 60)


async def serve(kafka: KafkaSettings, pixels: np.ndarray, tag: str, **fields: object) -> list[int]:
    """Labels the worker gives ``pixels``, 50 rows a job; checks the version answering."""
    chunks = [pixels[i : i + 50].tolist() for i in range(0, len(pixels), 50)]
    ids = [f"{tag}-{i}" for i in range(len(chunks))]
    await publish(
        kafka,
        kafka.topics.predict,
        [job(j, {"x": c}, **fields) for j, c in zip(ids, chunks, strict=True)],
    )
    results = await read_results(kafka, set(ids), timeout_s=60)
    assert all(results[j]["status"] == "ok" for j in ids)
    if "version" in fields:
        assert {results[j]["version"] for j in ids} == {fields["version"]}
    return [label for j in ids for label in results[j]["outputs"]["label"]]


async def test_the_optimised_version_serves_and_agrees_with_its_parent_as_reported(
    maas: Maas, registry: Registry, digits: None, kafka: KafkaSettings, worker: None
) -> None:
    code, out, err = await asyncio.to_thread(maas, "optimize", "digits", "1", "--max-drop", "0.05")
    assert code == 0, err
    assert "registered digits version 2: int8-dynamic of version 1" in out
    assert "measured on 450 held-out rows of built-in 'digits'" in out
    for row in ("accuracy", "size", "rows/s"):
        assert f"\n {row} " in out
    assert registry.models.aliases("digits") == {"production": 1}  # not asked to promote

    reported = registry.models.get_version("digits", 2).metrics
    data, rows = load_builtin("digits"), demo_held_out_rows()
    pixels, truth = data.x[rows], data.y[rows].tolist()
    parent = await serve(kafka, pixels, "v1", version=1)
    child = await serve(kafka, pixels, "v2", version=2)
    agreement = float(np.mean(np.equal(parent, child)))
    accuracy = [float(np.mean(np.equal(labels, truth))) for labels in (parent, child)]
    # Dynamic int8 scales activations per batch, so served batches may differ slightly
    # from measured ones: allow half a percent beyond what was reported.
    assert agreement >= reported["agreement"] - 0.005
    assert accuracy[0] == pytest.approx(reported["parent_accuracy"])
    assert accuracy[1] >= accuracy[0] - reported["quality_drop"] - 0.005

    code, out, _ = maas("show", "digits")
    assert code == 0 and "int8-dynamic of 1" in out
    assert "version 2 (int8-dynamic of 1) measured on 450 rows, accuracy" in out

    assert maas("promote", "digits", "2", "--reason", "int8")[0] == 0
    for attempt in range(50):  # the control event reaches the worker: hot swap
        await publish(
            kafka, kafka.topics.predict, [job(f"after-{attempt}", {"x": pixels[:1].tolist()})]
        )
        if (await read_results(kafka, {f"after-{attempt}"}))[f"after-{attempt}"]["version"] == 2:
            break
        await asyncio.sleep(0.1)
    else:
        pytest.fail("the worker never served the promoted int8 version")
    assert maas("rollback", "digits", "--reason", "back")[0] == 0
    code, out, _ = maas("history", "digits")
    lines = out.strip().splitlines()
    assert code == 0 and "2 int8-dynamic of 1" in lines[2] and "rollback" in lines[3]


def test_static_with_a_calibration_file_and_the_gate_on_promotion(
    maas: Maas, registry: Registry, tmp_path: Path
) -> None:
    model = build_classifier(tmp_path / "clf" / "model.onnx")
    registry.models.register("clf", Draft(model, promote=True), actor="tester")
    x = features()
    rows = write_rows(tmp_path / "rows.csv", x, labels=np.zeros(len(x), dtype=np.int64))
    code, out, err = maas(
        "optimize",
        "clf",
        "1",
        "--quantize",
        "static",
        "--calibration",
        str(rows),
        "--max-drop",
        "0.05",
        "--promote",
    )
    assert code == 0, err
    assert "int8-static-qdq of version 1 (sha256 " in out and f"on 100 rows of {rows}" in out
    metrics = registry.models.get_version("clf", 2).metrics
    promoted = metrics["quality_drop"] <= 0.05 and metrics["speedup"] >= 1.0
    assert registry.models.aliases("clf") == {"production": 2 if promoted else 1}
    assert ("production -> 2: promoted" in out) is promoted
    assert ("registered but not promoted" in out) is not promoted


@pytest.mark.parametrize(
    ("setup", "argv", "message"),
    [
        ("torchscript", ["ts", "1"], "model.pt is not an ONNX model"),
        (
            "weightless",
            ["plain", "1", "--calibration", "{rows}"],
            "no operator that dynamic quantisation quantises",
        ),
        ("classifier", ["clf", "1", "--calibration", "{narrow}"], "does not fit the model"),
        ("classifier", ["clf", "1"], "carries no held-out rows"),
        ("classifier", ["clf", "3", "--calibration", "{rows}"], "has no version 3"),
        ("classifier", ["gone", "1"], "no model named 'gone'"),
        ("classifier", ["clf", "1", "--max-drop", "-1"], "max_drop must be a finite number >= 0"),
    ],
    ids=[
        "not-onnx",
        "nothing-to-quantize",
        "wrong-columns",
        "no-rows",
        "missing-version",
        "missing-model",
        "bad-max-drop",
    ],
)
def test_bad_input_is_one_clear_line_a_non_zero_exit_and_nothing_registered(
    maas: Maas, registry: Registry, tmp_path: Path, setup: str, argv: list[str], message: str
) -> None:
    builders: dict[str, Callable[[Path], Path]] = {
        "torchscript": build_torchscript,
        "weightless": lambda p: build_weightless(p / "model.onnx"),
        "classifier": lambda p: build_classifier(p / "model.onnx"),
    }
    name = {"torchscript": "ts", "weightless": "plain", "classifier": "clf"}[setup]
    registry.models.register(name, Draft(builders[setup](tmp_path / "model")), actor="tester")
    paths = {
        "rows": write_rows(tmp_path / "rows.csv", features()),
        "narrow": write_rows(tmp_path / "narrow.csv", features()[:, :3]),
    }
    code, out, err = maas("optimize", *(arg.format(**paths) for arg in argv))
    assert code == 1 and out == ""
    assert err.startswith("error: ") and message in err and len(err.strip().splitlines()) == 1
    assert [v.version for v in registry.models.versions(name)] == [1]


def test_the_verb_is_listed(capsys: pytest.CaptureFixture[str]) -> None:
    with pytest.raises(SystemExit):
        main(["models", "optimize", "--help"])
    out = capsys.readouterr().out
    assert "--quantize {dynamic,static}" in out and "--max-drop" in out and "--calibration" in out
