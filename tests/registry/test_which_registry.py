"""Which registry a command used is never a guess: a missing model names the registry
asked, ``maas models list`` says where it is, and a read from a directory without one
says so instead of creating an empty registry there."""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path

import pytest

from maas.cli import main
from registry import RegistrySettings
from tests.cli_helpers import one_error_line


@pytest.fixture
def project(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, make_onnx: Callable[..., Path]
) -> Path:
    """A directory with the default registry in it, holding model ``iris``."""
    root = tmp_path / "project"
    root.mkdir()
    monkeypatch.chdir(root)
    for name in ("MAAS_DATABASE_URL", "MAAS_ARTIFACT_DIR"):
        monkeypatch.delenv(name, raising=False)
    assert main(["models", "register", "iris", str(make_onnx())]) == 0
    return root


def run(capsys: pytest.CaptureFixture[str], *argv: str) -> tuple[int, str, str]:
    capsys.readouterr()
    code = main(list(argv))
    out, err = capsys.readouterr()
    return code, out, err


def test_list_says_where_the_registry_is(project: Path, capsys: pytest.CaptureFixture[str]) -> None:
    code, out, _ = run(capsys, "models", "list")
    assert code == 0
    database = project / ".maas" / "registry.db"
    assert out.splitlines()[0] == (
        f"registry: {database} (SQLite); artifacts: {project / '.maas' / 'artifacts'}"
    )
    assert "iris" in out


def test_a_missing_model_names_the_registry_asked(
    project: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    code, out, err = run(capsys, "models", "history", "irsi")
    assert (code, out) == (1, "")
    one_error_line(err, "no model named 'irsi'", f"(registry: {project / '.maas' / 'registry.db'}")


def test_reading_from_another_directory_creates_no_registry(
    project: Path, capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch
) -> None:
    elsewhere = project.parent / "elsewhere"
    elsewhere.mkdir()
    monkeypatch.chdir(elsewhere)
    for argv in (["models", "history", "iris"], ["models", "list"], ["schedule", "list"]):
        code, out, err = run(capsys, *argv)
        assert (code, out) == (1, ""), argv
        one_error_line(
            err,
            f"there is no registry at {elsewhere / '.maas' / 'registry.db'}",
            "relative to the current directory",
            "MAAS_DATABASE_URL",
        )
    assert not (elsewhere / ".maas").exists()


def test_a_postgresql_location_hides_the_password() -> None:
    settings = RegistrySettings(database_url="postgresql+psycopg://ann:secret@db:5432/maas")
    assert settings.location == "postgresql+psycopg://ann:***@db:5432/maas"
    assert "secret" not in repr(settings) and "ann:***@db" in repr(settings)
