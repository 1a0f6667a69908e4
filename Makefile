# Developer entry points. On a fresh clone: `make test` or `make run` set everything up
# (.venv, Java for DynamoDB Local, DynamoDB Local itself); a second run reinstalls nothing.

PYTHON ?= python3
PORT ?= 3000

VENV := .venv
VENV_PYTHON := $(VENV)/bin/python
VENV_STAMP := $(VENV)/.installed
# uv, pinned, in a venv of its own (.venv-tools): it makes .venv from uv.lock and the SAM CLI's
# environment (.venv-sam) from tools/sam/uv.lock.
UV_VERSION := 0.13.9
UV := .venv-tools/bin/uv
UV_STAMP := .venv-tools/.uv-$(UV_VERSION)
SAM_VENV := .venv-sam
SAM_STAMP := $(SAM_VENV)/.installed
# The layer's requirements, exported from uv.lock without what the Lambda runtime provides.
LAYER_EXPORT := $(UV) export --frozen --no-dev --no-hashes --no-emit-project --quiet \
  $(foreach package,boto3 botocore s3transfer jmespath urllib3 python-dateutil six,--no-emit-package $(package))
DYNAMODB_LOCAL_JAR := .local/dynamodb-local/DynamoDBLocal.jar
# apt-get needs root; use sudo when not root and sudo exists.
SUDO := $(shell [ "$$(id -u)" = 0 ] || command -v sudo)

.PHONY: help setup run test unit e2e lint lock requirements check-requirements sam soak bench audit openapi clean java chromium php dynamodb-local

help:
	@echo "make run    serve the API on http://127.0.0.1:$(PORT) (DynamoDB Local, data in .local/)"
	@echo "make test   make lint, then the whole test suite (tests/)"
	@echo "make unit   the rules and the handlers on moto (tests/unit, tests/handlers), on every core"
	@echo "make e2e    the black-box HTTP cases against a deployed stack (STACK_NAME=..., AWS credentials)"
	@echo "make lint   ruff, mypy, sam validate --lint, shared/requirements.txt against uv.lock"
	@echo "make lock   after editing dependencies: update uv.lock (and tools/sam/uv.lock), shared/requirements.txt"
	@echo "make soak   the model-based test at length (2000 examples of up to 50 steps)"
	@echo "make bench  print the performance figures next to the goals (also .local/bench.md)"
	@echo "make audit  reconcile ledger and counters (make run's table; AUDIT_ARGS=license ids)"
	@echo "make openapi  regenerate openapi.json from the functions' resolvers"
	@echo "make clean  remove .venv, .local (including local data) and caches"

setup: $(VENV_STAMP) java chromium php dynamodb-local

# uv itself, from PyPI with pip, in its own venv (nothing assumed installed but python3).
$(UV_STAMP):
	@$(PYTHON) -c 'import ensurepip, venv' 2>/dev/null || { \
	  echo "$(PYTHON) cannot create virtual environments: installing python3-venv"; \
	  $(SUDO) apt-get update && $(SUDO) env DEBIAN_FRONTEND=noninteractive apt-get install -y --no-install-recommends python3-venv; }
	rm -rf .venv-tools
	$(PYTHON) -m venv .venv-tools
	.venv-tools/bin/pip install --quiet --disable-pip-version-check uv==$(UV_VERSION)
	@touch $@

# Exactly uv.lock (the dev extra included) and the project in an editable install (the
# ai_credits package of shared/, local/ and the ai-credits command). --locked: fails when
# pyproject.toml changed without `make lock`.
$(VENV_STAMP): pyproject.toml uv.lock $(UV_STAMP)
	$(UV) sync --locked --extra dev --python $(PYTHON) --quiet
	@touch $@

# The SAM CLI's own environment, from tools/sam/uv.lock.
sam: $(SAM_STAMP)
$(SAM_STAMP): tools/sam/pyproject.toml tools/sam/uv.lock $(UV_STAMP)
	UV_PROJECT_ENVIRONMENT=$(CURDIR)/$(SAM_VENV) $(UV) sync --locked --project tools/sam --python $(PYTHON) --quiet
	@touch $@

# After editing dependencies (pyproject.toml or tools/sam/pyproject.toml).
lock: $(UV_STAMP)
	$(UV) lock
	$(UV) lock --project tools/sam
	$(MAKE) requirements

requirements: $(UV_STAMP)
	$(LAYER_EXPORT) > shared/requirements.txt.tmp || { rm -f shared/requirements.txt.tmp; exit 1; }
	mv shared/requirements.txt.tmp shared/requirements.txt

