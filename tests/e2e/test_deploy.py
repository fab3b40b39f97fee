"""The deployment files agree with the code, and a worker exports what they query.

scripts/check-deploy.sh validates the files' syntax (docker-compose, promtool, the
Kubernetes schemas); these tests check what no schema knows: ports, names, partition
counts and metric names that the files and the code must share.
"""

from __future__ import annotations

import asyncio
import re
from pathlib import Path
from typing import Any

import pytest
from prometheus_client import REGISTRY, generate_latest

from maas.broker import free_port
from producer.kafka import KafkaSettings, Topics
from registry.entities import ModelVersion
from registry.settings import RegistrySettings
from tests.deploy_helpers import (
    DEPLOY,
    GATEWAY_METRICS,
    MONITOR_METRICS,
    ROOT,
    SCHEDULER_METRICS,
    TRAINER_METRICS,
    exported_names,
    get,
    load_yaml,
    load_yaml_all,
    maas_command,
    names_used_in_deploy,
    running,
    samples,
)
from tests.kafka_helpers import job, publish, read_results
from workers.recipes.demo import digits_samples
from workers.serving.loop import WorkerSettings

K8S = DEPLOY / "kubernetes"
METRICS_PORT = 9464
CONTRACT_VARIABLES = re.compile(r"MAAS_[A-Z_]+")


def compose() -> dict[str, Any]:
    services: dict[str, Any] = load_yaml(ROOT / "compose.yaml")["services"]
    return services


def maas_services() -> dict[str, Any]:
    return {name: s for name, s in compose().items() if s.get("image", "").startswith("maas:")}


def k8s(name: str) -> list[dict[str, Any]]:
    return [d for d in load_yaml_all(K8S / name) if d]


def test_the_worker_autoscaler_never_outgrows_the_predict_partitions() -> None:
    (scaled,) = k8s("worker-scaledobject.yaml")
    (config,) = k8s("config.yaml")
    topics = Topics(config["data"]["MAAS_TOPIC_PREFIX"])
    trigger = scaled["spec"]["triggers"][0]["metadata"]

    assert scaled["spec"]["maxReplicaCount"] <= topics.partitions()[topics.predict] == 8
    assert trigger["topic"] == topics.predict
    assert trigger["consumerGroup"] == WorkerSettings().group
    assert trigger["bootstrapServers"] == config["data"]["MAAS_BOOTSTRAP_SERVERS"]
    (worker,) = k8s("worker.yaml")
    assert scaled["spec"]["scaleTargetRef"]["name"] == worker["metadata"]["name"]
    assert "replicas" not in worker["spec"]  # KEDA owns it


def test_every_maas_process_serves_its_probes_where_everything_looks_for_them() -> None:
    dockerfile = (ROOT / "Dockerfile").read_text()
    assert f"http://127.0.0.1:{METRICS_PORT}/healthz" in dockerfile
    long_running = {n: s for n, s in maas_services().items() if n != "migrate"}
    for name, service in long_running.items():
        command = service["command"]
        assert command[command.index("--metrics-port") + 1] == str(METRICS_PORT), name
    scraped = {
        name
        for job in load_yaml(DEPLOY / "prometheus" / "prometheus.yml")["scrape_configs"]
        for sd in job.get("dns_sd_configs", [])
        if sd["port"] == METRICS_PORT
        for name in sd["names"]
    }
    for name, service in long_running.items():
        aliases = service.get("networks", {}).get("default", {}).get("aliases", [])
        assert scraped & {name, *aliases}, f"Prometheus does not scrape {name}"
    for manifest in ("worker.yaml", "trainer.yaml", "scheduler.yaml"):
        (deployment,) = k8s(manifest)
        (container,) = deployment["spec"]["template"]["spec"]["containers"]
        assert container["args"][-2:] == ["--metrics-port", str(METRICS_PORT)]
        assert container["ports"] == [{"name": "metrics", "containerPort": METRICS_PORT}]
        assert container["livenessProbe"]["httpGet"]["path"] == "/healthz"
        assert container["readinessProbe"]["httpGet"]["path"] == "/readyz"


def test_the_gateway_is_probed_on_the_oip_health_paths_and_allows_no_anonymous_calls() -> None:
    gateway = compose()["gateway"]
    assert "--allow-anonymous" not in gateway["command"]
    deployment, service, autoscaler = k8s("gateway.yaml")
    (container,) = deployment["spec"]["template"]["spec"]["containers"]
    assert "--allow-anonymous" not in container["args"]
    assert container["livenessProbe"]["httpGet"]["path"] == "/v2/health/live"
    assert container["readinessProbe"]["httpGet"]["path"] == "/v2/health/ready"
    ports = {p["name"]: p["containerPort"] for p in container["ports"]}
    args = container["args"]
    assert ports["http"] == int(args[args.index("--http-port") + 1])
    assert ports["grpc"] == int(args[args.index("--grpc-port") + 1])
    assert {p["targetPort"] for p in service["spec"]["ports"]} == {"http", "grpc"}
    assert autoscaler["spec"]["scaleTargetRef"]["name"] == deployment["metadata"]["name"]


