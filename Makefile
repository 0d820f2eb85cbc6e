# Two commands do all the set-up: `make search` and `make test` create the virtual environment
# and install the project on first use.
PYTHON ?= $(shell command -v python3.11 || command -v python3)
VENV := .venv
BIN := $(VENV)/bin
STUDY ?= studies/imdb.toml
ARGS ?=
STAMP := $(VENV)/.installed

.PHONY: search test lint unit benchmark clean-study

$(STAMP): pyproject.toml
	test -x $(BIN)/python || $(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install --quiet --upgrade pip
	$(BIN)/python -m pip install --quiet -e '.[dev]'
	touch $(STAMP)

search: $(STAMP)  ## Run (or resume) the study in STUDY
	$(BIN)/python -m hpo.search --study $(STUDY) $(ARGS)

lint: $(STAMP)
	$(BIN)/ruff check hpo tests benchmarks
	$(BIN)/ruff format --check hpo tests benchmarks
	$(BIN)/mypy

unit: $(STAMP)
	$(BIN)/python -m pytest -m "not e2e"

test: lint  ## Lint, type-check and run every test
	$(BIN)/python -m pytest

benchmark: $(STAMP)  ## Data-load times and worker memory
	$(BIN)/python benchmarks/bench_search.py --study studies/imdb-smoke.toml
