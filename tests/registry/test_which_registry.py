"""Which registry a command used is never a guess: a missing model names the registry
asked, ``maas models list`` says where it is, and a read from a directory without one
says so instead of creating an empty registry there."""

from __future__ import annotations

import os
import socket
from collections.abc import Callable
from pathlib import Path

import pytest
import structlog
from msgspec.structs import replace

from maas.cli import main
from producer.contract.messages import ControlEvent
from registry import RegistrySettings
from tests.cli_helpers import one_error_line
from workers.tenancy.control import from_another_registry


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


def test_a_write_says_which_registry_it_wrote_to(
    project: Path, capsys: pytest.CaptureFixture[str], make_onnx: Callable[..., Path]
) -> None:
    database = project / ".maas" / "registry.db"
    code, _, err = run(capsys, "models", "register", "wine", str(make_onnx()))
    assert code == 0
    assert f"wrote to registry {database} (SQLite)" in err.splitlines()

    elsewhere = project.parent / "elsewhere"
    elsewhere.mkdir()
    os.chdir(elsewhere)  # the trap: a register in another folder makes another registry
    code, _, err = run(capsys, "models", "register", "wine", str(make_onnx()))
    assert code == 0
    new = elsewhere / ".maas" / "registry.db"
    assert f"created and wrote to registry {new} (SQLite)" in err.splitlines()


def test_a_failed_write_in_an_empty_folder_leaves_no_registry(
    project: Path, capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch
) -> None:
    empty = project.parent / "empty"
    empty.mkdir()
    monkeypatch.chdir(empty)
    for argv in (
        ["schedule", "add", "digits", "--cron", "0 3 * * *"],
        ["models", "promote", "digits", "1", "--bootstrap-servers", "127.0.0.1:1"],
        ["tenants", "grant", "nobody", "digits"],
    ):
        code, out, err = run(capsys, *argv)
        assert (code, out) == (1, ""), argv
        one_error_line(err)
        assert list(empty.iterdir()) == [], argv


def test_a_control_event_from_another_registry_is_said_by_the_worker() -> None:
    event = ControlEvent(event="promote", model="iris", version=2, registry="laptop:/a/.maas/r.db")
    with structlog.testing.capture_logs() as logs:
        assert from_another_registry(event, "laptop:/b/.maas/r.db")
        assert not from_another_registry(event, "laptop:/a/.maas/r.db")
        assert not from_another_registry(replace(event, registry=None), "laptop:/b/.maas/r.db")
    (line,) = logs
    assert line["event"].startswith("control event from another registry")
    assert (line["publisher_registry"], line["this_registry"]) == (
        "laptop:/a/.maas/r.db",
        "laptop:/b/.maas/r.db",
    )


def test_a_sqlite_identity_names_the_host_and_the_absolute_file(tmp_path: Path) -> None:
    settings = RegistrySettings(database_url=f"sqlite:///{tmp_path / 'r.db'}")
    assert settings.identity == f"{socket.gethostname()}:{tmp_path / 'r.db'}"
    postgres = RegistrySettings(database_url="postgres://ann:secret@db:5433/maas")
    assert postgres.identity == "db:5433/maas"
