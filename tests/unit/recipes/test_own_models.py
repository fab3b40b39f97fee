"""docs/models.md as a user follows it: its scripts export models, its commands register
and promote them; and what ``maas models register`` says about artifacts."""

from __future__ import annotations

import re
import shlex
import subprocess
import sys
from collections.abc import Callable
from pathlib import Path

import pytest

from maas.cli import main
from producer.kafka import KafkaSettings
from tests.cli_helpers import ROOT, one_error_line

GUIDE = (ROOT / "docs" / "models.md").read_text()


def blocks(language: str) -> list[str]:
    return re.findall(rf"```{language}\n(.*?)```", GUIDE, flags=re.DOTALL)


@pytest.fixture(scope="module")
def exported(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """The directory where the guide's scripts ran, holding the ONNX files they wrote."""
    workdir = tmp_path_factory.mktemp("guide")
    scripts = blocks("python")
    assert len(scripts) == 2
    for script in scripts:
        done = subprocess.run(
            [sys.executable, "-c", script],
            cwd=workdir,
            capture_output=True,
            text=True,
            timeout=300,
            check=False,
        )
        assert done.returncode == 0, done.stderr
        assert "ModuleNotFoundError" not in done.stderr
    return workdir


@pytest.fixture
def maas(
    exported: Path,
    tmp_path: Path,
    kafka: KafkaSettings,
    monkeypatch: pytest.MonkeyPatch,
    capsys: pytest.CaptureFixture[str],
) -> Callable[[str], tuple[int, str, str]]:
    """Run one documented command line in the guide's directory, on a registry of its own."""
    monkeypatch.chdir(exported)
    monkeypatch.setenv("MAAS_DATABASE_URL", f"sqlite:///{tmp_path / 'registry.db'}")
    monkeypatch.setenv("MAAS_ARTIFACT_DIR", str(tmp_path / "artifacts"))
    monkeypatch.setenv("MAAS_BOOTSTRAP_SERVERS", kafka.bootstrap_servers)
    monkeypatch.setenv("MAAS_TOPIC_PREFIX", kafka.topics.prefix)
    monkeypatch.setenv("MAAS_EMBEDDED_BROKER", "1")

    def run(line: str) -> tuple[int, str, str]:
        argv = shlex.split(line)
        assert argv[0] == "maas"
        capsys.readouterr()
        code = main(argv[1:])
        out, err = capsys.readouterr()
        return code, out, err

    return run


def test_the_guides_scripts_export_models_that_register_and_promote(
    maas: Callable[[str], tuple[int, str, str]],
) -> None:
    commands = [
        line
        for block in blocks("sh")
        for line in block.splitlines()
        if line.startswith("maas models")
    ]
    assert len(commands) == 4
    outputs = []
    for line in commands:
        code, out, err = maas(line)
        assert code == 0, f"{line}: {err}"
        outputs.append(out)
    assert "registered iris version 1" in outputs[0] and "production -> 1" in outputs[0]
    assert "features: float32[batch,4] -> probabilities: float32[batch,3]" in outputs[1]
    assert "iris production: 1 -> 2" in outputs[3]


def test_registering_the_same_artifact_again_says_so(
    maas: Callable[[str], tuple[int, str, str]],
) -> None:
    assert maas("maas models register iris iris_torch.onnx")[0] == 0
    code, out, _ = maas("maas models register iris iris_torch.onnx")
    assert code == 0 and "registered iris version 2" in out
    assert "note: the same artifact is already version 1 of iris" in out


def test_an_artifact_that_does_not_exist_is_named_as_such(
    maas: Callable[[str], tuple[int, str, str]],
) -> None:
    code, out, err = maas("maas models register iris no/such/model.onnx")
    assert (code, out) == (1, "")
    one_error_line(err, "artifact no/such/model.onnx does not exist")
    code, _, err = maas("maas models register iris no-such-directory")
    one_error_line(err, "artifact no-such-directory does not exist")


def test_an_unloadable_model_points_at_the_export_that_works(
    maas: Callable[[str], tuple[int, str, str]], tmp_path: Path
) -> None:
    broken = tmp_path / "broken.onnx"
    broken.write_bytes(b"not onnx")
    code, _, err = maas(f"maas models register iris {broken}")
    assert code == 1
    one_error_line(err, "is not a loadable ONNX model", "dynamo=False", "docs/models.md")
