# AION Governance — every entry point is a make target.
#   make run    set up, build and sign the shipped bundles, evaluate the tour requests
#   make test   set up, then run the whole test suite and the shipped policy tests
SHELL := /bin/bash
VENV := .venv
BIN := $(VENV)/bin

.PHONY: setup run test unit policy-test lint fmt bench bundles clean

setup:
	@scripts/setup.sh

bundles: setup
	@scripts/build-bundles.sh

run: bundles
	@scripts/run.sh

test: setup
	$(BIN)/aion policy test policies/ --coverage --threshold 100
	AION_OPA_BIN="$$(scripts/install-opa.sh)" $(BIN)/pytest -q

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

clean:
	rm -rf $(VENV) .cache .pytest_cache .mypy_cache .ruff_cache
