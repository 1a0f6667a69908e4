# Developer entry points. On a fresh clone: `make test` or `make run` set everything up
# (.venv, Java for DynamoDB Local, DynamoDB Local itself); a second run reinstalls nothing.

PYTHON ?= python3
PORT ?= 3000

VENV := .venv
VENV_PYTHON := $(VENV)/bin/python
VENV_STAMP := $(VENV)/.installed
DYNAMODB_LOCAL_JAR := .local/dynamodb-local/DynamoDBLocal.jar
# apt-get needs root; use sudo when not root and sudo exists.
SUDO := $(shell [ "$$(id -u)" = 0 ] || command -v sudo)

.PHONY: help setup run test soak bench audit openapi clean java dynamodb-local

help:
	@echo "make run    serve the API on http://127.0.0.1:$(PORT) (DynamoDB Local, data in .local/)"
	@echo "make test   run the whole test suite (tests/)"
	@echo "make soak   the model-based test at length (2000 examples of up to 50 steps)"
	@echo "make bench  print the performance figures next to the goals (also .local/bench.md)"
	@echo "make audit  reconcile ledger and counters (make run's table; AUDIT_ARGS=license ids)"
	@echo "make openapi  regenerate openapi.json from the functions' resolvers"
	@echo "make clean  remove .venv, .local (including local data) and caches"

setup: $(VENV_STAMP) java dynamodb-local

# The project's dependencies (pyproject.toml, with the dev extra) in an editable install: the
# project itself has no packages to install, so this installs exactly the pinned dependencies.
$(VENV_STAMP): pyproject.toml
	@$(PYTHON) -c 'import ensurepip, venv' 2>/dev/null || { \
	  echo "$(PYTHON) cannot create virtual environments: installing python3-venv"; \
	  $(SUDO) apt-get update && $(SUDO) env DEBIAN_FRONTEND=noninteractive apt-get install -y --no-install-recommends python3-venv; }
	$(PYTHON) -m venv $(VENV)
	$(VENV)/bin/pip install --quiet -e '.[dev]'
	@touch $@

# DynamoDB Local needs a Java runtime (17+); installed only when `java` is missing.
java:
	@command -v java >/dev/null 2>&1 || { \
	  echo "java not found: installing a headless JRE (apt-get)"; \
	  $(SUDO) apt-get update && \
	  { $(SUDO) env DEBIAN_FRONTEND=noninteractive apt-get install -y --no-install-recommends openjdk-17-jre-headless || \
	    $(SUDO) env DEBIAN_FRONTEND=noninteractive apt-get install -y --no-install-recommends default-jre-headless; }; }

dynamodb-local: $(DYNAMODB_LOCAL_JAR)

$(DYNAMODB_LOCAL_JAR): | $(VENV_STAMP)
	$(VENV_PYTHON) -m local.dynamodb_local install

run: setup
	PORT=$(PORT) $(VENV_PYTHON) -m local.run

test: setup
	$(VENV_PYTHON) -m pytest -q

soak: setup
	HYPOTHESIS_PROFILE=soak $(VENV_PYTHON) -m pytest -q tests/model

# Figures, not tests: its own DynamoDB Local, about 3 minutes; exit code 0 even when a goal is missed.
bench: setup
	$(VENV_PYTHON) -m local.bench $(BENCH_ARGS)

# Against make run's DynamoDB Local unless AWS_ENDPOINT_URL_DYNAMODB says otherwise.
audit: $(VENV_STAMP)
	AWS_ENDPOINT_URL_DYNAMODB=$${AWS_ENDPOINT_URL_DYNAMODB:-http://127.0.0.1:$${DYNAMODB_LOCAL_PORT:-8000}} \
	AWS_ACCESS_KEY_ID=$${AWS_ACCESS_KEY_ID:-local} AWS_SECRET_ACCESS_KEY=$${AWS_SECRET_ACCESS_KEY:-local} \
	AWS_DEFAULT_REGION=$${AWS_DEFAULT_REGION:-us-east-1} $(VENV_PYTHON) -m local.audit $(AUDIT_ARGS)

openapi: $(VENV_STAMP)
	$(VENV_PYTHON) -m local.openapi

clean:
	rm -rf $(VENV) .local .pytest_cache .hypothesis .aws-sam .mypy_cache .ruff_cache *.egg-info
	find . -name __pycache__ -type d -prune -exec rm -rf {} +
