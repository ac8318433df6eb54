# The command surface of AnalyticsPro. Every target does its own set-up on a fresh machine.
SHELL := /bin/bash
.DEFAULT_GOAL := help

VENV := .venv
BIN := $(VENV)/bin
DEMO_DAYS ?= 30
DEMO_USERS ?= 3000
DEMO_SEED ?= 42
DEMO_LIVE_USERS ?= 1000
DEMO_BUCKET ?= data/bucket
export UV_COMPILE_BYTECODE := 1

.PHONY: help install services demo test bench dev dashboard collector lint format

help:  ## list the targets
	@grep -E '^[a-z-]+:.*## ' $(MAKEFILE_LIST) | awk -F':.*## ' '{printf "  make %-9s %s\n", $$1, $$2}'

$(BIN)/.installed: pyproject.toml uv.lock scripts/bootstrap.sh dashboards/web/package-lock.json
	@scripts/bootstrap.sh
	@touch $@

install: $(BIN)/.installed  ## create .venv from uv.lock (installs uv if missing)

services: install  ## make sure PostgreSQL and Redis run and the database exists
	@scripts/ensure-services.sh

demo: services  ## generate 30 days into data/bucket, send today's live traffic through the collector, materialize
	@EVENTS_BUCKET_URL=$(DEMO_BUCKET) $(BIN)/analyticspro generate --clean --out $(DEMO_BUCKET) \
		--days $(DEMO_DAYS) --users $(DEMO_USERS) --seed $(DEMO_SEED)
	@# today's live traffic of more visitors, sent as an app's SDK sends it: Python SDK -> collector -> bucket
	@port=$$($(BIN)/python -c 'import socket; s = socket.socket(); s.bind(("127.0.0.1", 0)); print(s.getsockname()[1])'); \
		EVENTS_BUCKET_URL=$(DEMO_BUCKET) $(BIN)/analyticspro collector --port $$port --log-level WARNING & \
		collector=$$!; trap "kill $$collector; wait $$collector" EXIT; \
		EVENTS_BUCKET_URL=$(DEMO_BUCKET) $(BIN)/analyticspro generate --send http://127.0.0.1:$$port \
			--days 1 --users $(DEMO_LIVE_USERS) --seed $(DEMO_SEED)1
	@EVENTS_BUCKET_URL=$(DEMO_BUCKET) $(BIN)/analyticspro materialize

# three pytest processes (pytest-xdist), a test file each at a time, in the order tests/conftest.py gives (the longest
# first; xdist would otherwise start the files with the most tests first): the tests wait on PostgreSQL, dbt and
# Spark by turns, and with two cores a third process keeps them busy while the Spark sequence (the longest file) runs
# in one (measured: 862 s against 1015 s with two); then, alone, the tests that restart PostgreSQL (marker `serial`).
# TEST_WORKERS=0: the first part in one process too.
TEST_WORKERS ?= 3
test: services  ## run the test suite (real PostgreSQL and Redis, an isolated database per run)
	@status=0; \
	$(BIN)/pytest -m "not serial" $(if $(filter 0,$(TEST_WORKERS)),,-n $(TEST_WORKERS) --dist loadfile --no-loadscope-reorder) || status=$$?; \
	$(BIN)/pytest -m serial || [ $$? -eq 5 ] || status=1; \
	exit $$status

bench: services  ## run every benchmark, print a table, write bench/results.json
	@$(BIN)/python -m bench.run

dev: services  ## open the Dagster UI on http://127.0.0.1:3000, with `analyticspro realtime` beside it
	@# the follower loads new objects within a second or two and keeps the Redis hot metrics current; its output
	@# goes to .analyticspro/realtime.log, and it stops with the UI
	@mkdir -p .analyticspro; $(BIN)/analyticspro realtime > .analyticspro/realtime.log 2>&1 & \
		follower=$$!; trap "kill $$follower 2>/dev/null; wait $$follower" EXIT; \
		DAGSTER_HOME=$$($(BIN)/python -m orchestration.instance) $(BIN)/dagster dev -w workspace.yaml -h 127.0.0.1 -p 3000

dashboard: services  ## serve the web dashboard and GraphQL API on http://127.0.0.1:8050
	@$(BIN)/analyticspro dashboard

collector: services  ## receive events over Segment's HTTP API on http://127.0.0.1:8060 (any Segment SDK)
	@$(BIN)/analyticspro collector

lint: install  ## ruff (Python) and sqlfluff (dbt SQL)
	@$(BIN)/ruff check .
	@$(BIN)/ruff format --check .
	@# sqlfluff's dbt templater compiles the models against a database: the server's own `postgres`
	@# database holds no marts, so every model lints as it compiles for a first (full) build.
	@DATABASE_URL=$${LINT_DATABASE_URL:-postgresql://postgres@127.0.0.1:5432/postgres} \
		$(BIN)/sqlfluff lint dbt_project/models dbt_project/tests

format: install  ## apply ruff's formatting and fixes
	@$(BIN)/ruff format .
	@$(BIN)/ruff check --fix .
