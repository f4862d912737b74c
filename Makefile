# `make run` and `make test` each build .venv from scratch when it is missing.
PYTHON ?= python3
VENV := .venv
BIN := $(VENV)/bin
STAMP := $(VENV)/.installed

.PHONY: run test lint format clean bench

$(STAMP): pyproject.toml
	test -x $(BIN)/python || $(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install --quiet --upgrade pip
	$(BIN)/python -m pip install --quiet -e '.[test]'
	touch $(STAMP)

run: $(STAMP)
	$(BIN)/aggregator --config config.toml daemon

test: $(STAMP)
	$(BIN)/ruff check aggregator tests benchmarks
	$(BIN)/ruff format --check aggregator tests benchmarks
	$(BIN)/python -m pytest -q

lint: $(STAMP)
	$(BIN)/ruff check aggregator tests benchmarks

format: $(STAMP)
	$(BIN)/ruff format aggregator tests benchmarks
	$(BIN)/ruff check --fix aggregator tests benchmarks

bench: $(STAMP)
	$(BIN)/python benchmarks/ingest.py
	$(BIN)/python benchmarks/publish.py
	$(BIN)/python benchmarks/serve.py
	$(BIN)/python benchmarks/daemon.py
	$(BIN)/python benchmarks/snapshot.py

clean:
	rm -rf $(VENV) .pytest_cache
