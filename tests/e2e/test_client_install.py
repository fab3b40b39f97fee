"""The client installs like a client: ``pip install maas`` (the wheel, no extra) in a
fresh virtualenv brings neither torch nor ONNX Runtime nor SQLAlchemy, and its
``maas submit`` gets an answer from a worker started from the full install; the verbs
that need an extra say which in one line.

The wheel is built from a copy of the tree (nothing is written into the checkout) and
installed with ``constraints.txt``; its dependencies come from the package index
through pip's cache.
"""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
from pathlib import Path
from typing import TYPE_CHECKING

import pytest

from workers.recipes.demo import digits_samples

if TYPE_CHECKING:
    from tests.serving_fixtures import ServedDigits

# Building the wheel and the virtualenv takes most of a minute (more on a cold pip cache).
pytestmark = [pytest.mark.slow, pytest.mark.timeout(600)]

ROOT = Path(__file__).resolve().parents[2]
SOURCES = ("maas", "producer", "workers", "registry", "migrations")
# The extras' modules, none of which the client may bring.
NOT_IN_THE_CLIENT = ("torch", "onnxruntime", "onnx", "sqlalchemy", "sklearn", "tokenizers")


def _run(*argv: str | Path, cwd: Path, timeout_s: float = 300) -> str:
    done = subprocess.run(
        [str(a) for a in argv],
        capture_output=True,
        text=True,
        cwd=cwd,
        env=_clean_env(),
        timeout=timeout_s,
        check=False,
    )
    assert done.returncode == 0, f"{argv[:3]} failed:\n{done.stdout}\n{done.stderr}"
    return done.stdout


def _clean_env() -> dict[str, str]:
    """The user's environment: nothing of this checkout or of the test's venv."""
    drop = ("PYTHONPATH", "VIRTUAL_ENV", "PIP_REQUIRE_VIRTUALENV")
    env = {k: v for k, v in os.environ.items() if k not in drop and not k.startswith("MAAS_")}
    env["PIP_DISABLE_PIP_VERSION_CHECK"] = "1"
    return env


@pytest.fixture(scope="module")
def client(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """The ``bin`` folder of a fresh virtualenv with only the maas wheel installed."""
    work = tmp_path_factory.mktemp("client-install")
    tree = work / "tree"
    tree.mkdir()
    for name in SOURCES:
        shutil.copytree(ROOT / name, tree / name, ignore=shutil.ignore_patterns("__pycache__"))
    for name in ("pyproject.toml", "README.md", "constraints.txt"):
        shutil.copy2(ROOT / name, tree / name)
    pip = (sys.executable, "-m", "pip")
    _run(
        *pip,
        "wheel",
        "-q",
        "--no-deps",
        "--no-build-isolation",
        "-w",
        work / "dist",
        tree,
        cwd=work,
    )
    (wheel,) = (work / "dist").glob("maas-*.whl")
    _run(sys.executable, "-m", "venv", work / "venv", cwd=work)
    bin_dir = work / "venv" / "bin"
    _run(
        bin_dir / "python",
        "-m",
        "pip",
        "install",
        "-q",
        "-c",
        tree / "constraints.txt",
        wheel,
        cwd=work,
    )
    return bin_dir


def test_the_client_install_has_no_runtime_training_or_registry(client: Path) -> None:
    probe = (
        "import importlib.util, json; "
        f"print(json.dumps([m for m in {NOT_IN_THE_CLIENT!r} if importlib.util.find_spec(m)]))"
    )
    assert json.loads(_run(client / "python", "-c", probe, cwd=client)) == []
    # The installed maas, not this checkout's.
    where = _run(client / "python", "-c", "import maas; print(maas.__file__)", cwd=client)
    assert where.startswith(str(client.parent))


def test_submit_from_the_client_is_answered_by_a_worker(
    client: Path, served_digits: ServedDigits
) -> None:
    kafka = served_digits.kafka
    pixels, _ = digits_samples(3)
    out = _run(
        client / "maas",
        "submit",
        "--model",
        "digits",
        "--inputs",
        json.dumps({"x": pixels.tolist()}),
        "--bootstrap-servers",
        kafka.bootstrap_servers,
        "--topic-prefix",
        kafka.topics.prefix,
        "--timeout",
        "60",
        cwd=client,
        timeout_s=120,
    )
    result = json.loads(out)
    assert (result["status"], result["version"]) == ("ok", served_digits.version)
    assert len(result["outputs"]["label"]) == 3


@pytest.mark.parametrize(
    ("argv", "extra"),
    [
        (("worker", "--model", "digits"), "worker"),
        (("models", "list"), "worker"),
        (("up",), "worker"),
        (("trainer",), "train"),
    ],
)
def test_a_verb_without_its_extra_says_which_to_install(
    client: Path, argv: tuple[str, ...], extra: str
) -> None:
    done = subprocess.run(
        [str(client / "maas"), *argv],
        capture_output=True,
        text=True,
        cwd=client,
        env=_clean_env(),
        timeout=60,
        check=False,
    )
    assert done.returncode == 1, done.stderr
    (line,) = done.stderr.strip().splitlines()  # one line, no traceback
    # "maas models list needs ...": the verb, with its group's verb where it has one
    assert line.startswith(f"error: maas {argv[0]}") and f"needs the `{extra}` extra (" in line
    assert line.endswith(f"is not installed): pip install 'maas[{extra}]'")
