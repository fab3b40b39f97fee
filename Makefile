# Everything runs from a local virtualenv; torch is pinned to the CPU wheel.
PYTHON ?= python3
VENV   ?= .venv
BIN    := $(VENV)/bin
PIP    := $(BIN)/python -m pip --disable-pip-version-check

.PHONY: setup up test check lint typecheck bench kafka kafka-jars clean

$(BIN)/maas: pyproject.toml constraints.txt
	$(PYTHON) -m venv $(VENV)
	$(PIP) install -q -c constraints.txt -e '.[dev]'
	@touch $@

setup: $(BIN)/maas

up: setup  ## the embedded stack: broker, registry, demo model, worker
	$(BIN)/maas up

test: setup  ## lint, type-check and the whole test suite (real broker, real PostgreSQL)
	$(BIN)/ruff check .
	$(BIN)/ruff format --check .
	$(BIN)/mypy
	$(BIN)/python -m pytest -q

check: lint typecheck

lint: setup
	$(BIN)/ruff check . && $(BIN)/ruff format --check .

typecheck: setup
	$(BIN)/mypy

bench: setup  ## throughput/latency against the raw model, a naive worker and a relay
	$(BIN)/python -m bench.run

kafka: setup  ## Apache Kafka (KRaft, one node) from its jars on 127.0.0.1:9092 until Ctrl-C
	$(BIN)/python -m scripts.apache_kafka

kafka-jars: setup  ## fetch Apache Kafka's jars through Maven, once, into ~/.cache/maas
	$(BIN)/python -m scripts.apache_kafka --fetch

clean:
	rm -rf $(VENV) .maas .mypy_cache .ruff_cache .pytest_cache
