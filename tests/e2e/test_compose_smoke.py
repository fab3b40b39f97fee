"""compose.yaml, run as local processes: as close to ``docker compose up`` as a machine
without a container engine comes.

Each maas service of compose.yaml runs with its own command (the image's ``maas``
entrypoint) and its own environment, the image's included, rewritten only where it
points into the compose network and volumes: the test's broker instead of kafka:9092,
a fresh PostgreSQL database instead of postgres:5432, a temporary folder instead of
/var/lib/maas, a free port instead of the metrics port. In compose's order: the
migration first (it must exit 0), then the worker, the trainer and the scheduler. A
schedule that is due makes the scheduler publish a retrain job, the trainer trains and
promotes digits version 1, and ``maas submit`` gets a prediction from the worker; each
process serves its probes and the metrics that deploy/ queries, and stops cleanly.
"""

from __future__ import annotations

import asyncio
import json
import re
import subprocess
import uuid
from collections.abc import Iterator
from contextlib import ExitStack
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import pytest

from maas.broker import free_port
from producer.kafka import KafkaSettings, Topics
from registry.registry import Registry
from registry.settings import RegistrySettings
from tests.deploy_helpers import (
    ROOT,
    SCHEDULER_METRICS,
    TRAINER_METRICS,
    Process,
    exported_names,
    get,
    load_yaml,
    maas_command,
    names_used_in_deploy,
    process_env,
    running,
)
from tests.kafka_helpers import Broker, read
from workers.recipes.demo import digits_samples

# On the embedded broker and on Apache Kafka (the compose stack's own broker), with the
# compose services' environment as it is: each process asks the broker what it can do.
pytestmark = [
    pytest.mark.slow,
    pytest.mark.postgres,
    pytest.mark.both_brokers,
    pytest.mark.timeout(300),
]

DOCKERFILE = (ROOT / "Dockerfile").read_text()
IMAGE_HOME = re.findall(r"^WORKDIR (\S+)$", DOCKERFILE, re.M)[-1]  # the runtime stage's
ENTRYPOINT = json.loads(re.findall(r"^ENTRYPOINT (.+)$", DOCKERFILE, re.M)[-1])
IMAGE_ENV = dict(re.findall(r"\b(MAAS_[A-Z_]+)=(\S+)", DOCKERFILE))
STARTED = (
    "worker",
    "trainer",
    "scheduler",
    "monitor",
    "gateway",
)  # after the migration, in compose's order


@dataclass(frozen=True)
class Here:
    """Where the compose stack's dependencies are on this machine."""

    kafka: KafkaSettings
    database_url: str
    home: Path  # stands for the image's home and volumes, /var/lib/maas

    def environment(self, service: dict[str, Any]) -> dict[str, str]:
        compose_env = {key: str(value) for key, value in service.get("environment", {}).items()}
        env = {
            key: self._rewrite(key, value) for key, value in {**IMAGE_ENV, **compose_env}.items()
        }
        left = {k: v for k, v in env.items() if re.search(r"\bkafka:|@postgres:|/var/lib/", v)}
        assert not left, f"the smoke does not know where these point: {left}"
        return env

    def _rewrite(self, key: str, value: str) -> str:
        return {
            "MAAS_BOOTSTRAP_SERVERS": self.kafka.bootstrap_servers,
            "MAAS_DATABASE_URL": self.database_url,
            "MAAS_TOPIC_PREFIX": self.kafka.topics.prefix,
        }.get(key, value.replace(IMAGE_HOME, str(self.home)))

    def command(self, service: dict[str, Any]) -> tuple[list[str], int | None]:
        """The service's command with the image's entrypoint; a free metrics port."""
        argv = [*ENTRYPOINT, *service["command"]]
        assert argv[0] == "maas", argv
        port = None
        if "--metrics-port" in argv:
            at = argv.index("--metrics-port") + 1
            port = free_port()
            argv[at] = str(port)
        for flag in ("--http-port", "--grpc-port"):  # the gateway's: free ones here too
            if flag in argv:
                argv[argv.index(flag) + 1] = str(free_port())
        return maas_command(*argv[1:]), port


