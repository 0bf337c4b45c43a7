# Every target creates .venv and installs what it needs on first use.
PYTHON ?= $(shell command -v python3.11 || command -v python3)
VENV := .venv
BIN := $(VENV)/bin
STAMP := $(VENV)/.installed-stamp

.PHONY: install dev demo test chaos bench lint format clean

$(STAMP): pyproject.toml
	@test -x $(BIN)/python || $(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install --quiet --upgrade pip
	$(BIN)/python -m pip install --quiet -e '.[dev]'
	@touch $(STAMP)

install: $(STAMP)

## Start everything on embedded defaults; Ctrl-C stops it.
dev: $(STAMP)
	$(BIN)/reelflow dev

## Start everything, run examples/sunset.json to completion, print the output URL, stop.
demo: $(STAMP)
	$(BIN)/reelflow demo

## Lint, type-check, then the whole test suite against real Temporal, PostgreSQL and HTTP.
test: lint
	$(BIN)/python tests/run.py -q

## 100 executions under webhook faults, 429/5xx, 3 worker kills and 2 API kills; prints one table.
chaos: $(STAMP)
	$(BIN)/python -m tests.chaos --executions 100 --worker-kills 3 --api-kills 2

## Benchmarks against the floor of a bare Temporal workflow; prints a table and writes JSON.
bench: $(STAMP)
	$(BIN)/python -m bench

lint: $(STAMP)
	$(BIN)/ruff check .
	$(BIN)/ruff format --check .
	$(BIN)/mypy

format: $(STAMP)
	$(BIN)/ruff check --fix .
	$(BIN)/ruff format .

clean:
	rm -rf $(VENV) .reelflow .mypy_cache .ruff_cache .pytest_cache
