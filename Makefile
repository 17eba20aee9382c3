# Every entry point a newcomer needs: `make demo`, `make test`, `make bench`.
SHELL := /bin/bash
PYTHON ?= python3
VENV := .venv
BIN := $(VENV)/bin
PYTEST_ARGS ?=

.PHONY: demo test bench lint install lock servers compose-check clean

$(BIN)/python:
	$(PYTHON) -m venv $(VENV)
	$(BIN)/pip install -q --upgrade pip

## install: the pinned versions of requirements-dev.lock (hash-checked), then the project itself
## in editable mode with its `dev` extra (which holds `test`, which holds `demo`)
$(VENV)/.installed: pyproject.toml requirements-dev.lock | $(BIN)/python
	$(BIN)/pip install -q -r requirements-dev.lock
	$(BIN)/pip install -q -e '.[dev]'
	touch $@

install: $(VENV)/.installed

## lock: re-resolve requirements.lock (what the image installs) and requirements-dev.lock (what
## `make install` installs) from pyproject.toml, for Python 3.11 on any platform, with hashes.
## Run it after changing a dependency; tests/test_deployment.py fails while a lock is stale.
UV_COMPILE = $(BIN)/uv pip compile pyproject.toml --universal --python-version 3.11 --generate-hashes \
	--custom-compile-command 'make lock' --quiet
lock: | $(BIN)/python
	@test -x $(BIN)/uv || $(BIN)/pip install -q 'uv>=0.5'
	$(UV_COMPILE) --upgrade -o requirements.lock
	$(UV_COMPILE) --upgrade --extra dev -o requirements-dev.lock

## demo: the whole service in one process on embedded defaults (no MongoDB, no Redis)
demo: install
	$(BIN)/session-analytics demo

## servers: the real test servers, installed only when missing (redis-server from Debian; the
## MongoDB-wire test server, mongo-java-server from Maven Central, with Java 17 and Maven from
## Debian when missing: its classpath and launcher cached under ~/.cache/session-analytics/)
servers:
	@command -v redis-server >/dev/null || { \
	  echo "installing redis-server"; \
	  (apt-get update -qq && apt-get install -y -qq redis-server) >/dev/null || { \
	    echo "could not install redis-server (needs root and Debian's package registry)"; exit 1; }; }
	@command -v chromium >/dev/null || { \
	  echo "installing chromium (the dashboard's browser test)"; \
	  (apt-get update -qq && apt-get install -y -qq chromium) >/dev/null || { \
	    echo "could not install chromium (needs root and Debian's package registry)"; exit 1; }; }
	@scripts/mongo-test-server.sh >/dev/null

## test: lint, then start Redis and the MongoDB-wire test server on free ports, run the whole
## suite, stop them. With TEST_MONGODB_URL set, the suite's databases live on that server instead.
test: install servers lint
	$(BIN)/pytest $(PYTEST_ARGS)

## lint: ruff (rules and formatting) and mypy, as CI runs them
lint: install
	$(BIN)/ruff check web worker shared tests bench
	$(BIN)/ruff format --check web worker shared tests bench
	$(BIN)/mypy

## compose-check: docker-compose.yml as Docker Compose reads it (needs `docker compose` or
## `docker-compose`; no engine): every variable set, so the check sees a complete file
compose-check:
	@compose=$$(docker compose version >/dev/null 2>&1 && echo "docker compose" || echo docker-compose); \
	MONGO_INITDB_ROOT_PASSWORD=x REDIS_PASSWORD=x $$compose -f docker-compose.yml --profile flower config -q \
	  && echo "docker-compose.yml: valid"

## bench: the benchmarks of docs/BENCHMARKS.md (needs `make servers`)
bench: install servers
	@command -v wrk >/dev/null || (apt-get update -qq && apt-get install -y -qq wrk) >/dev/null
	$(BIN)/python bench/run_all.py

clean:
	rm -rf $(VENV) .pytest_cache .mypy_cache .ruff_cache .hypothesis *.egg-info
