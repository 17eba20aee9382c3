# Every entry point a newcomer needs: `make demo`, `make test`, `make bench`.
SHELL := /bin/bash
PYTHON ?= python3
VENV := .venv
BIN := $(VENV)/bin
FERRETDB_VERSION := v1.24.2
FERRETDB_BIN ?= $(HOME)/.cache/session-analytics/ferretdb-$(FERRETDB_VERSION)
PYTEST_ARGS ?=

.PHONY: demo test bench lint install servers clean

$(BIN)/python:
	$(PYTHON) -m venv $(VENV)
	$(BIN)/pip install -q --upgrade pip

$(VENV)/.installed: pyproject.toml | $(BIN)/python
	$(BIN)/pip install -q -e '.[dev]'
	touch $@

install: $(VENV)/.installed

## demo: the whole service in one process on embedded defaults (no MongoDB, no Redis)
demo: install
	$(BIN)/session-analytics demo

## servers: the real test servers, installed only when missing (redis-server from Debian,
## FerretDB built with Go and cached outside the clone)
servers:
	@command -v redis-server >/dev/null || { \
	  echo "installing redis-server"; \
	  (apt-get update -qq && apt-get install -y -qq redis-server) >/dev/null || { \
	    echo "could not install redis-server (needs root and Debian's package registry)"; exit 1; }; }
	@scripts/install-ferretdb.sh "$(FERRETDB_BIN)"

## test: lint, then start Redis and FerretDB on free ports, run the whole suite, stop them
test: install servers lint
	FERRETDB_BIN="$(FERRETDB_BIN)" $(BIN)/pytest $(PYTEST_ARGS)

## lint: ruff (rules and formatting) and mypy, as CI runs them
lint: install
	$(BIN)/ruff check web worker shared tests bench
	$(BIN)/ruff format --check web worker shared tests bench
	$(BIN)/mypy

## bench: the benchmarks of docs/BENCHMARKS.md (needs `make servers`)
bench: install servers
	@command -v wrk >/dev/null || (apt-get update -qq && apt-get install -y -qq wrk) >/dev/null
	FERRETDB_BIN="$(FERRETDB_BIN)" $(BIN)/python bench/run_all.py

clean:
	rm -rf $(VENV) .pytest_cache .mypy_cache .ruff_cache .hypothesis *.egg-info
