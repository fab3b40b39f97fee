#!/usr/bin/env bash
# Validate the deployment files without a container engine or a cluster:
#   compose.yaml            docker-compose config, and the Compose Specification's schema
#   deploy/prometheus       promtool: the config, the alert rules and their unit tests
#   deploy/kubernetes       every manifest against the Kubernetes schemas (KEDA's own too)
# The tools: bash scripts/deploy-tools.sh (Debian packages) and `make setup` (the venv).
# The test suite covers the rest: tests/e2e/test_deploy.py.
set -euo pipefail
cd "$(dirname "$0")/.."
BIN=${VENV:-.venv}/bin

for tool in docker-compose promtool; do
    command -v "$tool" >/dev/null 2>&1 \
        || { echo "error: $tool is not installed; bash scripts/deploy-tools.sh installs it" >&2; exit 1; }
done

echo "== compose.yaml"
docker-compose -f compose.yaml config -q
# The Compose Specification's JSON schema, where the machine has it (CI does).
if [ -d ../shared/schemas ]; then
    "$BIN/check-jsonschema" --schemafile ../shared/schemas/compose-spec.json compose.yaml
fi

echo "== deploy/prometheus"
promtool check config deploy/prometheus/prometheus.yml
promtool check rules deploy/prometheus/alerts.yml
promtool test rules deploy/prometheus/alerts.test.yml

echo "== deploy/kubernetes"
"$BIN/python" scripts/check_manifests.py deploy/kubernetes
if command -v kubectl >/dev/null 2>&1; then
    kubectl kustomize deploy/kubernetes >/dev/null && echo "kustomize build: ok"
fi
echo "deployment files: ok"
