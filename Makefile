# `make run` installs what running needs, `make test` adds the test tools; each builds .venv
# when it is missing. The stamps say what is installed: after `make test`, `make run` installs
# nothing; after `make run`, `make test` adds only the test tools.
PYTHON ?= python3
VENV := .venv
BIN := $(VENV)/bin
PIP := $(BIN)/python -m pip --quiet --disable-pip-version-check
RUN_STAMP := $(VENV)/.installed-run
TEST_STAMP := $(VENV)/.installed-test
SAY_INSTALLING = @echo "installing the aggregator and its dependencies$(1) into $(VENV) (about half a minute)…"

# Four pytest workers on two cores: most tests wait on subprocesses, servers and sockets,
# not on the CPU (serial: 5 min 41 s; four workers: 2 min 40 s, measured on 2 cores).
# Each test file stays on one worker, so module fixtures are built once.
PYTEST_WORKERS ?= -n 4 --dist loadfile

.PHONY: run test lint format clean bench corpus

$(BIN)/python:
	@$(PYTHON) -m venv $(VENV)

$(RUN_STAMP): pyproject.toml | $(BIN)/python
	$(call SAY_INSTALLING,)
	@$(PIP) install -e .
	@touch $@

$(TEST_STAMP): pyproject.toml | $(BIN)/python
	$(call SAY_INSTALLING, with the test tools)
	@$(PIP) install -e '.[test]'
	@touch $@ $(RUN_STAMP)

run: $(RUN_STAMP)
	$(BIN)/aggregator --config config.toml daemon

test: $(TEST_STAMP)
	$(BIN)/ruff check aggregator tests benchmarks
	$(BIN)/ruff format --check aggregator tests benchmarks
	$(BIN)/python -m pytest -q $(PYTEST_WORKERS)

lint: $(TEST_STAMP)
	$(BIN)/ruff check aggregator tests benchmarks

format: $(TEST_STAMP)
	$(BIN)/ruff format aggregator tests benchmarks
	$(BIN)/ruff check --fix aggregator tests benchmarks

# feedparser's own test corpus (about 2,250 hostile documents; BSD-style licence, kept with
# them) from the package index into .cache/, each served as a source to one `fetch`.
CORPUS_CACHE := .cache/feedparser-corpus
corpus: $(TEST_STAMP)
	$(BIN)/python -m tests.corpus download $(CORPUS_CACHE)
	FEEDPARSER_CORPUS=$(CORPUS_CACHE) $(BIN)/python -m pytest -q -s tests/test_corpus.py

bench: $(TEST_STAMP)
	$(BIN)/python benchmarks/fetch.py
	$(BIN)/python benchmarks/publish.py
	$(BIN)/python benchmarks/serve.py
	$(BIN)/python benchmarks/daemon.py
	$(BIN)/python benchmarks/snapshot.py
	$(BIN)/python benchmarks/hostile.py
	$(BIN)/python benchmarks/search.py
	$(BIN)/python benchmarks/capture.py

clean:
	rm -rf $(VENV) .pytest_cache
