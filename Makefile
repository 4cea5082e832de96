# migrate-job — developer commands. `make help` lists them.
SHELL := /bin/bash
PYTHON ?= python3
VENV ?= .venv
PY := $(VENV)/bin/python
DEV_PGDATA ?= .dev/pgdata
PYTEST_WORKERS ?= 2

.DEFAULT_GOAL := help
.PHONY: help install run stop test test-unit test-pg lint fmt clean

help: ## list the targets
	@grep -hE '^[a-z-]+:.*?## ' $(MAKEFILE_LIST) | awk 'BEGIN {FS = ":.*?## "} {printf "  make %-10s %s\n", $$1, $$2}'

$(VENV)/.installed: pyproject.toml
	@$(PYTHON) -c 'import sys; sys.exit(sys.version_info < (3, 11))' || { echo "Python 3.11+ is required (found $$($(PYTHON) --version))"; exit 2; }
	@test -x $(PY) || $(PYTHON) -m venv $(VENV) || { echo "python3 -m venv failed: on Debian/Ubuntu run 'apt-get install python3-venv'"; exit 2; }
	$(PY) -m pip install --quiet --upgrade pip
	$(PY) -m pip install --quiet -e '.[dev,aws]'
	@touch $@

install: $(VENV)/.installed ## create .venv and install migrate-job with its dev tools

run: install ## apply migrations/ to DATABASE_URL, or to an embedded PostgreSQL started here; then show status
	@bash scripts/run-local.sh "$(PY)" "$(DEV_PGDATA)"

stop: ## stop the embedded PostgreSQL started by `make run`
	@if [ -d "$(DEV_PGDATA)" ]; then $(PY) -m job.devserver stop "$(DEV_PGDATA)"; fi

test: install ## run the whole test suite (starts and stops its own PostgreSQL; TEST_DATABASE_URL to use yours)
	$(PY) -m pytest -n $(PYTEST_WORKERS) -q

test-unit: install ## only the fast tests that need no database
	$(PY) -m pytest -q tests/unit

lint: install ## ruff (lint + format check) and mypy --strict
	$(VENV)/bin/ruff check job tests
	$(VENV)/bin/ruff format --check job tests
	$(VENV)/bin/mypy

fmt: install ## format the code with ruff
	$(VENV)/bin/ruff format job tests
	$(VENV)/bin/ruff check --fix job tests

clean: stop ## remove the virtualenv and the embedded database
	rm -rf $(VENV) .dev .pytest_cache .mypy_cache .ruff_cache *.egg-info
