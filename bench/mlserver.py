"""MLServer, the peer the gateway is measured against: its virtualenv, models and process.

MLServer (PyPI ``mlserver``, Seldon's OIP V2 server) runs from a virtualenv of its own
(scripts/mlserver_venv.sh, built when missing). It serves, with adaptive batching on
(``max_batch_size``/``max_batch_time`` as maas's ``--max-batch-size``/``--max-delay-ms``):

- ``digits`` and ``minilm``: maas's own ONNX files through bench/mlserver_runtimes.py
  (onnxruntime, as maas runs them): the same model on both sides;
- ``digits-sklearn``: MLServer's scikit-learn runtime (``mlserver-sklearn``, the one
  issue 24 names) with an MLPClassifier of the same hidden width trained on the same
  digits in that virtualenv (a joblib file only loads under the scikit-learn that
  wrote it).
"""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import time
import urllib.error
import urllib.request
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path

from maas.broker import free_port, terminate

ROOT = Path(__file__).resolve().parent.parent
_TRAIN_SKLEARN = """
import sys, joblib
from sklearn.datasets import load_digits
from sklearn.neural_network import MLPClassifier
data = load_digits()
model = MLPClassifier(hidden_layer_sizes=(128,), max_iter=300, random_state=0)
joblib.dump(model.fit(data.data, data.target), sys.argv[1])
"""


class Unavailable(Exception):
    """MLServer cannot run here; the message says why."""


@dataclass(frozen=True)
class Served:
    """One model MLServer serves: its name there, where its files are, its batching."""

    name: str
    implementation: str
    uri: Path
    max_batch_size: int
    max_batch_time_s: float


def venv() -> Path:
    """MLServer's virtualenv, built when missing (raises :class:`Unavailable`)."""
    try:
        built = subprocess.run(
            ["bash", str(ROOT / "scripts" / "mlserver_venv.sh")],
            capture_output=True,
            text=True,
            timeout=1800,
            check=False,
        )
    except (OSError, subprocess.TimeoutExpired) as exc:
        raise Unavailable(f"building MLServer's virtualenv failed: {exc}") from exc
    if built.returncode != 0:
        tail = (built.stderr.strip().splitlines() or ["no output"])[-1]
        raise Unavailable(f"building MLServer's virtualenv failed: {tail}")
    return Path(built.stdout.strip().splitlines()[-1])


def train_sklearn(env: Path, out: Path) -> Path:
    """The digits MLP for MLServer's scikit-learn runtime, written by the venv's sklearn."""
    path = out / "model.joblib"
    subprocess.run([str(env / "bin" / "python"), "-c", _TRAIN_SKLEARN, str(path)], check=True)
    return path


def write_repository(repo: Path, models: list[Served], port: int, workers: int) -> None:
    """MLServer's settings.json, one folder per model and the runtimes module."""
    repo.mkdir(parents=True, exist_ok=True)
    shutil.copy(Path(__file__).with_name("mlserver_runtimes.py"), repo / "mlserver_runtimes.py")
    settings = {
        "debug": False,  # no per-request logging (maas's gateway logs at warning)
        "http_port": port,
        "grpc_port": free_port(),
        "metrics_port": free_port(),
        "parallel_workers": workers,
    }
    (repo / "settings.json").write_text(json.dumps(settings))
    for model in models:
        folder = repo / model.name
        folder.mkdir(exist_ok=True)
        entry = {
            "name": model.name,
            "implementation": model.implementation,
            "parameters": {"uri": str(model.uri)},
            "max_batch_size": model.max_batch_size,
            "max_batch_time": model.max_batch_time_s,
        }
        (folder / "model-settings.json").write_text(json.dumps(entry))


def _ready(url: str) -> bool:
    try:
        with urllib.request.urlopen(url, timeout=2) as answer:
            return bool(answer.status == 200)
    except (urllib.error.URLError, OSError):
        return False


@contextmanager
def running(env: Path, repo: Path, models: list[Served], port: int) -> Iterator[int]:
    """``mlserver start`` on ``repo`` until every model is ready; yields its pid."""
    log = (repo / "mlserver.log").open("wb")
    environ = os.environ | {"PYTHONPATH": str(repo)}
    process = subprocess.Popen(
        [str(env / "bin" / "mlserver"), "start", str(repo)],
        cwd=repo,
        env=environ,
        stdout=log,
        stderr=subprocess.STDOUT,
    )
    try:
        deadline = time.monotonic() + 180
        for model in models:
            url = f"http://127.0.0.1:{port}/v2/models/{model.name}/ready"
            while not _ready(url):
                if process.poll() is not None or time.monotonic() > deadline:
                    tail = (repo / "mlserver.log").read_text(errors="replace")[-2000:]
                    raise Unavailable(f"MLServer did not get {model.name} ready:\n{tail}")
                time.sleep(0.5)
        yield process.pid
    finally:
        terminate(process, timeout_s=30)
        log.close()
