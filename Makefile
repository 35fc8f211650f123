# Warmpath's entry point. Every target sets up what it needs; all are idempotent.
PYTHON ?= python3
VENV   := .venv
BIN    := $(VENV)/bin
STAMP  := $(VENV)/.installed-stamp
PROTOS := $(wildcard protos/warmpath/v1/*.proto)
PY_DIRS := $(wildcard services tests bench scripts)

.DEFAULT_GOAL := help
.PHONY: help install proto fmt lint test test-unit test-integration test-soak run bench up down clean \
	images test-compose test-docker test-gpu

help:
	@echo "make run        set up, start the local mesh, send a sample request, serve until Ctrl-C"
	@echo "make test       set up, lint, type-check and run the whole test suite"
	@echo "make install    create .venv and install Warmpath with dev tools and the default model"
	@echo "make proto      regenerate gen/ from protos/"
	@echo "make fmt|lint   format / check (ruff, mypy)"
	@echo "make bench      run the benchmarks and write bench/RESULTS.md"
	@echo "make images     build the router, gpu-agent and backend-adapter images"
	@echo "make up|down    start / stop compose.yaml's cpu profile (router on 127.0.0.1:50051)"
	@echo "make test-compose  build the images, bring the cpu profile up on Docker, ask it, tear down"
	@echo "make test-docker   the gpu-agent's Docker driver against a real engine (seconds)"
	@echo "make test-gpu      the NVML inventory and footprint measurement on this host's NVIDIA GPU"

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
	$(BIN)/bandit -r services -q

# The compose test needs a Docker engine and builds images: `make test-compose`.
test: lint
	$(BIN)/pytest -m "not docker and not soak"

test-unit: gen/.stamp
	$(BIN)/pytest -m "not integration and not docker"

test-integration: gen/.stamp
	$(BIN)/pytest -m integration

# Five minutes of mixed traffic with faults; WARMPATH_SOAK_SECONDS shortens it.
test-soak: gen/.stamp
	$(BIN)/pytest -m soak -s

# Writes bench/RESULTS.md; each script also writes its own section in bench/results/.
# `make bench QUICK=1` runs every benchmark short (a smoke test, not for the record).
# The peers (LiteLLM, vLLM Router) get their own virtualenvs under bench/.venvs/.
BENCH_FLAGS := $(if $(QUICK),--quick,)
bench: gen/.stamp
	$(BIN)/python bench/placement.py --seeds 5 --out bench/results/placement.md
	$(BIN)/python bench/placement_warm.py --seeds 5 --out bench/results/placement.md
	$(BIN)/python bench/route_rpc.py $(BENCH_FLAGS)
	$(BIN)/python bench/generate_overhead.py $(BENCH_FLAGS)
	$(BIN)/python bench/relay_capacity.py $(BENCH_FLAGS)
	$(BIN)/python bench/peers.py --install $(BENCH_FLAGS)
	$(BIN)/python bench/tracing_cost.py $(BENCH_FLAGS)
	$(BIN)/python bench/report.py

run: gen/.stamp
	$(BIN)/warmpath up

# Containers (compose.yaml). The base image defaults to a Debian one made
# locally (no image registry needed); BASE_IMAGE=python:3.11-slim to pull.
COMPOSE = $(shell docker compose version >/dev/null 2>&1 && echo docker compose || echo docker-compose)

images: $(STAMP)
	bash scripts/docker/engine.sh
	bash scripts/docker/build-images.sh

up: images
	$(COMPOSE) --profile cpu up --detach --no-build router
	@for i in $$(seq 60); do \
	  $(BIN)/python -m warmpath_cli.healthcheck 127.0.0.1:$${WARMPATH_ROUTER_PORT:-50051} 2>/dev/null && break; \
	  sleep 1; done
	@echo "router on 127.0.0.1:$${WARMPATH_ROUTER_PORT:-50051}: $(BIN)/warmpath generate 'The sky is' --router 127.0.0.1:$${WARMPATH_ROUTER_PORT:-50051}"

down:
	$(COMPOSE) --profile cpu --profile gpu --profile ollama down --remove-orphans

test-compose: gen/.stamp
	bash scripts/docker/engine.sh
	WARMPATH_REQUIRE_DOCKER=1 $(BIN)/pytest -m docker -s tests/deploy

# The Docker driver's tests build their own 2 MB image (no registry needed).
test-docker: gen/.stamp
	bash scripts/docker/engine.sh
	WARMPATH_REQUIRE_DOCKER=1 $(BIN)/pytest -m docker tests/gpu_agent

# On an NVIDIA host; the "model servers" are processes allocating GPU memory
# with torch (pip install torch into .venv first). Where there is no GPU it
# says why and fails (pytest's exit 5: nothing ran); `make test` skips them.
test-gpu: gen/.stamp
	$(BIN)/pytest -m gpu -s -rs tests/gpu_agent/test_nvml_gpu.py

clean:
	rm -rf gen .run .mypy_cache .ruff_cache .pytest_cache
