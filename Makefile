# Two commands for a new user: `make run` and `make test`. Each installs what
# it needs (a virtualenv in .venv, the package and its dev tools, and the
# Debian packages the tests use) before doing its job.

PYTHON ?= python3
VENV   := .venv
BIN    := $(VENV)/bin
STAMP  := $(VENV)/.installed

.PHONY: run test lint typecheck unit bench install system-deps clean

run: $(STAMP)
	$(BIN)/cairn up examples/shop/cairn.toml --traffic 5/s

test: $(STAMP) system-deps lint typecheck unit

lint: $(STAMP)
	$(BIN)/ruff check src tests bench examples
	$(BIN)/ruff format --check src tests bench examples

typecheck: $(STAMP)
	$(BIN)/mypy
	$(BIN)/mypy --strict tests/typing

unit: $(STAMP)
	$(BIN)/pytest --cov --cov-report=term $(PYTEST_ARGS)

bench: $(STAMP)
	$(BIN)/python bench/resilience.py
	$(BIN)/python bench/lab.py
	$(BIN)/python bench/lab_store.py
	$(BIN)/python bench/observability.py
	$(BIN)/python bench/collector.py
	$(BIN)/python bench/dashboard.py
	$(BIN)/python bench/up.py

install: $(STAMP)

$(STAMP): pyproject.toml setup.py src/cairn/resilience/_speedups.c
	@$(PYTHON) -c 'import sys; sys.exit(0 if sys.version_info >= (3, 11) else "cairn needs Python 3.11 or newer; set PYTHON=python3.11 (or newer)")'
	test -x $(BIN)/python || $(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install --quiet --upgrade pip
	$(BIN)/python -m pip install --quiet -e '.[dev]'
	touch $(STAMP)

system-deps:
	bash scripts/install-system-deps.sh

clean:
	rm -rf $(VENV) .pytest_cache .mypy_cache .ruff_cache .coverage htmlcov