def test_the_deployments_configure_maas_only_through_the_contract_variables() -> None:
    contract = set(CONTRACT_VARIABLES.findall((ROOT / "docs" / "contract.md").read_text()))
    used = {key for service in maas_services().values() for key in service["environment"]}
    (config,) = k8s("config.yaml")
    (secret,) = k8s("secret.yaml")
    used |= set(config["data"]) | set(secret["stringData"])
    used |= set(CONTRACT_VARIABLES.findall((ROOT / "Dockerfile").read_text()))
    assert used <= contract, used - contract


def test_compose_starts_in_order_and_migrates_once() -> None:
    services = compose()
    assert maas_services()["migrate"]["command"] == ["db", "upgrade"]
    assert services["migrate"]["depends_on"] == {"postgres": {"condition": "service_healthy"}}
    for name in ("worker", "trainer", "scheduler"):
        assert services[name]["depends_on"] == {
            "kafka": {"condition": "service_healthy"},
            "migrate": {"condition": "service_completed_successfully"},
        }, name
    for name in ("kafka", "postgres", "prometheus", "grafana"):
        assert "healthcheck" in services[name], name
    assert services["kafka"]["image"].startswith("apache/kafka:4.")


def test_the_trainer_and_scheduler_metrics_the_tests_expect_are_those_deploy_queries() -> None:
    used = names_used_in_deploy()
    assert {"maas_jobs_total", "maas_consumer_lag"} <= used  # the scan finds what it should
    assert used >= TRAINER_METRICS | SCHEDULER_METRICS | MONITOR_METRICS


@pytest.mark.slow
async def test_a_served_worker_exports_every_worker_metric_that_deploy_queries(
    kafka: KafkaSettings,
    registry_settings: RegistrySettings,
    digits: ModelVersion,
    tmp_path: Path,
) -> None:
    port = free_port()
    env = {
        "MAAS_BOOTSTRAP_SERVERS": kafka.bootstrap_servers,
        "MAAS_TOPIC_PREFIX": kafka.topics.prefix,
        "MAAS_EMBEDDED_BROKER": "1",
        "MAAS_DATABASE_URL": registry_settings.database_url,
        "MAAS_ARTIFACT_DIR": str(registry_settings.artifact_dir),
    }
    command = maas_command("worker", "--model", "digits", "--metrics-port", str(port))
    pixels, _ = digits_samples(4)
    good = [job(f"ok-{i}", {"x": [row.tolist()]}) for i, row in enumerate(pixels)]
    bad_shape = job("bad-shape", {"x": [[1.0, 2.0]]})
    with running("worker", command, env, tmp_path, metrics_port=port) as worker:
        await asyncio.to_thread(worker.wait_ready)
        await publish(kafka, kafka.topics.predict, [*good, bad_shape, b"not a job"])
        results = await read_results(kafka, {"ok-0", "ok-1", "ok-2", "ok-3", "bad-shape"})
        await asyncio.sleep(2.5)  # a probe round samples the gauges after the jobs
        status, page = await asyncio.to_thread(get, worker.url("/metrics"))
        healthz = await asyncio.to_thread(get, worker.url("/healthz"))
        assert worker.stop() == 0, worker.tail()

    assert results["bad-shape"]["error"]["code"] == "INVALID_INPUT"
    assert status == 200 and healthz == (200, "ok\n")
    others = TRAINER_METRICS | SCHEDULER_METRICS | MONITOR_METRICS | GATEWAY_METRICS
    missing = names_used_in_deploy() - others - exported_names(page)
    assert not missing, f"deploy/ queries metrics the worker does not export: {missing}"
    version = {"model": "digits", "version": "1"}
    assert samples(page, "maas_jobs_total") == [
        ({**version, "status": "ok"}, 4.0),
        ({**version, "status": "error"}, 0.0),  # the model failed none
        ({**version, "status": "client_error"}, 1.0),
    ]
    assert samples(page, "maas_job_client_errors_total") == [
        ({**version, "code": "INVALID_INPUT"}, 1.0)
    ]
    assert samples(page, "maas_job_errors_total") == []  # a client's mistake is not the model's
    assert ({"code": "INVALID_INPUT"}, 1.0) in samples(page, "maas_dead_letters_total")
    (batched,) = samples(page, "maas_batched_rows_total")
    assert batched == (version, 4.0)
    (batches,) = samples(page, "maas_batches_total")
    assert 1.0 <= batches[1] <= 4.0
    lag = samples(page, "maas_consumer_lag")
    assert {labels["partition"] for labels, _ in lag} == {str(p) for p in range(8)}
    assert all(labels["topic"] == kafka.topics.predict for labels, _ in lag)
    assert samples(page, "maas_in_flight_jobs") == [({}, 0.0)]
    assert samples(page, "maas_queued_rows") == [(version, 0.0)]
    assert samples(page, "process_resident_memory_bytes")[0][1] > 0


def test_the_monitor_and_the_gateway_define_the_metrics_deploy_queries() -> None:
    import workers.gateway.metrics
    import workers.monitor.drifting
    import workers.monitor.service  # noqa: F401 -- importing them registers their metrics

    page = generate_latest(REGISTRY).decode()
    assert (MONITOR_METRICS | GATEWAY_METRICS) - exported_names(page) == set()
