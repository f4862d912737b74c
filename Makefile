# `make run` and `make test` each build .venv from scratch when it is missing.
PYTHON ?= python3
VENV := .venv
BIN := $(VENV)/bin
STAMP := $(VENV)/.installed

.PHONY: run test lint format clean bench corpus

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

# feedparser's own test corpus (about 2,250 hostile documents; BSD-style licence, kept with
# them) from the package index into .cache/, each served as a source to one `fetch`.
CORPUS_CACHE := .cache/feedparser-corpus
corpus: $(STAMP)
	$(BIN)/python -m tests.corpus download $(CORPUS_CACHE)
	FEEDPARSER_CORPUS=$(CORPUS_CACHE) $(BIN)/python -m pytest -q -s tests/test_corpus.py

bench: $(STAMP)
	$(BIN)/python benchmarks/fetch.py
	$(BIN)/python benchmarks/publish.py
	$(BIN)/python benchmarks/serve.py
	$(BIN)/python benchmarks/daemon.py
	$(BIN)/python benchmarks/snapshot.py

clean:
	rm -rf $(VENV) .pytest_cache
