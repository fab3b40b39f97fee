"""Without an extra, the client verbs still run and the others say which extra to
install, in one line (maas/extras.py). The extras' modules are hidden from a child
interpreter here; tests/e2e/test_client_install.py installs the real client."""

from __future__ import annotations

import json
import subprocess
import sys

import pytest

from maas.extras import EXTRA_OF, MissingExtra, missing_extra

# Run the CLI as if the extras' modules were not installed.
HIDE = """
import importlib.abc, sys
hidden = set(sys.argv[1].split(","))
class Hide(importlib.abc.MetaPathFinder):
    def find_spec(self, name, path, target=None):
        if name.partition(".")[0] in hidden:
            raise ModuleNotFoundError(f"No module named {name!r}", name=name)
sys.meta_path.insert(0, Hide())
from maas.cli import main
sys.exit(main(sys.argv[2:]))
"""
ALL_EXTRAS = ",".join(EXTRA_OF)


def maas(hidden: str, *argv: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-c", HIDE, hidden, *argv],
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )


def test_the_client_verbs_import_no_extra() -> None:
    for verb in ("submit", "score", "retrain"):
        done = maas(ALL_EXTRAS, verb, "--help")
        assert done.returncode == 0, done.stderr
        assert f"usage: maas {verb}" in done.stdout
    listed = maas(ALL_EXTRAS, "--help")
    assert listed.returncode == 0 and "(needs: pip install 'maas[worker]')" in listed.stdout


@pytest.mark.parametrize(
    ("hidden", "argv", "line"),
    [
        (ALL_EXTRAS, ("worker", "--model", "digits"), "maas worker needs the `worker` extra"),
        (ALL_EXTRAS, ("models", "list"), "maas models list needs the `worker` extra"),
        (ALL_EXTRAS, ("trainer",), "maas trainer needs the `train` extra"),
        (
            "starlette,uvicorn,httptools,grpc",
            ("gateway",),
            "maas gateway needs the `gateway` extra",
        ),
        (
            "confluent_kafka",
            ("worker", "--transport", "librdkafka"),
            "maas worker needs the `rdkafka` extra",
        ),
        ("torch", ("trainer", "--help"), None),  # imports fine: torch is needed when it trains
    ],
)
def test_a_verb_without_its_extra_says_which_in_one_line(
    hidden: str, argv: tuple[str, ...], line: str | None
) -> None:
    done = maas(hidden, *argv)
    if line is None:
        assert done.returncode == 0, done.stderr
        return
    assert done.returncode == 1
    (only,) = done.stderr.strip().splitlines()
    assert only.startswith(f"error: {line} (") and "Traceback" not in done.stderr
    assert only.endswith("pip install 'maas[" + line.split("`")[1] + "]'")


def test_a_missing_module_is_mapped_to_its_extra() -> None:
    assert missing_extra(ModuleNotFoundError("x", name="onnxruntime.quantization")) == "worker"
    assert missing_extra(ModuleNotFoundError("x", name="torch")) == "train"
    assert missing_extra(ModuleNotFoundError("x", name="psycopg")) == "postgres"
    assert missing_extra(ModuleNotFoundError("x", name="not_ours")) is None  # a bug
    assert missing_extra(ImportError("cannot import name")) is None
    assert str(MissingExtra("up", "onnx", "worker")) == (
        "maas up needs the `worker` extra (onnx is not installed): pip install 'maas[worker]'"
    )


def test_a_client_verb_loads_no_extra_even_where_installed() -> None:
    """A command line that names its verb imports only that verb's module."""
    probe = (
        "import contextlib, json, sys\n"
        "from maas.cli import main\n"
        "with contextlib.redirect_stdout(None), contextlib.suppress(SystemExit):\n"
        "    main(['--log-level', 'debug', 'submit', '--help'])\n"
        "print(json.dumps(sorted({m.partition('.')[0] for m in sys.modules})))\n"
    )
    done = subprocess.run(
        [sys.executable, "-c", probe], capture_output=True, text=True, timeout=60, check=False
    )
    assert done.returncode == 0, done.stderr
    assert set(json.loads(done.stdout)) & set(EXTRA_OF) == set()
