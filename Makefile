# river-queue: one Makefile for developers and CI (.ci/run calls `make test`).
# Every target creates .venv when missing and installs what it needs; the stamp files make a
# second run reinstall nothing.

PYTHON ?= python3
VENV   ?= .venv
BIN    := $(VENV)/bin
STAMP  := $(VENV)/.river-installed
BENCH_VENV := .venv-bench
PYTEST_ARGS ?=
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
test: check ## check, then the whole test suite against a real Postgres
	$(BIN)/python -m pytest $(PYTEST_ARGS)

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