@pytest.fixture
def here(broker: Broker, pg_url: str, tmp_path: Path) -> Here:
    home = tmp_path / "var-lib-maas"
    (home / "artifacts").mkdir(parents=True)
    return Here(
        KafkaSettings(broker.bootstrap_servers, Topics(f"smoke{uuid.uuid4().hex[:6]}.")),
        pg_url,
        home,
    )


def compose_services() -> dict[str, dict[str, Any]]:
    """The maas services that `docker compose up` starts (profiles such as gpu aside)."""
    services: dict[str, dict[str, Any]] = load_yaml(ROOT / "compose.yaml")["services"]
    return {
        name: service
        for name, service in services.items()
        if service.get("image", "").startswith("maas:") and not service.get("profiles")
    }


def migrate(here: Here, service: dict[str, Any]) -> None:
    command, _ = here.command(service)
    done = subprocess.run(
        command,
        env=process_env(here.environment(service)),
        cwd=here.home,
        capture_output=True,
        text=True,
        timeout=120,
        check=False,
    )
    assert done.returncode == 0, done.stdout + done.stderr
    assert "created its schema" in done.stdout or "at the latest schema" in done.stdout


@pytest.fixture
def stack(here: Here, tmp_path: Path) -> Iterator[dict[str, Process]]:
    """The migration run, then the long-running services started and ready."""
    services = compose_services()
    assert set(services) == {"migrate", *STARTED}
    migrate(here, services["migrate"])
    with ExitStack() as stack:
        processes = {}
        for name in STARTED:
            command, port = here.command(services[name])
            processes[name] = stack.enter_context(
                running(
                    name,
                    command,
                    here.environment(services[name]),
                    tmp_path,
                    cwd=here.home,
                    metrics_port=port,
                )
            )
        for process in processes.values():
            process.wait_ready()
        yield processes


async def test_compose_services_as_processes_retrain_on_schedule_and_predict(
    here: Here, stack: dict[str, Process]
) -> None:
    settings = RegistrySettings(here.database_url, here.home / "artifacts")
    with Registry.open(settings, migrate=False) as registry:  # the operator, adding a schedule
        schedule = registry.runs.add_schedule(
            "digits",
            "* * * * *",
            params={"epochs": 1, "max_rows": 300},
            actor="smoke",
            now=datetime.now(UTC) - timedelta(minutes=5),  # due at once
        )

    retrained = await _retrain_result(here.kafka, f"schedule-{schedule.id}-")
    assert (retrained["status"], retrained["version"], retrained["promoted"]) == ("ok", 1, True)

    answer = await asyncio.to_thread(_submit, here, stack["worker"])
    assert (answer["status"], answer["model"], answer["version"]) == ("ok", "digits", 1)

    exported = {}
    for name, process in stack.items():
        assert await asyncio.to_thread(get, process.url("/healthz")) == (200, "ok\n")
        status, page = await asyncio.to_thread(get, process.url("/metrics"))
        assert status == 200
        exported[name] = exported_names(page)
    assert exported["trainer"] >= TRAINER_METRICS
    assert exported["scheduler"] >= SCHEDULER_METRICS
    assert set().union(*exported.values()) >= names_used_in_deploy()
    for process in stack.values():
        assert await asyncio.to_thread(process.stop) == 0, f"{process.name}:\n{process.tail()}"


async def _retrain_result(kafka: KafkaSettings, job_prefix: str) -> dict[str, Any]:
    def answered(records: list[Any]) -> bool:
        return any(json.loads(r.value)["job_id"].startswith(job_prefix) for r in records)

    records = await read(kafka, kafka.topics.results, until=answered, timeout_s=180)
    (result,) = [
        body for r in records if (body := json.loads(r.value))["job_id"].startswith(job_prefix)
    ]
    return result


def _submit(here: Here, worker: Process) -> dict[str, Any]:
    """``maas submit`` as a user runs it beside the worker (`docker compose exec worker`)."""
    pixels, _ = digits_samples(1)
    service = compose_services()["worker"]
    done = subprocess.run(
        maas_command("submit", "--model", "digits", "--inputs", json.dumps({"x": pixels.tolist()})),
        env=process_env(here.environment(service)),
        cwd=here.home,
        capture_output=True,
        text=True,
        timeout=120,
        check=False,
    )
    assert done.returncode == 0, f"{done.stdout}{done.stderr}\nworker:\n{worker.tail()}"
    answer: dict[str, Any] = json.loads(done.stdout)
    return answer