check-requirements: $(UV_STAMP)
	@$(LAYER_EXPORT) | diff -u shared/requirements.txt - || { \
	  echo "shared/requirements.txt is stale against uv.lock: run make requirements"; exit 1; }

lint: $(VENV_STAMP) $(SAM_STAMP) check-requirements
	$(VENV)/bin/ruff check --quiet .
	$(VENV)/bin/ruff format --check --quiet .
	$(VENV)/bin/mypy
	SAM_CLI_TELEMETRY=0 AWS_DEFAULT_REGION=$${AWS_DEFAULT_REGION:-us-east-1} $(SAM_VENV)/bin/sam validate --lint

# DynamoDB Local needs a Java runtime (17+); installed only when `java` is missing.
java:
	@command -v java >/dev/null 2>&1 || { \
	  echo "java not found: installing a headless JRE (apt-get)"; \
	  $(SUDO) apt-get update && \
	  { $(SUDO) env DEBIAN_FRONTEND=noninteractive apt-get install -y --no-install-recommends openjdk-17-jre-headless || \
	    $(SUDO) env DEBIAN_FRONTEND=noninteractive apt-get install -y --no-install-recommends default-jre-headless; }; }

# The demo console's browser test (tests/console) drives Debian's Chromium headless through
# Playwright (never a browser Playwright downloads); installed only when `chromium` is missing.
chromium:
	@command -v chromium >/dev/null 2>&1 || { \
	  echo "chromium not found: installing it (apt-get)"; \
	  $(SUDO) apt-get update && \
	  $(SUDO) env DEBIAN_FRONTEND=noninteractive apt-get install -y --no-install-recommends chromium; }

# The PHP client's tests (tests/clients) run clients/php in php-cli with cURL; installed from
# Debian only when `php` (or its cURL extension) is missing.
php:
	@{ command -v php >/dev/null 2>&1 && php -r 'exit(function_exists("curl_init") ? 0 : 1);'; } || { \
	  echo "php-cli with cURL not found: installing php-cli and php-curl (apt-get)"; \
	  $(SUDO) apt-get update && \
	  $(SUDO) env DEBIAN_FRONTEND=noninteractive apt-get install -y --no-install-recommends php-cli php-curl; }

dynamodb-local: $(DYNAMODB_LOCAL_JAR)

$(DYNAMODB_LOCAL_JAR): | $(VENV_STAMP)
	$(VENV_PYTHON) -m local.dynamodb_local install

run: $(VENV_STAMP) java dynamodb-local
	PORT=$(PORT) $(VENV_PYTHON) -m local.run

test: setup lint
	$(VENV_PYTHON) -m pytest -q

# The quick tier, for a change to a rule: no Java, no DynamoDB Local, no lint.
unit: $(VENV_STAMP)
	$(VENV_PYTHON) -m pytest -q -n auto --dist worksteal tests/unit tests/handlers

# The cases marked e2e (tests/integration/test_api.py, tests/e2e) against a deployed stack: its
# ApiUrl output (or E2E_BASE_URL), admin calls signed with the caller's AWS credentials, the portal
# cases with E2E_PORTAL_TOKEN (skipped without). docs/operators.md, "Against a deployed stack".
e2e: $(VENV_STAMP)
	@[ -n "$(STACK_NAME)$(E2E_BASE_URL)" ] || { \
	  echo "make e2e needs STACK_NAME=<the deployed stack's name> (or E2E_BASE_URL=<the API's base URL>)" >&2; exit 2; }
	STACK_NAME="$(STACK_NAME)" E2E_BASE_URL="$(E2E_BASE_URL)" E2E_TARGET=stack \
	  $(VENV_PYTHON) -m pytest -m e2e tests/integration/test_api.py tests/e2e

soak: setup
	HYPOTHESIS_PROFILE=soak $(VENV_PYTHON) -m pytest -q tests/model

# Figures, not tests: its own DynamoDB Local, about 3 minutes; exit code 0 even when a goal is missed.
bench: setup
	$(VENV_PYTHON) -m local.bench $(BENCH_ARGS)

# Against make run's DynamoDB (DynamoDB Local unless AWS_ENDPOINT_URL_DYNAMODB says otherwise).
audit: $(VENV_STAMP)
	$(VENV)/bin/ai-credits audit --local $(AUDIT_ARGS)

openapi: $(VENV_STAMP)
	$(VENV_PYTHON) -m local.openapi

clean:
	rm -rf $(VENV) .venv-tools $(SAM_VENV) .local .pytest_cache .hypothesis .aws-sam .mypy_cache .ruff_cache *.egg-info
	find . -name __pycache__ -type d -prune -exec rm -rf {} +
