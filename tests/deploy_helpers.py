"""Helpers for the deployment tests: the files under deploy/, maas processes, scraping.

Imported as a plain module (no fixtures here).
"""

from __future__ import annotations

import json
import os
import re
import signal
import subprocess
import sys
import time
import urllib.error
import urllib.request
from collections.abc import Iterator, Mapping, Sequence
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import yaml
from prometheus_client.parser import text_string_to_metric_families

ROOT = Path(__file__).resolve().parents[1]
DEPLOY = ROOT / "deploy"
DASHBOARD = DEPLOY / "grafana" / "dashboards" / "maas.json"
ALERTS = DEPLOY / "prometheus" / "alerts.yml"

# The metrics that only the trainer and the scheduler export; every other maas_* name
# that deploy/ uses must come from the workers.
TRAINER_METRICS = {"maas_retrain_jobs_total", "maas_retrain_seconds_bucket"}
SCHEDULER_METRICS = {"maas_scheduler_fires_total"}
# What the monitor (maas monitor) exports that deploy/ queries.
MONITOR_METRICS = {
    "maas_quality_labelled_rows_total",
    "maas_quality_correct_rows_total",
    "maas_monitor_rows_total",
    "maas_monitor_drift_share",
    "maas_monitor_prediction_drift",
    "maas_monitor_estimated_accuracy",
    "maas_monitor_policy_fires_total",
}
# What the gateway (maas gateway) exports that deploy/ queries.
GATEWAY_METRICS = {
    "maas_gateway_requests_total",
    "maas_gateway_request_seconds_bucket",
    "maas_gateway_pending_requests",
    "maas_gateway_broker_reachable",
}

_METRIC_NAME = re.compile(r"\bmaas_[a-z0-9_]+")


def load_yaml(path: Path) -> Any:
    return yaml.safe_load(path.read_text())


def load_yaml_all(path: Path) -> list[Any]:
    return list(yaml.safe_load_all(path.read_text()))


# -- the PromQL of deploy/ ------------------------------------------------------------------


def dashboard_queries() -> list[str]:
    """Every PromQL expression of the Grafana dashboard: panel targets and variables."""
    dashboard = json.loads(DASHBOARD.read_text())
    queries = [t["expr"] for p in dashboard["panels"] for t in p.get("targets", [])]
    for variable in dashboard["templating"]["list"]:
        if variable["type"] == "query":
            queries.append(variable["query"]["query"])
    return queries


def alert_queries() -> list[str]:
    return [rule["expr"] for group in load_yaml(ALERTS)["groups"] for rule in group["rules"]]


def maas_metric_names(queries: Sequence[str]) -> set[str]:
    return {name for query in queries for name in _METRIC_NAME.findall(query)}


def names_used_in_deploy() -> set[str]:
    return maas_metric_names([*dashboard_queries(), *alert_queries()])


# -- what a process exports -----------------------------------------------------------------

_SUFFIXES = {"counter": ("_total",), "histogram": ("_bucket", "_sum", "_count"), "gauge": ("",)}


def exported_names(page: str) -> set[str]:
    """The series names a PromQL query can use, for every family the page declares
    (labelled families without a child yet included: they are exported, at no value)."""
    names = set()
    for family in text_string_to_metric_families(page):
        names.update(family.name + suffix for suffix in _SUFFIXES.get(family.type, ("",)))
    return names


def samples(page: str, name: str) -> list[tuple[dict[str, str], float]]:
    """The (labels, value) of every sample called ``name`` on a /metrics page."""
    return [
        (sample.labels, sample.value)
        for family in text_string_to_metric_families(page)
        for sample in family.samples
        if sample.name == name
    ]


def get(url: str, timeout_s: float = 5.0) -> tuple[int, str]:
    """HTTP GET: (status, body), error statuses included."""
    try:
        with urllib.request.urlopen(url, timeout=timeout_s) as response:
            return response.status, response.read().decode()
    except urllib.error.HTTPError as exc:
        return exc.code, exc.read().decode()


# -- maas processes -------------------------------------------------------------------------


@dataclass
class Process:
    """A maas process started by :func:`running`, with its metrics port and its log."""

    name: str
    popen: subprocess.Popen[bytes]
    log: Path
    metrics_port: int | None

    def url(self, path: str) -> str:
        assert self.metrics_port is not None, f"{self.name} serves no metrics"
        return f"http://127.0.0.1:{self.metrics_port}{path}"

    def tail(self, lines: int = 40) -> str:
        return "\n".join(self.log.read_text(errors="replace").splitlines()[-lines:])

    def wait_ready(self, timeout_s: float = 90.0) -> None:
        """Until /readyz answers 200; fails with the reason and the log otherwise."""
        deadline = time.monotonic() + timeout_s
        answer = "no answer"
        while time.monotonic() < deadline:
            if self.popen.poll() is not None:
                raise AssertionError(f"{self.name} exited {self.popen.returncode}:\n{self.tail()}")
            try:
                status, body = get(self.url("/readyz"), timeout_s=2)
            except OSError as exc:
                answer = str(exc)
            else:
                if status == 200:
                    return
                answer = f"{status} {body.strip()}"
            time.sleep(0.25)
        raise AssertionError(f"{self.name} not ready in {timeout_s:.0f} s: {answer}\n{self.tail()}")

    def stop(self, timeout_s: float = 60.0) -> int:
        """SIGTERM, then the exit code (killed if it does not stop in time)."""
        if self.popen.poll() is None:
            self.popen.send_signal(signal.SIGTERM)
        try:
            return self.popen.wait(timeout_s)
        except subprocess.TimeoutExpired:
            self.popen.kill()
            self.popen.wait()
            raise AssertionError(f"{self.name} ignored SIGTERM for {timeout_s:.0f} s") from None


def maas_command(*args: str) -> list[str]:
    """The ``maas`` console script, run from this checkout (see :func:`process_env`)."""
    return [sys.executable, "-m", "maas.cli", *args]


def process_env(env: Mapping[str, str]) -> dict[str, str]:
    """This process's environment with ``env`` on top; this checkout's code comes first
    wherever the process runs."""
    return {**os.environ, "PYTHONPATH": str(ROOT), **env}


@contextmanager
def running(
    name: str,
    command: Sequence[str],
    env: Mapping[str, str],
    logs: Path,
    *,
    cwd: Path | None = None,
    metrics_port: int | None = None,
) -> Iterator[Process]:
    """Start ``command``; on the way out stop it (SIGTERM) if it still runs."""
    log = logs / f"{name}.log"
    with open(log, "wb") as out:
        popen = subprocess.Popen(
            list(command),
            env=process_env(env),
            cwd=cwd or ROOT,
            stdout=out,
            stderr=subprocess.STDOUT,
        )
    process = Process(name, popen, log, metrics_port)
    try:
        yield process
    finally:
        if popen.poll() is None:
            popen.kill()
            popen.wait()
