# AION Governance — every entry point is a make target.
#   make run    set up, then start the API server on its embedded default (SQLite, shipped bundles)
#   make test   set up, start PostgreSQL and Redis for tests (scripts/services.sh, scripts/redis.sh),
#               build OPA (scripts/install-opa.sh), run the shipped policy tests in process and in
#               OPA, then the whole test suite (SQLite and PostgreSQL, real OPA)
SHELL := /bin/bash
VENV := .venv
BIN := $(VENV)/bin

.PHONY: setup run test lint fmt bench bundles examples clean

setup:
	@scripts/setup.sh

bundles: setup
	@scripts/build-bundles.sh

run: setup
	$(BIN)/aion serve

examples: bundles
	@scripts/examples.sh

test: setup
	$(BIN)/aion policy test policies/ --coverage --threshold 100
	opa="$$(scripts/install-opa.sh)" && \
	$(BIN)/aion policy test --engine opa --opa-bin "$$opa" policies/ && \
	services="$$(scripts/services.sh)" && export "$$services" && \
	redis="$$(scripts/redis.sh)" && export "$$redis" && \
	AION_OPA_BIN="$$opa" $(BIN)/pytest -q

lint: setup
	$(BIN)/ruff check .
	$(BIN)/ruff format --check .
	$(BIN)/mypy

fmt: setup
	$(BIN)/ruff format .
	$(BIN)/ruff check --fix .
	$(BIN)/aion policy fmt policies/

bench: setup
	$(BIN)/python tests/bench/bench_engine.py
	services="$$(scripts/services.sh)" && export "$$services" && \
	redis="$$(scripts/redis.sh)" && export "$$redis" && \
	$(BIN)/python tests/bench/bench_server.py && \
	$(BIN)/python tests/bench/bench_dispatch.py && \
	AION_OPA_BIN="$$(scripts/install-opa.sh)" $(BIN)/python tests/bench/bench_opa.py

clean:
	rm -rf $(VENV) .cache .pytest_cache .mypy_cache .ruff_cache
