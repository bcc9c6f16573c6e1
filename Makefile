# The front door for people and CI. Every target creates .venv on first use.
PYTHON ?= python3
VENV   := .venv
BIN    := $(VENV)/bin
STAMP  := $(VENV)/.installed-stamp
PYTEST_ARGS ?=
## pytest-xdist workers for test and test-fast (the tests wait on PostgreSQL, sockets and child
## processes a good part of the time, so 3 keep 2 cores busy); WORKERS=0 runs in one process.
WORKERS ?= 3
XDIST   := -n $(WORKERS) --dist loadgroup
## make test-fast leaves out what is slow, starts Prefect or a child process, and the PostgreSQL
## runs of tests that also run on SQLite; it draws fewer Hypothesis examples (profile "edit").
FAST    ?= not slow and not prefect and not subprocess and not postgres_twin
FAST_PROFILE ?= edit
## The `alone` tests (wall-clock bounds): after the parallel part, two at a time (WORKERS=0: one).
ALONE   := -n $(if $(filter 0,$(WORKERS)),0,2) --dist load

## The install: uv into the venv with pip, then the project and its dev tools with uv, byte-compiled
## (a Prefect import from source costs about twice its time from bytecode): 25 s from nothing with
## a warm cache, against 48 s with pip (measured 2026-12-03). uv reads no pip.conf: give it a
## private index as UV_INDEX_URL, UV_EXTRA_INDEX_URL or UV_FIND_LINKS.
UV_PIP  := $(BIN)/uv pip install --quiet --python $(BIN)/python

## Python writes its bytecode and pytest its rewritten test modules to __pycache__ (ignored by
## git), even where the environment sets PYTHONDONTWRITEBYTECODE (this machine kind does): without
## them every test worker and child process compiles the project and the tests again, which
## measured 4 s of CPU per pytest process in collection alone.
unexport PYTHONDONTWRITEBYTECODE

.PHONY: install lint format typecheck test test-fast demo bench deps-check clean

$(STAMP): pyproject.toml Makefile
	@$(PYTHON) -c 'import sys; sys.exit(0 if sys.version_info >= (3, 11) else "phala-sync needs Python 3.11 or newer")'
	test -x $(BIN)/python || $(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install --quiet 'uv>=0.5'
	$(UV_PIP) --compile-bytecode -e '.[dev]'
	$(UV_PIP) --no-deps phala-cloud==0.2.0
	touch $(STAMP)

install: $(STAMP)

lint: $(STAMP)
	$(BIN)/ruff check .
	$(BIN)/ruff format --check .

format: $(STAMP)
	$(BIN)/ruff format .
	$(BIN)/ruff check --fix .

typecheck: $(STAMP)
	$(BIN)/mypy

## The whole suite: lint, type check, then every test (PostgreSQL ones too, where it is reachable).
## Tests marked `alone` (wall-clock bounds) run afterwards with nothing else running; exit status 5
## (none selected, e.g. by PYTEST_ARGS) is not a failure there.
test: lint typecheck
	$(BIN)/python -m pytest $(XDIST) -m "not alone" $(PYTEST_ARGS)
	$(BIN)/python -m pytest $(ALONE) -m alone $(PYTEST_ARGS) || [ $$? -eq 5 ]

## The edit loop's tests: no Prefect server or flow, no child process, nothing slow (see README).
test-fast: $(STAMP)
	$(BIN)/python -m pytest $(XDIST) -m "$(FAST)" --hypothesis-profile=$(FAST_PROFILE) $(PYTEST_ARGS)

## Simulator + SQLite, two syncs with fleet changes between them, then what changed.
demo: $(STAMP)
	$(BIN)/phala-sync demo

## Benchmarks (by hand; writes bench/results.json).
bench: $(STAMP)
	$(BIN)/python bench/run.py
	$(BIN)/python bench/bi_views.py --skip cvm_daily_usage
	$(BIN)/python bench/fleet_report.py --direct

## How far each pin in pyproject.toml is from the newest release on the package index.
deps-check: $(STAMP)
	$(BIN)/python tools/deps_check.py

clean:
	rm -rf $(VENV) .mypy_cache .pytest_cache .ruff_cache
