"""A user's mistake or a missing service is one ``error:`` line and a documented exit
code, never a traceback; the Kafka libraries' own log noise stays off the terminal."""

from __future__ import annotations

import argparse
import logging
import socket
from pathlib import Path

import pytest

from maas.broker import EmbeddedBroker, free_port, holder
from maas.cli import main
from tests.cli_helpers import maas_process, no_noise, one_error_line
from workers import logs


def run(capsys: pytest.CaptureFixture[str], *argv: str) -> tuple[int, str, str]:
    code = main(list(argv))
    out, err = capsys.readouterr()
    return code, out, err


def test_submit_with_a_missing_inputs_file(
    capsys: pytest.CaptureFixture[str], tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.chdir(tmp_path)
    code, out, err = run(capsys, "submit", "--model", "digits", "--inputs", "@missing.json")
    assert (code, out) == (1, "")
    one_error_line(err, "--inputs", "missing.json", "No such file or directory")


@pytest.mark.parametrize(
    ("inputs", "fragment"),
    [
        ('{"x": [[1e400, 0.0]]}', "the number 1e400 is out of range"),
        ('{"x": [[NaN]]}', "NaN is not a number a model can take"),
        ('{"x": [[0.0,', "is not valid JSON"),
        ("[[0.0]]", 'an object of named tensors: {"x": [[...], ...]}'),
    ],
)
def test_submit_with_inputs_no_job_can_carry(
    capsys: pytest.CaptureFixture[str], inputs: str, fragment: str
) -> None:
    code, out, err = run(capsys, "submit", "--model", "digits", "--inputs", inputs)
    assert (code, out) == (1, "")
    one_error_line(err, "--inputs", fragment)


def test_score_refuses_a_file_it_cannot_read_before_connecting(
    capsys: pytest.CaptureFixture[str], tmp_path: Path
) -> None:
    notes = tmp_path / "notes.txt"
    notes.write_text("some notes\n")
    unreachable = ["--bootstrap-servers", f"127.0.0.1:{free_port()}"]
    out = str(tmp_path / "out.jsonl")
    code, _, err = run(capsys, "score", str(notes), "--model", "m", "--out", out, *unreachable)
    assert code == 1
    one_error_line(err, f"cannot score {notes}", "use one of .jsonl")
    missing = str(tmp_path / "missing.csv")
    code, _, err = run(capsys, "score", missing, "--model", "m", "--out", out, *unreachable)
    assert code == 1
    one_error_line(err, f"{missing} does not exist")


@pytest.mark.parametrize(
    ("url", "fragments"),
    [
        ("notaurl", ["'notaurl' is not a URL", "SQLite (sqlite:///", "PostgreSQL ("]),
        ("mysql://ann:secret@db/maas", ["names mysql", "does not support", "PostgreSQL ("]),
        ("postgresql+psycopg://ann:secret@127.0.0.1:1/maas", ["is unavailable", "running"]),
    ],
)
def test_database_urls_the_registry_cannot_use(
    capsys: pytest.CaptureFixture[str], url: str, fragments: list[str]
) -> None:
    code, out, err = run(capsys, "models", "list", "--database-url", url)
    assert (code, out) == (1, "")
    one_error_line(err, *fragments)
    assert "secret" not in err


def test_broker_on_a_busy_port(broker: EmbeddedBroker, capsys: pytest.CaptureFixture[str]) -> None:
    code, _, err = run(capsys, "broker", "--port", str(broker.port))
    assert code == 1
    pid = holder("127.0.0.1", broker.port)  # the module's broker: a maas broker, named as such
    one_error_line(err, f"port {broker.port} on 127.0.0.1 is held by an embedded maas broker")
    one_error_line(err, f"stop it with `kill {pid}`", "--port")


def test_broker_on_a_port_something_else_holds(capsys: pytest.CaptureFixture[str]) -> None:
    with socket.socket() as listener:
        listener.bind(("127.0.0.1", 0))
        listener.listen()
        port = listener.getsockname()[1]
        code, _, err = run(capsys, "broker", "--port", str(port))
    assert code == 1
    one_error_line(err, f"port {port} on 127.0.0.1 is already in use", "--port")


def test_worker_pool_with_an_unreachable_database_is_one_line(broker: EmbeddedBroker) -> None:
    done = maas_process(
        "worker",
        "--processes",
        "2",
        "--bootstrap-servers",
        broker.bootstrap_servers,
        "--database-url",
        f"postgresql+psycopg://maas@127.0.0.1:{free_port()}/maas",
    )
    assert done.returncode == 1
    one_error_line(done.stderr, "registry database", "is unavailable", "MAAS_DATABASE_URL")
    assert done.stdout == ""


def test_flags_that_must_be_positive_are_usage_errors(capsys: pytest.CaptureFixture[str]) -> None:
    for argv in (
        ["worker", "--processes", "0"],
        ["score", "in.jsonl", "--model", "m", "--out", "o", "--rows-per-job", "0"],
        ["score", "in.jsonl", "--model", "m", "--out", "o", "--max-in-flight", "0"],
    ):
        with pytest.raises(SystemExit) as exit_:
            main(argv)
        assert exit_.value.code == 2
        assert "must be at least 1, got 0" in capsys.readouterr().err


def test_submit_to_a_live_broker_without_a_worker_is_quiet(broker: EmbeddedBroker) -> None:
    done = maas_process(
        "submit",
        "--model",
        "digits",
        "--inputs",
        '{"x": [[0.0]]}',
        "--timeout",
        "1",
        "--bootstrap-servers",
        broker.bootstrap_servers,
        "--topic-prefix",
        "quiet.",
        "--embedded-broker",
    )
    assert (done.returncode, done.stdout) == (2, "")
    no_noise(done.stderr)
    one_error_line(done.stderr, "no result for job", "maas worker")


def test_kafka_library_logs_are_heard_only_at_debug_level(
    capsys: pytest.CaptureFixture[str],
) -> None:
    def emit() -> str:
        logging.getLogger("kafka.net.selector").error("Unhandled exception in task t")
        logging.getLogger("aiokafka.client").error('Unable connect to "127.0.0.1:1"')
        return capsys.readouterr().err

    logs.configure("json", "info")
    assert emit() == ""
    logs.configure("json", "debug")
    heard = emit()
    assert "Unhandled exception in task" in heard and "Unable connect to" in heard
    logs.configure("json", "info")


def test_a_bug_keeps_its_traceback(monkeypatch: pytest.MonkeyPatch) -> None:
    """Only users' mistakes and missing services are reported in one line."""

    def broken(args: argparse.Namespace) -> int:
        raise KeyError("a bug")

    monkeypatch.setattr("maas.commands.broker.run", broken)
    with pytest.raises(KeyError, match="a bug"):
        main(["broker"])


def test_params_out_of_range_are_usage_errors(capsys: pytest.CaptureFixture[str]) -> None:
    with pytest.raises(SystemExit) as exit_:
        main(["retrain", "digits", "--params", '{"lr": 1e400}'])
    assert exit_.value.code == 2
    assert "argument --params: the number 1e400 is out of range" in capsys.readouterr().err


@pytest.mark.parametrize(
    ("argv", "said"),
    [
        (["submit", "--modle", "digits"], "--modle: no such flag; did you mean --model?"),
        (["models", "register", "iris", "m.onnx", "--promte"], "did you mean --promote?"),
        (["--log-levl", "debug", "models", "list"], "did you mean --log-level?"),
    ],
)
def test_a_mistyped_flag_gets_the_close_one(
    argv: list[str], said: str, capsys: pytest.CaptureFixture[str]
) -> None:
    """Issue 27 item 11: ``--modle`` got "the following arguments are required: --model"."""
    with pytest.raises(SystemExit) as exit_:
        main(argv)
    assert exit_.value.code == 2
    err = capsys.readouterr().err
    assert err.splitlines() == [f"maas: error: {said}"] or said in err, err
    assert "required" not in err


def test_an_abbreviated_flag_is_not_taken_for_a_mistake(capsys: pytest.CaptureFixture[str]) -> None:
    # argparse takes --mod for --model: only --inputs is missing
    with pytest.raises(SystemExit) as exit_:
        main(["submit", "--mod", "digits"])
    assert exit_.value.code == 2
    assert "the following arguments are required: --inputs" in capsys.readouterr().err
