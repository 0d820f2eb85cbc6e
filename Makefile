# Two commands do all the set-up: `make search` and `make test` create the virtual environment
# and install the project on first use.
PYTHON ?= $(shell command -v python3.11 || command -v python3)
VENV := .venv
BIN := $(VENV)/bin
STUDY ?= studies/imdb.toml
ARGS ?=
# `make ensemble` refits the weighted members on training + validation data (one trial's
# training each; +0.23 points on the 2-hour IMDB study, benchmarks/RESULTS.md); `REFIT=` skips it.
REFIT ?= --refit
STAMP := $(VENV)/.installed
# pytest-xdist processes: on 2 cores, 3 keep both busy (2 leave 8% idle while tests wait on
# servers and workers; 4 only add contention: benchmarks/RESULTS.md); `make test TEST_WORKERS=0`
# runs in one process.
# One test at a time per process (--maxschedchunk 1), so the slowest, collected first
# (tests/conftest.py), start on different processes.
TEST_WORKERS ?= 3

# scikit-learn (pyproject.toml's `bench` pin), for the test that runs benchmarks/bench_nbsvm.py,
# in a folder of its own that the test puts on that script's path: installed in the environment,
# Keras would import it on start-up in each of the suite's TensorFlow processes (1.5 s each,
# benchmarks/RESULTS.md).
BENCH_PACKAGES := $(VENV)/bench-packages
SKLEARN := scikit-learn==1.9.1 'joblib>=1.4' 'threadpoolctl>=3.5'

.PHONY: search ensemble status report dashboard test lint unit docs benchmark mutation

$(STAMP): pyproject.toml
	test -x $(BIN)/python || $(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install --quiet --upgrade pip
	$(BIN)/python -m pip install --quiet -e '.[dev]'
	touch $(STAMP)

$(BENCH_PACKAGES)/.installed: $(STAMP)
	$(BIN)/python -m pip install --quiet --no-deps --upgrade --target $(BENCH_PACKAGES) $(SKLEARN)
	touch $@

search: $(STAMP)  ## Run (or resume) the study in STUDY within its budget
	$(BIN)/hpo search --study $(STUDY) $(ARGS)

ensemble: $(STAMP)  ## Ensemble the best trials of STUDY (members refitted), test once, export
	$(BIN)/hpo ensemble --top 5 $(REFIT) --study $(STUDY) $(ARGS)

status: $(STAMP)  ## Leaderboard of STUDY
	$(BIN)/hpo status --study $(STUDY) $(ARGS)

report: $(STAMP)  ## Plots of STUDY (PNG + one HTML page) in its folder's reports/
	$(BIN)/hpo report --study $(STUDY) $(ARGS)

dashboard: $(STAMP)  ## optuna-dashboard on STUDY at http://127.0.0.1:8080/dashboard/
	$(BIN)/hpo dashboard --study $(STUDY) $(ARGS)

lint: $(STAMP)
	$(BIN)/ruff check hpo tests benchmarks docs/hooks.py
	$(BIN)/ruff format --check hpo tests benchmarks docs/hooks.py
	$(BIN)/mypy

unit: $(STAMP) $(BENCH_PACKAGES)/.installed $(TORCH)
	$(BIN)/python -m pytest -n $(TEST_WORKERS) --maxschedchunk 1 -m "not e2e"

# PyTorch, for the PyTorch backend's tests: its CPU build (on Linux the default wheel is a
# CUDA build of several GB), installed where no torch is (CI's is installed before).
TORCH := $(VENV)/.torch-installed
$(TORCH): $(STAMP)
	$(BIN)/python -c "import torch" 2>/dev/null || $(BIN)/python -m pip install --quiet \
		torch==2.13.0 --extra-index-url https://download.pytorch.org/whl/cpu
	touch $@

test: lint $(BENCH_PACKAGES)/.installed $(TORCH)  ## Lint, type-check and run every test
	$(BIN)/python -m pytest -n $(TEST_WORKERS) --maxschedchunk 1

# Material for MkDocs prints a notice about MkDocs 2 on every build unless told not to.
docs: $(STAMP)  ## The documentation site from docs/ into site/; warnings (a broken link) are errors
	NO_MKDOCS_2_WARNING=1 $(BIN)/mkdocs build --strict

benchmark: $(STAMP)  ## Data-load times and worker memory (see benchmarks/ for the others)
	$(BIN)/python benchmarks/bench_search.py --study studies/imdb-smoke.toml

# Mutation testing of the pure modules, each against its own unit tests (benchmarks/mutation.py);
# `make mutation MODULES="metrics budget"` runs some. Niced: it keeps every core busy for minutes.
MODULES ?=
mutation: $(STAMP)
	$(BIN)/python -m pip install --quiet -e '.[mutation]'
	nice -n 19 $(BIN)/python benchmarks/mutation.py $(MODULES)
