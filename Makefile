# Everything runs from a local virtualenv; constraints.txt pins the runtime-critical
# packages. `make up` installs only the `worker` extra (no torch: under 1 GB); every other
# target installs everything (`.[dev]`) on top of it.
PYTHON ?= python3
VENV   ?= .venv
BIN    := $(VENV)/bin
BROKER ?= embedded
STEADY_SECONDS ?= 60
PIP    := $(BIN)/python -m pip --disable-pip-version-check

.PHONY: setup services up test test-unit check lint typecheck check-deploy bench kafka kafka-jars clean

$(BIN)/maas: pyproject.toml constraints.txt
	$(PYTHON) -m venv $(VENV)
	$(PIP) install -q -c constraints.txt -e '.[worker,gateway]'
	@touch $@

$(VENV)/.dev: $(BIN)/maas
	$(PIP) install -q -c constraints.txt -e '.[dev]'
	@touch $@

setup: $(VENV)/.dev  ## everything: the worker, training (torch), PostgreSQL, the tools

up: $(BIN)/maas  ## the embedded stack: broker, registry, demo model, worker, gateway (the worker and gateway extras only)
	$(BIN)/maas up

services: setup  ## PostgreSQL, the deployment checks' tools, Chromium, Apache Kafka's jars (each when missing)
	bash scripts/postgres.sh
	bash scripts/deploy-tools.sh
	bash scripts/chromium.sh
	$(BIN)/python -m scripts.apache_kafka --fetch

test: setup services  ## lint, type-check, the deployment files and the whole test suite (real broker, real PostgreSQL)
	$(BIN)/ruff check .
	$(BIN)/ruff format --check .
	$(BIN)/lint-imports
	$(BIN)/mypy
	VENV=$(VENV) bash scripts/check-deploy.sh
	$(BIN)/python -m pytest -q -n 2 --dist loadfile

test-unit: setup  ## the fast tier: no broker, no PostgreSQL, nothing slow (well under a minute)
	$(BIN)/python -m pytest -q -m "not broker and not postgres and not slow"

check: lint typecheck

lint: setup
	$(BIN)/ruff check . && $(BIN)/ruff format --check . && $(BIN)/lint-imports

typecheck: setup
	$(BIN)/mypy

check-deploy: setup  ## compose.yaml, Prometheus rules, Kubernetes manifests (needs scripts/deploy-tools.sh)
	VENV=$(VENV) bash scripts/check-deploy.sh

bench: setup  ## throughput/latency against the raw model, a librdkafka loop and a relay, then steady traffic (BROKER=embedded|kafka, STEADY_SECONDS=0 skips)
	$(BIN)/python -m bench.run --broker $(BROKER) --steady-seconds $(STEADY_SECONDS)
	$(BIN)/python -m bench.drift
	@# The gateway against MLServer (its own venv, built once; without it the gateway alone).
	@if [ "$(HTTP_BENCH)" = 0 ]; then echo "bench.http skipped: HTTP_BENCH=0"; \
	else $(BIN)/python -m bench.http --broker $(BROKER); fi

kafka: setup  ## Apache Kafka (KRaft, one node) from its jars on 127.0.0.1:9092 until Ctrl-C
	$(BIN)/python -m scripts.apache_kafka

kafka-jars: setup  ## fetch Apache Kafka's jars through Maven, once, into ~/.cache/maas
	$(BIN)/python -m scripts.apache_kafka --fetch

clean:
	rm -rf $(VENV) .maas .mypy_cache .ruff_cache .pytest_cache
