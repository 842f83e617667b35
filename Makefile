# river-queue: one Makefile for developers and CI (.ci/run calls `make test`).
# Every target creates .venv when missing and installs what it needs; the stamp files make a
# second run reinstall nothing.

PYTHON ?= python3
VENV   ?= .venv
BIN    := $(VENV)/bin
STAMP  := $(VENV)/.river-installed
BENCH_VENV := .venv-bench
# The suite runs on both cores (pytest-xdist; each test has its own database). PYTEST_ARGS=""
# runs it serially.
PYTEST_ARGS ?= -n 2 --dist worksteal
# e.g. make bench BENCH_ARGS="--smoke" or BENCH_ARGS="--only burndown --runs 5"
BENCH_ARGS ?=

.DEFAULT_GOAL := help

.PHONY: help
help: ## Show this help
	@echo "river-queue make targets:"
	@awk 'BEGIN {FS = ":.*## "} /^[a-zA-Z_-]+:.*## / {printf "  %-12s %s\n", $$1, $$2}' $(MAKEFILE_LIST)
	@echo ""
	@echo "With DATABASE_URL unset, demo/test/bench start (or reuse) a private Postgres in .river/pg."

$(BIN)/python:
	$(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install --quiet --upgrade pip

$(STAMP): $(BIN)/python pyproject.toml
	$(BIN)/python -m pip install --quiet -e '.[dev,embedded]'
	@touch $(STAMP)

.PHONY: venv
venv: $(STAMP) ## Create .venv and install the package with dev and embedded extras

.PHONY: demo
demo: $(STAMP) ## Run the demo on the embedded Postgres (or DATABASE_URL)
	$(BIN)/python examples/demo.py

.PHONY: check
check: $(STAMP) ## ruff format --check, ruff check, mypy --strict on river/, generated code current
	$(BIN)/ruff format --check .
	$(BIN)/ruff check .
	$(BIN)/mypy river
	$(BIN)/python tools/gen_sync_surface.py --check

.PHONY: generate
generate: $(STAMP) ## Regenerate river/_surface_sync.py (the sync Client) from river/_surface.py
	$(BIN)/python tools/gen_sync_surface.py

.PHONY: fmt
fmt: $(STAMP) ## Apply ruff formatting and safe lint fixes
	$(BIN)/ruff format .
	$(BIN)/ruff check --fix .

.PHONY: test
test: check ## check, the whole suite (Python 3.11, a real Postgres), then `make matrix`
	$(BIN)/python -m pytest $(PYTEST_ARGS)
	@if [ -n "$(SKIP_MATRIX)" ]; then echo "SKIP_MATRIX set: support matrix not run"; \
	else $(MAKE) --no-print-directory matrix; fi

# --- support matrix ---------------------------------------------------------------------------
# `make test` runs the whole suite on Python 3.11 and the embedded Postgres (the system's
# PostgreSQL 15 where installed). `make matrix` runs MATRIX_TESTS, a subset covering inserting,
# working jobs (on 3.12+ each job's task starts eagerly, see river/_producer.py), admin,
# migrations, leadership, the CLI (migrate-* in test_cli_migrate; job, queue and migrate
# commands through the docs' shell blocks in test_docs) and Django (Django 6 there, which needs
# Python 3.12; the main run has Django 5.2 and the django-tasks backport), on the other
# supported versions, both combinations at once, each in its own virtualenv (.venv-py312,
# .venv-py313, installed like .venv, with a stamp) and on its own private Postgres
# (.river/matrix-*):
#   Python 3.12 + PostgreSQL 16 (the pgserver wheel's)   Python 3.13 + PostgreSQL 15 (system)
# (pgserver has no wheel for Python 3.13.) Interpreters: PY312=/path/to/python3.12 wins; else
# pyenv's newest 3.12.x; else python3.12 on PATH. One that is missing fails the target under CI
# (CI set) and is skipped with a warning elsewhere.
MATRIX_TESTS ?= tests/test_insert.py tests/test_runtime_client.py tests/test_admin.py \
	tests/test_migrate.py tests/test_cli_migrate.py tests/test_leader.py tests/test_docs.py \
	tests/test_django.py tests/test_django_tasks.py tests/test_django_worker.py \
	tests/test_runtime_outcomes.py tests/test_remote_cancel.py tests/test_deadlines.py \
	tests/test_session.py
PYENV_ROOT ?= $(shell pyenv root 2>/dev/null || echo "$(HOME)/.pyenv")
find_python = $(or $(shell ls -d $(PYENV_ROOT)/versions/$(1).*/bin/python 2>/dev/null \
	| sort -V | tail -n 1),$(shell command -v python$(1) 2>/dev/null))
PY312 ?= $(call find_python,3.12)
PY313 ?= $(call find_python,3.13)

# $(1): Python version, $(2): its interpreter, $(3): RIVER_TEST_PG, $(4): Postgres major version
define matrix_run
	@py="$(2)"; venv=.venv-py$(subst .,,$(1)); dir=.river/matrix-py$(subst .,,$(1))-pg$(4); \
	if [ -z "$$py" ] || [ ! -x "$$py" ]; then \
	  msg="matrix: Python $(1) not found (pyenv install $(1), or PY$(subst .,,$(1))=/path/to/python$(1))"; \
	  if [ -n "$$CI" ]; then echo "$$msg" >&2; exit 1; fi; \
	  echo "$$msg: Python $(1) + PostgreSQL $(4) skipped" >&2; exit 0; \
	fi; \
	$(MAKE) --no-print-directory $$venv/.river-installed MATRIX_PYTHON="$$py" || exit 1; \
	echo "matrix: Python $(1) ($$py) + PostgreSQL $(4) ($(3)): $(MATRIX_TESTS)"; \
	start=$$(date +%s); status=0; \
	env -u DATABASE_URL RIVER_TEST_PG=$(3) RIVER_TEST_PG_MAJOR=$(4) RIVER_DEV_DIR=$$dir \
	  $$venv/bin/python -m pytest -q -p no:cacheprovider $(MATRIX_TESTS) || status=$$?; \
	RIVER_DEV_DIR=$$dir $$venv/bin/river dev stop >/dev/null 2>&1 || true; \
	echo "matrix: Python $(1) + PostgreSQL $(4): exit $$status after $$(( $$(date +%s) - start ))s"; \
	exit $$status
endef

.venv-py%/.river-installed: pyproject.toml
	@test -n "$(MATRIX_PYTHON)" || { echo "make matrix creates $(@D)" >&2; exit 1; }
	$(MATRIX_PYTHON) -m venv $(@D)
	$(@D)/bin/python -m pip install --quiet --upgrade pip
	$(@D)/bin/python -m pip install --quiet -e '.[dev,embedded]'
	@touch $@

.PHONY: matrix matrix-py312-pg16 matrix-py313-pg15
matrix: ## MATRIX_TESTS on Python 3.12 + PostgreSQL 16 and 3.13 + 15, side by side
	@$(MAKE) --no-print-directory -j2 --output-sync=target matrix-py312-pg16 matrix-py313-pg15

matrix-py312-pg16:
	$(call matrix_run,3.12,$(PY312),pgserver,16)

matrix-py313-pg15:
	$(call matrix_run,3.13,$(PY313),system,15)

.PHONY: bench
bench: $(STAMP) ## Run the benchmark suite (peers in .venv-bench) and rewrite docs/performance.md
	$(BIN)/python bench/run.py $(BENCH_ARGS)

.PHONY: dev-start
dev-start: $(STAMP) ## Start (or reuse) the embedded Postgres and print its URL
	$(BIN)/river dev start

.PHONY: dev-stop
dev-stop: $(STAMP) ## Stop the embedded Postgres
	$(BIN)/river dev stop

.PHONY: clean
clean: ## Remove build artefacts and caches (keeps .venv and .river)
	rm -rf dist build .mypy_cache .ruff_cache .pytest_cache .hypothesis
